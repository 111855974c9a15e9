// A class's lesson, end to end, against a running lab (embedded or compose,
// reached as scripts/lab finds it): a student publishes MX, SPF, a DKIM key
// she generated and DMARC in her own zone, sends mail from her domain to her
// own mailbox and gets dmarc=pass at the receiver; another student can neither
// read that mail nor change that zone; the teacher sees both. The same steps
// run in both ways of running the lab (test/classroom.test.ts, test/docker.test.ts).
import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { randomBytes } from 'node:crypto';
import { service, type Lab } from '../../scripts/lab/compose.ts';
import { RawSmtp } from './smtp.ts';

export interface ClassLab {
  lab: Lab;
  credentials: Map<string, string>; // login -> credential, from issueCredentials
  clientAddress: string; // where the test's SMTP client connects from
}

const endpoint = (lab: Lab, name: string, port: string) => {
  const s = service(lab, name);
  const p = s.ports.find((x) => x.name === port);
  assert.ok(p, `${name} has no ${port} port here`);
  return { host: s.address, port: p.port, url: `http://${s.address}:${p.port}` };
};

export const endpoints = (lab: Lab) => ({
  control: endpoint(lab, 'dns', 'control').url,
  senderApi: endpoint(lab, 'sender', 'api').url,
  receiverApi: endpoint(lab, 'receiver', 'api').url,
  submission: endpoint(lab, 'sender', 'submission'),
});

