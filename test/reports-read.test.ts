// GET /api/reports: the receiver's own DMARC aggregate reports, as they
// arrived in dmarc-reports@receiver.test, read back from their gzipped XML
// with the counts per source the mail made; and reports written by an
// attacker to hurt the reader (bad gzip, not XML, 10,000 elements deep, a
// billion laughs, a gzip bomb of 1 GiB) each listed with its error while the
// API goes on answering. In a class, a student reads the reports in her own
// mailbox and no other.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { loadClass } from '../services/lib/classroom.ts';
import { makeClass } from './support/dns-class.ts';
import { inOneReportPeriod, startLab, type LabMta, type TestLab } from './support/lab.ts';
import { api, arrival, ATTACKER_HOST, deliver, message, SENDER_HOST, waitFor } from './support/mail.ts';
import { RawSmtp } from './support/smtp.ts';

let lab: TestLab;
let receiver: LabMta;

before(async () => {
  lab = await startLab();
  receiver = await lab.start('receiver');
});
after(() => lab.close());

interface Row { sourceIp: string; sourceName?: string; count: number; disposition: string; dkim: string; spf: string; headerFrom: string; authSpf?: { domain: string; result: string } }
interface Listed { id: string; mailbox: string; receivedAt: string; error?: string; subject?: string; reporter?: { orgName: string; email: string }; reportId?: string; policyDomain?: string; begin?: string; end?: string; published?: Record<string, string>; rows?: Row[]; messages?: number; passed?: number; failed?: number }

const reports = () => api<Listed[]>(receiver, '/api/reports');

test("the receiver's reports, read back: reporter, period, policy, and per source the count, results and disposition", async () => {
  assert.deepEqual(await reports(), [], 'no report before any is sent');
  await inOneReportPeriod(receiver, 30_000);
  for (let i = 0; i < 3; i++) assert.equal((await deliver(receiver, SENDER_HOST, 'alice@sender.test', message('alice@sender.test', 'bob@receiver.test', `honest-${i}`))).code, 250);
  for (let i = 0; i < 2; i++) assert.equal((await deliver(receiver, ATTACKER_HOST, 'alice@sender.test', message('alice@sender.test', 'bob@receiver.test', `spoof-${i}`))).code, 550);
  assert.equal((await deliver(receiver, ATTACKER_HOST, 'ceo@monitor.test', message('ceo@monitor.test', 'bob@receiver.test', 'monitor-spoof'))).code, 250);
  const sent = await fetch(`http://${receiver.host}:${receiver.apiPort}/api/reports/send`, { method: 'POST' });
  assert.equal(sent.status, 200);
  await arrival(receiver, 'dmarc-reports@receiver.test', 'Report Domain: sender.test');
  await arrival(receiver, 'dmarc-reports@receiver.test', 'Report Domain: monitor.test');

  const listed = await reports();
  assert.equal(listed.length, 2);
  const byDomain = new Map(listed.map((r) => [r.policyDomain, r]));
  const sender = byDomain.get('sender.test')!;
  assert.equal(sender.error, undefined);
  assert.equal(sender.mailbox, 'dmarc-reports@receiver.test');
  assert.deepEqual(sender.reporter, { orgName: 'mx.receiver.test', email: 'postmaster@receiver.test' });
  assert.match(sender.reportId!, /^[0-9a-f]+$/);
  assert.ok(Date.parse(sender.begin!) < Date.parse(sender.end!));
  assert.equal(sender.published!.p, 'reject');
  assert.deepEqual([sender.messages, sender.passed, sender.failed], [5, 3, 2]);
  const rows = sender.rows!.map((r) => [r.sourceIp, r.sourceName, r.count, r.disposition, r.spf, r.dkim, r.headerFrom, r.authSpf?.result]).sort();
  assert.deepEqual(rows, [
    ['192.0.2.10', 'mta.sender.test', 3, 'none', 'pass', 'fail', 'sender.test', 'pass'],
    ['192.0.2.66', 'mta.attacker.test', 2, 'reject', 'fail', 'fail', 'sender.test', 'fail'],
  ]);
  const monitor = byDomain.get('monitor.test')!;
  assert.deepEqual([monitor.published!.p, monitor.messages, monitor.passed, monitor.failed, monitor.rows![0].disposition], ['none', 1, 0, 1, 'none']);
  // The id opens the message in the rest of the API.
  const opened = await api<{ mailbox: string; headers: { name: string; value: string }[] }>(receiver, `/api/messages/${encodeURIComponent(sender.id)}`);
  assert.equal(opened.mailbox, 'dmarc-reports@receiver.test');
  assert.ok(listed.every((r, i) => i === 0 || listed[i - 1].receivedAt >= r.receivedAt), 'newest first');
});

// A report message as an attacker writes one: RFC 9990's Subject, any attachment.
function hostile(name: string, attachment: Buffer, filename = `attacker.test!sender.test!1!2!${name}.xml.gz`, type = 'application/gzip'): string {
  return [
    'From: reports@attacker.test',
    'To: bob@receiver.test',
    `Subject: Report Domain: sender.test Submitter: attacker.test Report-ID: ${name}`,
    `Message-ID: <${name}@attacker.test>`,
    `Date: ${new Date().toUTCString()}`,
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="b"',
    '',
    '--b',
    'Content-Type: text/plain',
    '',
    'A report.',
    '--b',
    `Content-Type: ${type}; name="${filename}"`,
    'Content-Transfer-Encoding: base64',
    `Content-Disposition: attachment; filename="${filename}"`,
    '',
    attachment.toString('base64').replace(/.{76}/g, '$&\r\n'),
    '--b--',
    '',
  ].join('\r\n');
}

