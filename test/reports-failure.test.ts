// DMARC failure reports (RFC 9991, in RFC 6591's format): a receiver whose
// instance file turns them on sends, for each message that fails DMARC in the
// way the record's fo= asks about, one report to the record's ruf= address:
// real mail, DKIM-signed as receiver.test, that lands in
// dmarc-reports@receiver.test. The report carries the message's header, never
// its body, and the recipients redacted. Off by default: none.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startControl } from '../services/dns/control.ts';
import { loadInstance } from '../services/mta/instance.ts';
import { PER_DOMAIN } from '../services/mta/reports/failure.ts';
import type { QueueEntry } from '../services/mta/outbound/queue.ts';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';
import { api, arrival, ATTACKER_HOST, deliver, header, inbox, message, SENDER_HOST, waitFor } from './support/mail.ts';

let lab: TestLab;
let control: Server;
let receiver: LabMta;

before(async () => {
  lab = await startLab();
  control = await startControl(lab.dns, { host: '127.0.2.53', port: 0 }, pino({ level: 'silent' }));
  receiver = await lab.start('receiver'); // as its instance file says: failure reports off
});
after(async () => {
  control.close();
  await lab.close();
});

// sender.test's DMARC record with ruf= (receiver.test agrees to receive its
// reports: sender.test._report._dmarc.receiver.test), for a second at a time.
async function dmarcRecord(fo: string): Promise<void> {
  const { port } = control.address() as { port: number };
  const record = `v=DMARC1; p=reject; rua=mailto:dmarc-reports@receiver.test; ruf=mailto:dmarc-reports@receiver.test; fo=${fo}`;
  const response = await fetch(`http://127.0.2.53:${port}/overrides`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: '_dmarc.sender.test', type: 'TXT', values: [record], ttl: 1 }) });
  assert.equal(response.status, 200, await response.text());
  await new Promise((resolve) => setTimeout(resolve, 1100)); // the receiver's cached record expires
}

// The failure reports in the mailbox, each split in its MIME parts.
async function failureReports(): Promise<{ text: string; parts: Map<string, string> }[]> {
  const reports = (await inbox(receiver, 'dmarc-reports@receiver.test')).filter((m) => header(m, 'Subject').startsWith('DMARC failure report'));
  return reports.map((text) => {
    const boundary = /boundary="([^"]+)"/.exec(header(text, 'Content-Type'))![1];
    const parts = new Map<string, string>();
    for (const part of text.split(`--${boundary}`).slice(1, -1)) {
      const type = /^\r\nContent-Type: ([^;\r\n]+)/.exec(part)![1];
      parts.set(type, part.slice(part.indexOf('\r\n\r\n') + 4));
    }
    return { text, parts };
  });
}
const reportOf = async (subject: string) => waitFor(`the failure report of ${subject}`, async () => (await failureReports()).find((r) => r.parts.get('text/rfc822-headers')?.includes(`Subject: ${subject}\r\n`)));
const field = (fields: string, name: string) => [...fields.matchAll(new RegExp(`^${name}: (.*(?:\\r\\n[ \\t].*)*)`, 'gim'))].map((m) => m[1].replace(/\r\n[ \t]+/g, ' '));
const queueEmpty = () => waitFor('the receiver\'s queue to empty', async () => ((await api<QueueEntry[]>(receiver, '/api/queue')).length === 0 ? true : undefined));

test('off by default: a spoof of a domain with ruf= gets no failure report; turned on, the next one does', async () => {
  await dmarcRecord('1');
  assert.equal((await deliver(receiver, ATTACKER_HOST, 'alice@sender.test', message('alice@sender.test', 'bob@receiver.test', 'spoof-while-off'))).code, 550);
  await lab.stop('receiver');
  receiver = await lab.start('receiver', (i) => ({ ...i, reports: { ...i.reports!, failure: true } }));
  assert.equal((await deliver(receiver, ATTACKER_HOST, 'alice@sender.test', message('alice@sender.test', 'bob@receiver.test', 'spoof-while-on'))).code, 550);
  await reportOf('spoof-while-on');
  await queueEmpty(); // a report queued while off would have been delivered by now (the queue outlives a restart)
  assert.deepEqual((await failureReports()).map((r) => header(r.parts.get('text/rfc822-headers')!, 'Subject')), ['spoof-while-on']);
});