export async function call(url: string, credential: string | undefined, method = 'GET', body?: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(url, {
    method,
    headers: { ...(credential && { authorization: `Bearer ${credential}` }), ...(body !== undefined && { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: kept as text
  }
  return { status: response.status, body: parsed };
}

async function ok(url: string, credential: string | undefined, method = 'GET', body?: unknown): Promise<any> {
  const result = await call(url, credential, method, body);
  assert.ok(result.status >= 200 && result.status < 300, `${method} ${url}: ${result.status} ${JSON.stringify(result.body)}`);
  return result.body;
}

// The student's zone gets what makes her mail pass: MX, SPF naming the lab's
// sender MTA, the DKIM key the sender generated for her, DMARC p=reject.
export async function publishRecords(c: ClassLab, student: string, domain: string): Promise<void> {
  const { control, senderApi } = endpoints(c.lab);
  const credential = c.credentials.get(student)!;
  const key = await ok(`${senderApi}/api/classroom/dkim`, credential, 'POST', { selector: 's1', algorithm: 'rsa-2048' });
  assert.equal(key.name, `s1._domainkey.${domain}`);
  await ok(`${control}/zones/${domain}/records`, credential, 'POST', {
    add: ['@ 300 MX 10 mx.receiver.test.', '@ 300 TXT "v=spf1 ip4:192.0.2.10 -all"', key.zoneLine, `_dmarc 300 TXT "v=DMARC1; p=reject; rua=mailto:${student}@${domain}"`],
  });
}

// One message from the student's own domain to her own mailbox, through the
// sender's submission with her credential; returns its Message-ID.
export async function sendAsStudent(c: ClassLab, student: string, domain: string, subject: string): Promise<string> {
  const { submission } = endpoints(c.lab);
  const address = `${student}@${domain}`;
  const messageId = `<${randomBytes(8).toString('hex')}@${domain}>`;
  const { smtp } = await RawSmtp.open(submission.host, submission.port, c.clientAddress);
  try {
    assert.equal((await smtp.command('EHLO laptop.example')).code, 250);
    const auth = Buffer.from(`\0${address}\0${c.credentials.get(student)}`).toString('base64');
    assert.equal((await smtp.command(`AUTH PLAIN ${auth}`)).code, 235);
    assert.equal((await smtp.command(`MAIL FROM:<${address}>`)).code, 250);
    assert.equal((await smtp.command(`RCPT TO:<${address}>`)).code, 250);
    assert.equal((await smtp.command('DATA')).code, 354);
    smtp.write(`From: ${student} <${address}>\r\nTo: <${address}>\r\nSubject: ${subject}\r\nMessage-ID: ${messageId}\r\nDate: ${new Date().toUTCString()}\r\n\r\nMy first signed message.\r\n.\r\n`);
    const reply = await smtp.read(15_000);
    assert.equal(reply.code, 250, reply.text);
  } finally {
    await smtp.command('QUIT').catch(() => undefined);
  }
  return messageId;
}

// The receiver's transaction for a message, as the given credential sees it.
export async function received(c: ClassLab, credential: string, messageId: string, timeoutMs = 20_000): Promise<any> {
  const { receiverApi } = endpoints(c.lab);
  for (const deadline = Date.now() + timeoutMs; ; await new Promise((r) => setTimeout(r, 100))) {
    const found = await ok(`${receiverApi}/api/sessions?messageId=${encodeURIComponent(messageId)}`, credential);
    if (found.length) {
      const record = await ok(`${receiverApi}/api/sessions/${found[0].id}`, credential);
      return { session: found[0], transaction: record.transactions.find((t: any) => t.message?.messageId === messageId) };
    }
    assert.ok(Date.now() < deadline, `${messageId} did not reach the receiver within ${timeoutMs / 1000} s`);
  }
}

export async function lookupTxt(c: ClassLab, name: string): Promise<string[]> {
  const resolver = new Resolver({ timeout: 2000, tries: 2 });
  resolver.setServers([`${c.lab.dns.host}:${c.lab.dns.port}`]);
  return (await resolver.resolveTxt(name)).map((strings) => strings.join(''));
}

// The lesson: ana's mail passes; ben reads none of it and cannot touch her
// zone; the teacher sees both. Returns ana's message, for a check after a restart.
export async function classroomFlow(c: ClassLab): Promise<{ messageId: string }> {
  const { control, receiverApi } = endpoints(c.lab);
  const [ana, ben, teacher] = ['ana', 'ben', 'teacher'].map((n) => c.credentials.get(n)!);

  // A student's zone starts with the lab's SOA and NS only.
  const empty = await ok(`${control}/zones/ana.test`, ana);
  assert.equal(empty.records.trim(), '');
  assert.match(empty.zone, /\bSOA\b/);
  await assert.rejects(lookupTxt(c, '_dmarc.ana.test'), /ENOTFOUND|ENODATA/);

  await publishRecords(c, 'ana', 'ana.test');
  assert.deepEqual(await lookupTxt(c, '_dmarc.ana.test'), ['v=DMARC1; p=reject; rua=mailto:ana@ana.test']);
  assert.match((await lookupTxt(c, 's1._domainkey.ana.test'))[0], /^v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]{300,}$/);

  const messageId = await sendAsStudent(c, 'ana', 'ana.test', 'my first signed message');
  const { session, transaction } = await received(c, ana, messageId);
  assert.equal(transaction.checks.spf.result, 'pass', transaction.checks.spf.reason);
  assert.deepEqual(transaction.checks.dkim.map((d: any) => [d.domain, d.selector, d.result]), [['ana.test', 's1', 'pass']]);
  assert.equal(transaction.checks.dmarc.result, 'pass', transaction.checks.dmarc.reason);
  assert.equal(transaction.decision.disposition, 'inbox');
  const [delivery] = transaction.deliveries;

  // Ben: none of it. Each refusal says why.
  const refusals: [string, string, unknown?][] = [
    [`${receiverApi}/api/sessions/${session.id}`, 'GET'],
    [`${receiverApi}/api/messages/${encodeURIComponent(delivery.id)}`, 'GET'],
    [`${receiverApi}/api/messages/${encodeURIComponent(delivery.id)}/raw`, 'GET'],
    [`${receiverApi}/api/mailboxes/${encodeURIComponent('ana@ana.test')}/INBOX`, 'GET'],
    [`${control}/zones/ana.test`, 'GET'],
    [`${control}/zones/ana.test`, 'PUT', { records: '@ 300 TXT "v=spf1 +all"\n' }],
    [`${control}/zones/ana.test/records`, 'POST', { add: ['@ 300 TXT "v=spf1 +all"'] }],
  ];
  for (const [url, method, body] of refusals) {
    const result = await call(url, ben, method, body);
    assert.equal(result.status, 403, `ben: ${method} ${url}: ${result.status} ${JSON.stringify(result.body)}`);
    assert.match(JSON.stringify(result.body), /ana/, `the refusal of ${method} ${url} names whose it is`);
  }
  assert.deepEqual(await ok(`${receiverApi}/api/sessions?messageId=${encodeURIComponent(messageId)}`, ben), [], "ana's session is not in ben's list");
  assert.equal((await call(`${receiverApi}/api/sessions/${session.id}`, undefined)).status, 401);
  const spf = (await lookupTxt(c, 'ana.test')).filter((v) => v.startsWith('v=spf1'));
  assert.deepEqual(spf, ['v=spf1 ip4:192.0.2.10 -all'], "ana's SPF is unchanged");

  // The teacher sees both students' things.
  assert.equal((await ok(`${receiverApi}/api/sessions/${session.id}`, teacher)).id, session.id);
  assert.match((await ok(`${control}/zones/ben.test`, teacher)).zone, /\bSOA\b/);

  // The exercises are checked by the lab itself (the receiver sends through
  // the sender and the attacker): what her zone answers passes, what it does
  // not (an MX host of her own) fails, saying so.
  const checked = await ok(`${receiverApi}/api/exercises/check`, ana, 'POST', { exercises: ['mx', 'spf', 'dkim', 'dmarc-reject'] });
  const failing = (r: any) => r.checks.filter((x: any) => x.status !== 'pass').map((x: any) => `${x.title}: ${x.reason}`);
  assert.deepEqual(checked.results.map((r: any) => [r.exercise, r.status]), [['mx', 'fail'], ['spf', 'pass'], ['dkim', 'pass'], ['dmarc-reject', 'pass']], JSON.stringify(checked.results.map(failing)));
  assert.match(failing(checked.results[0])[0], /your MX names mx\.receiver\.test: that works, but this exercise asks for a host of your own/);
  const spoof = checked.results[3].checks.find((x: any) => x.title === "The attacker's spoof is refused");
  assert.equal(spoof.saw.message.sentBy, 'mta.attacker.test (192.0.2.66)');
  assert.equal(spoof.saw.message.decision.code, '550 5.7.1');
  return { messageId };
}

// After a restart of the lab: her zone, her key and her mail are still there,
// and her next message passes as the first did.
export async function afterRestart(c: ClassLab, first: { messageId: string }): Promise<void> {
  assert.deepEqual(await lookupTxt(c, '_dmarc.ana.test'), ['v=DMARC1; p=reject; rua=mailto:ana@ana.test']);
  const ana = c.credentials.get('ana')!;
  const { receiverApi } = endpoints(c.lab);
  const before = await received(c, ana, first.messageId);
  assert.equal((await call(`${receiverApi}/api/messages/${encodeURIComponent(before.transaction.deliveries[0].id)}/raw`, ana)).status, 200);
  const again = await sendAsStudent(c, 'ana', 'ana.test', 'after the restart');
  const { transaction } = await received(c, ana, again);
  assert.deepEqual(transaction.checks.dkim.map((d: { result: string }) => d.result), ['pass'], 'signed with the key she made before the restart');
  assert.equal(transaction.checks.dmarc.result, 'pass');
}