test('hostile reports are listed with what is wrong with them, and the API goes on', { timeout: 60_000 }, async (t) => {
  const laughs = ['<?xml version="1.0"?>', '<!DOCTYPE feedback [', '<!ENTITY lol "lol">', ...Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i || ''};`.repeat(10)}">`), ']>', '<feedback><report_metadata><org_name>&lol9;</org_name></report_metadata></feedback>'].join('\n');
  // 1 GiB of zeros as 1,024 gzip members of 1 MiB each: about 1 MB.
  const member = gzipSync(Buffer.alloc(1024 * 1024), { level: 9 });
  const bomb = Buffer.concat(Array.from({ length: 1024 }, () => member));
  const cases: [string, Buffer, RegExp, string?, string?][] = [
    ['badgzip', Buffer.from('this is not gzip at all, though its name says so'), /not valid gzip/],
    ['notxml', gzipSync('{"feedback": "JSON, not XML"}'), /not a readable XML report: text outside the root element/],
    ['deep', gzipSync('<feedback>' + '<a>'.repeat(10_000) + '</a>'.repeat(10_000) + '</feedback>'), /nested deeper than 32/],
    ['laughs', gzipSync(laughs), /DOCTYPE is not allowed/],
    ['bomb', bomb, /inflates to more than 10 MiB/],
    ['zipped', Buffer.from('PK\x03\x04 a zip'), /zip file: only gzip/, 'report.zip', 'application/zip'],
    ['noreport', gzipSync('<?xml version="1.0"?><feedback><version>1.0</version></feedback>'), /<feedback> has no <report_metadata>/],
  ];
  for (const [name, attachment, , filename, type] of cases) {
    const reply = await deliver(receiver, ATTACKER_HOST, 'reports@attacker.test', hostile(name, attachment, filename, type));
    assert.equal(reply.code, 250, `${name}: ${reply.text}`);
  }
  const started = Date.now();
  const listed = await waitFor('the hostile reports', async () => {
    const all = await reports();
    return all.filter((r) => r.mailbox === 'bob@receiver.test').length === cases.length ? all : undefined;
  });
  const took = Date.now() - started;
  for (const [name, , error] of cases) {
    const report = listed.find((r) => r.subject?.endsWith(`Report-ID: ${name}`));
    assert.ok(report, `${name} is listed`);
    assert.match(report.error ?? '', error, name);
  }
  assert.equal(listed.filter((r) => !r.error).length, 2, "the receiver's own two still read");
  t.diagnostic(`the list with the hostile reports (bomb and all) answered in ${took} ms`);
  assert.ok(took < 10_000, `the list with the hostile reports in ${took} ms`);
  assert.equal((await api<{ status: string }>(receiver, '/api/health')).status, 'ok');
});

test('in a class, each reads the reports in the mailboxes they may read: a student her own, the teacher all', async (t) => {
  await lab.close();
  const theClass = makeClass('name: Reports\nstudents: [ana, ben]\n');
  t.after(() => rmSync(theClass.dir, { recursive: true, force: true }));
  lab = await startLab(undefined, { classroom: loadClass(theClass.dir) });
  receiver = await lab.start('receiver');
  const report = (domain: string, id: string) =>
    gzipSync(`<feedback><report_metadata><org_name>x</org_name><email>r@x.test</email><report_id>${id}</report_id><date_range><begin>1700000000</begin><end>1700000300</end></date_range></report_metadata><policy_published><domain>${domain}</domain><p>none</p></policy_published><record><row><source_ip>192.0.2.66</source_ip><count>4</count><policy_evaluated><disposition>none</disposition><dkim>fail</dkim><spf>fail</spf></policy_evaluated></row><identifiers><header_from>${domain}</header_from></identifiers><auth_results><spf><domain>${domain}</domain><result>fail</result></spf></auth_results></record></feedback>`);
  for (const [to, id] of [['ana@ana.test', 'forana'], ['bob@receiver.test', 'forbob']]) {
    const { smtp } = await RawSmtp.open(receiver.host, receiver.mxPort, ATTACKER_HOST.address);
    for (const line of [`EHLO ${ATTACKER_HOST.helo}`, 'MAIL FROM:<reports@attacker.test>', `RCPT TO:<${to}>`, 'DATA']) assert.ok((await smtp.command(line)).code < 400, line);
    smtp.write(hostile(id, report(to.split('@')[1], id)) + '.\r\n');
    assert.equal((await smtp.read(15_000)).code, 250);
    smtp.end();
  }
  const as = async (login: string) => {
    const response = await fetch(`http://${receiver.host}:${receiver.apiPort}/api/reports`, { headers: { authorization: `Bearer ${theClass.credentials.get(login)}` } });
    assert.equal(response.status, 200);
    return ((await response.json()) as Listed[]).map((r) => `${r.mailbox} ${r.reportId} ${r.messages}`).sort();
  };
  assert.deepEqual(await as('ana'), ['ana@ana.test forana 4']);
  assert.deepEqual(await as('ben'), []);
  assert.deepEqual(await as('teacher'), ['ana@ana.test forana 4', 'bob@receiver.test forbob 4']);
  assert.equal((await fetch(`http://${receiver.host}:${receiver.apiPort}/api/reports`)).status, 401, 'no login, no reports');
});