test('a spoof with fo=1 gets one report, in RFC 6591 format with RFC 9991 fields, its header only, the recipient redacted, signed', async () => {
  const spoof = message('alice@sender.test', 'bob@receiver.test', 'spoof-1').replace('\r\n\r\n', '\r\nCc: Bob <BOB@receiver.test>\r\n\r\n');
  assert.equal((await deliver(receiver, ATTACKER_HOST, 'alice@sender.test', spoof)).code, 550);
  const { text, parts } = await reportOf('spoof-1');

  assert.match(header(text, 'Content-Type'), /^multipart\/report; report-type=feedback-report; boundary=/);
  assert.equal(header(text, 'From'), 'postmaster@receiver.test');
  assert.equal(header(text, 'To'), 'dmarc-reports@receiver.test');
  assert.match(header(text, 'Authentication-Results'), /dkim=pass header\.i=@receiver\.test header\.s=rsa2048/);
  assert.match(header(text, 'Authentication-Results'), /dmarc=pass/, 'the report itself is DMARC-aligned');
  assert.deepEqual([...parts.keys()], ['text/plain', 'message/feedback-report', 'text/rfc822-headers']);

  const fields = parts.get('message/feedback-report')!;
  const one = (name: string) => {
    const values = field(fields, name);
    assert.equal(values.length, 1, `${name}: ${JSON.stringify(values)}`);
    return values[0];
  };
  assert.equal(one('Feedback-Type'), 'auth-failure');
  assert.equal(one('Version'), '1');
  assert.equal(one('Auth-Failure'), 'dmarc');
  assert.equal(one('Source-IP'), '192.0.2.66');
  assert.equal(one('Original-Mail-From'), '<alice@sender.test>');
  assert.equal(one('Reported-Domain'), 'sender.test');
  assert.equal(one('Identity-Alignment'), 'dkim, spf');
  assert.equal(one('Delivery-Result'), 'reject');
  assert.ok(Math.abs(Date.parse(one('Arrival-Date')) - Date.now()) < 60_000, one('Arrival-Date'));
  assert.match(one('Authentication-Results'), /^mx\.receiver\.test;.*spf=fail.*dmarc=fail[^;]*header\.from=sender\.test/);
  assert.equal(one('SPF-DNS'), 'txt : sender.test : v=spf1 ip4:192.0.2.10 -all', 'SPF failed for an aligned identity: the record it used');
  assert.deepEqual(field(fields, 'DKIM-Domain'), [], 'no DKIM signature failed');

  // RFC 6590: the recipient's local part is a keyed hash, the same wherever it shows.
  const [rcpt] = field(fields, 'Original-Rcpt-To');
  assert.match(rcpt, /^<[0-9a-f]{16}@receiver\.test>$/);
  const redacted = rcpt.slice(1, -1);
  const headers = parts.get('text/rfc822-headers')!;
  assert.doesNotMatch(text, /bob@receiver\.test/i, 'the recipient is nowhere in the report');
  assert.match(headers, new RegExp(`^To: ${redacted}\\r\\n`, 'm'));
  assert.match(headers, new RegExp(`^Cc: Bob <${redacted}>\\r\\n`, 'm'));
  assert.match(headers, /^Message-ID: <spoof-1@client\.example>\r\n/m);
  assert.doesNotMatch(text, /Hello from spoof-1/, 'never the body');
  assert.doesNotMatch(headers, /Received-SPF|Authentication-Results/, 'the header as it came, without what the receiver added');
});

test('fo=1 reports a message that passes DMARC by SPF alone, its DKIM signature failing; fo=0 (the default) does not', async () => {
  await dmarcRecord('0');
  assert.equal((await deliver(receiver, SENDER_HOST, 'alice@sender.test', message('alice@sender.test', 'bob@receiver.test', 'unsigned-fo0'))).code, 250);
  await dmarcRecord('1');
  // A signature of sender.test's that does not verify (its body hash and signature are made up).
  const badSignature = 'DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=sender.test; s=rsa2048; h=from:subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hXUFE=; b=AAAA\r\n';
  assert.equal((await deliver(receiver, SENDER_HOST, 'alice@sender.test', badSignature + message('alice@sender.test', 'bob@receiver.test', 'badly-signed-fo1'))).code, 250);
  const { parts } = await reportOf('badly-signed-fo1');
  const fields = parts.get('message/feedback-report')!;
  assert.deepEqual(field(fields, 'Identity-Alignment'), ['dkim'], 'only DKIM gave no aligned pass');
  assert.deepEqual(['DKIM-Domain', 'DKIM-Identity', 'DKIM-Selector'].map((name) => field(fields, name)), [['sender.test'], ['@sender.test'], ['rsa2048']], 'the aligned signature that failed');
  assert.deepEqual(field(fields, 'Delivery-Result'), ['delivered']);
  assert.deepEqual(field(fields, 'SPF-DNS'), [], 'SPF passed');
  await queueEmpty();
  assert.equal((await failureReports()).filter((r) => r.parts.get('text/rfc822-headers')!.includes('unsigned-fo0')).length, 0, 'fo=0: DMARC passed, no report');
});

test('a ruf= address in another domain that has not agreed (no _report._dmarc record) gets no failure report', async () => {
  const { port } = control.address() as { port: number };
  const record = 'v=DMARC1; p=none; ruf=mailto:dmarc-reports@receiver.test'; // receiver.test publishes no nodmarc.test._report._dmarc
  const response = await fetch(`http://127.0.2.53:${port}/overrides`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: '_dmarc.nodmarc.test', type: 'TXT', values: [record], ttl: 1 }) });
  assert.equal(response.status, 200, await response.text());
  assert.equal((await deliver(receiver, ATTACKER_HOST, 'ceo@nodmarc.test', message('ceo@nodmarc.test', 'bob@receiver.test', 'spoof-unagreed'))).code, 250);
  assert.equal((await deliver(receiver, ATTACKER_HOST, 'alice@sender.test', message('alice@sender.test', 'bob@receiver.test', 'spoof-agreed'))).code, 550);
  await reportOf('spoof-agreed');
  await queueEmpty();
  assert.deepEqual((await failureReports()).filter((r) => header(r.text, 'Subject').includes('nodmarc.test')), []);
});

test('never a report about a report (a mail loop), nor for a record with psd=y', async () => {
  const report = message('alice@sender.test', 'bob@receiver.test', 'spoofed-report').replace('\r\n\r\n', '\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary="b"\r\n\r\n');
  assert.equal((await deliver(receiver, ATTACKER_HOST, 'alice@sender.test', report)).code, 550);
  await dmarcRecord('1; psd=y');
  assert.equal((await deliver(receiver, ATTACKER_HOST, 'alice@sender.test', message('alice@sender.test', 'bob@receiver.test', 'spoof-psd'))).code, 550);
  await dmarcRecord('1');
  assert.equal((await deliver(receiver, ATTACKER_HOST, 'alice@sender.test', message('alice@sender.test', 'bob@receiver.test', 'spoof-after'))).code, 550);
  await reportOf('spoof-after');
  await queueEmpty();
  const subjects = (await failureReports()).map((r) => header(r.parts.get('text/rfc822-headers')!, 'Subject'));
  assert.ok(!subjects.includes('spoofed-report') && !subjects.includes('spoof-psd'), subjects.join(', '));
});

test(`at most ${PER_DOMAIN} reports per domain and period, however many spoofs`, async () => {
  const before = (await failureReports()).length; // this period's reports so far (spoof-while-on, spoof-1, badly-signed-fo1, spoof-agreed, spoof-after)
  for (let i = 0; i < PER_DOMAIN + 3; i++) assert.equal((await deliver(receiver, ATTACKER_HOST, 'alice@sender.test', message('alice@sender.test', 'bob@receiver.test', `flood-${i}`))).code, 550);
  await waitFor('the reports of the flood', async () => ((await failureReports()).length >= PER_DOMAIN ? true : undefined));
  await queueEmpty();
  assert.equal((await failureReports()).length, PER_DOMAIN, `${before} before, then ${PER_DOMAIN - before} of ${PER_DOMAIN + 3} spoofs`);
});

test('reports.failure in an instance file must be true or false', () => {
  const dir = mkdtempSync(join(tmpdir(), 'instance-'));
  try {
    const file = join(dir, 'receiver.yaml');
    writeFileSync(file, readFileSync(new URL('../instances/receiver.yaml', import.meta.url), 'utf8').replace('  failure: false', '  failure: yes please'));
    assert.throws(() => loadInstance(file), (error: Error) => error.message === `${file}: reports.failure: must be true or false`);
    assert.equal(loadInstance(new URL('../instances/receiver.yaml', import.meta.url).pathname).reports!.failure, false, 'the receiver as shipped: off');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
