// Memory an SMTP client can make the MX hold, with no login, is bounded: per
// session (the transcript, and a limit on commands that move no mail) and per
// message (past the size limit the rest of DATA is read and dropped). Against
// a real MTA process, whose resident memory is read from /proc.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { parse, stringify } from 'yaml';
import { DnsServer } from '../services/dns/server.ts';
import { loopbackTwin } from '../services/lib/addressing.ts';
import { TRANSCRIPT_HEAD, TRANSCRIPT_TAIL, type SessionRecord, type SessionSummary } from '../services/mta/store/sessions.ts';
import { waitFor } from './support/mail.ts';
import { instanceFile, startMta } from './support/processes.ts';
import { RawSmtp } from './support/smtp.ts';

const root = new URL('../', import.meta.url).pathname;
const JUNK_LIMIT = 100; // services/mta/inbound/mx.ts
const client = '127.0.2.66'; // mta.attacker.test
// A lab address no other test uses: another test file's MTA could take its ports.
const host = loopbackTwin('192.0.2.150');

let work: string;
let dns: DnsServer;
let mta: ChildProcess;
let api: string;
let mxPort: number;
let submissionPort: number;
let messageSize: number;

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'mx-memory-'));
  dns = new DnsServer({ listen: { host: '127.0.2.53', port: 0 }, zoneDir: join(root, 'dns-zone'), logger: pino({ level: 'silent' }) });
  await dns.start();
  const { file, ports } = await instanceFile('receiver', host, work);
  const instance = parse(readFileSync(file, 'utf8'));
  writeFileSync(file, stringify({ ...instance, address: '192.0.2.150' }));
  messageSize = instance.limits.messageSize;
  api = `http://${host}:${ports.api}`;
  mxPort = ports.mx;
  submissionPort = ports.submission;
  mta = startMta({ MTA_CONFIG: file, LAB_EMBEDDED: '1', MTA_DATA_DIR: join(work, 'data'), LAB_DNS: `127.0.2.53:${dns.port}` });
  await waitFor('the MTA answers', () => {
    assert.equal(mta.exitCode, null, 'the MTA exited while starting (its stderr says why)');
    return fetch(`${api}/api/health`).then((r) => (r.ok ? true : undefined), () => undefined);
  }, 30_000);
});
after(async () => {
  mta?.kill('SIGKILL');
  await dns?.close();
  rmSync(work, { recursive: true, force: true });
});

async function open(from = client): Promise<RawSmtp> {
  const { smtp, greeting } = await RawSmtp.open(host, mxPort, from);
  assert.equal(greeting.code, 220);
  return smtp;
}

// The saved record of the session that ended last, one the test has not seen yet
// (a session's record is listed from its first save, at its end here).
const seen = new Set<string>();
async function lastRecord(): Promise<SessionRecord> {
  const id = await waitFor('the session record, ended', async () => {
    const sessions = (await (await fetch(`${api}/api/sessions`)).json()) as SessionSummary[];
    return sessions.find((s) => s.endedAt && !seen.has(s.id))?.id;
  });
  seen.add(id);
  return (await (await fetch(`${api}/api/sessions/${id}`)).json()) as SessionRecord;
}

const status = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${mta.pid}/status`, 'utf8'))![1]) * 1024;

describe('one session', () => {
  test(`200,000 NOOPs: after ${JUNK_LIMIT} the client gets 421 4.7.0, the connection closes, the record is saved`, async () => {
    const smtp = await open();
    assert.equal((await smtp.command('EHLO mta.attacker.test')).code, 250);
    smtp.write('NOOP\r\n'.repeat(200_000));
    for (let i = 0; i < JUNK_LIMIT; i++) assert.equal((await smtp.read()).code, 250, `NOOP ${i + 1}`);
    const cut = await smtp.read();
    assert.match(cut.text, /^421 4\.7\.0 .*Too many commands without mail/);
    await smtp.closed;

    const record = await lastRecord();
    assert.ok(record.transcript.length <= TRANSCRIPT_HEAD + TRANSCRIPT_TAIL + 1, `${record.transcript.length} transcript lines`);
    assert.match(record.transcript.at(-1)!.line, /^S: 421 4\.7\.0 /);
  });

  test('a long session keeps the first and the last transcript lines, with a marker for those left out between', async () => {
    // EHLO moves no mail but is not junk: 3,000 of them run, and are recorded bounded.
    const smtp = await open();
    const count = 3000;
    smtp.write('EHLO mta.attacker.test\r\n'.repeat(count));
    for (let i = 0; i < count; i++) assert.equal((await smtp.read()).code, 250);
    assert.equal((await smtp.command('QUIT')).code, 221);
    await smtp.closed;

    const record = await lastRecord();
    const lines = record.transcript.map((l) => l.line);
    assert.equal(lines.length, TRANSCRIPT_HEAD + 1 + TRANSCRIPT_TAIL);
    const total = 2 * count + 2 + 1; // each EHLO and its reply, QUIT and 221, the greeting
    assert.match(lines[0], /^S: 220 /);
    assert.equal(lines[TRANSCRIPT_HEAD], `[${total - TRANSCRIPT_HEAD - TRANSCRIPT_TAIL} lines left out: the transcript keeps the first ${TRANSCRIPT_HEAD} and the last ${TRANSCRIPT_TAIL}]`);
    assert.deepEqual(lines.slice(-2), ['C: QUIT', 'S: 221 2.0.0 Bye']);
  });
});

describe('one message', () => {
  test('a message 40 times the size limit, without SIZE=, gets 552 5.3.4 and the MX holds far less than it', { timeout: 60_000 }, async () => {
    const smtp = await open();
    assert.equal((await smtp.command('EHLO mta.attacker.test')).code, 250);
    assert.equal((await smtp.command('MAIL FROM:<mallory@attacker.test>')).code, 250);
    assert.equal((await smtp.command('RCPT TO:<bob@receiver.test>')).code, 250);
    assert.equal((await smtp.command('DATA')).code, 354);

    // smtp-server copies each chunk it reads; until a garbage collection frees
    // them, they add a constant (about 100 MiB here), whatever the size. The
    // message is large enough that what stays proportional to it shows: the
    // MX held it twice over before (chunks, then one Buffer), 800 MiB.
    const size = 40 * messageSize;
    const before = status('VmRSS');
    writeFileSync(`/proc/${mta.pid}/clear_refs`, '5'); // VmHWM starts again from now: the peak of this message
    smtp.write('From: mallory@attacker.test\r\nSubject: big\r\nMessage-ID: <big@attacker.test>\r\n\r\n');
    const line = Buffer.from(`${'x'.repeat(1022)}\r\n`);
    const chunk = Buffer.concat(Array.from({ length: 1024 }, () => line)); // 1 MiB
    for (let sent = 0; sent < size; sent += chunk.length) smtp.write(chunk); // the same buffer: the test holds 1 MiB
    smtp.write('.\r\n');
    const reply = await smtp.read(50_000);
    assert.match(reply.text, /^552 5\.3\.4 /);
    const peak = status('VmHWM') - before;
    assert.ok(peak < size / 2, `the MX grew by ${Math.round(peak / 2 ** 20)} MiB for a ${size / 2 ** 20} MiB message`);

    // The session goes on; the record names the message and its whole size.
    assert.equal((await smtp.command('NOOP')).code, 250);
    assert.equal((await smtp.command('QUIT')).code, 221);
    const [transaction] = (await lastRecord()).transactions;
    assert.equal(transaction.message?.messageId, '<big@attacker.test>');
    assert.ok(transaction.message!.size > size);
    assert.equal(transaction.decision.code, 552);
  });
});

describe('many messages at once', () => {
  const MESSAGES_IN_MEMORY = 8; // services/mta/smtp/message-data.ts
  const line = Buffer.from(`${'y'.repeat(1022)}\r\n`);
  const chunk = Buffer.concat(Array.from({ length: 1024 }, () => line)); // 1 MiB
  const mebibytes = () => Math.floor((0.9 * messageSize) / chunk.length);
  // A session in DATA from this address, its message begun.
  const start = async (n: number, from = client) => {
    const smtp = await open(from);
    assert.equal((await smtp.command('EHLO mta.attacker.test')).code, 250);
    assert.equal((await smtp.command('MAIL FROM:<mallory@attacker.test>')).code, 250);
    assert.equal((await smtp.command('RCPT TO:<bob@receiver.test>')).code, 250);
    assert.equal((await smtp.command('DATA')).code, 354);
    smtp.write(`From: mallory@attacker.test\r\nSubject: at once ${n}\r\nMessage-ID: <at-once-${n}@attacker.test>\r\n\r\n`);
    return smtp;
  };
  // Every message's data handed over and read before any message ends: a
  // session whose end came first would give its memory back before the others were read.
  const allRead = async (sessions: RawSmtp[]) => {
    await Promise.all(sessions.map((smtp) => smtp.drained()));
    await new Promise((resolve) => setTimeout(resolve, 500));
  };

  test(`${MESSAGES_IN_MEMORY + 1} messages of 90% of the size limit at once from 3 clients: one gets 452 4.3.1, the others 250, and memory is given back`, { timeout: 60_000 }, async () => {
    const clients = ['127.0.2.66', '127.0.2.10', '127.0.2.30'];
    // Every message is being read before any ends: together they are past what the MX holds.
    const sessions = await Promise.all(Array.from({ length: MESSAGES_IN_MEMORY + 1 }, (_, n) => start(n, clients[n % 3])));
    for (let i = 0; i < mebibytes(); i++) for (const smtp of sessions) smtp.write(chunk);
    await allRead(sessions);
    for (const smtp of sessions) smtp.write('.\r\n');
    const replies = await Promise.all(sessions.map((smtp) => smtp.read(50_000)));
    const codes = replies.map((r) => r.code);
    assert.deepEqual(codes.filter((c) => c !== 250), [452], replies.map((r) => r.text).join('\n'));
    assert.match(replies.find((r) => r.code === 452)!.text, /^452 4\.3\.1 Insufficient system storage: as many messages are being received as are held at once/);
    for (const smtp of sessions) smtp.write('QUIT\r\n');

    // All of them ended: the next message is held again.
    const again = await start(MESSAGES_IN_MEMORY + 1);
    for (let i = 0; i < mebibytes(); i++) again.write(chunk);
    again.write('.\r\n');
    assert.equal((await again.read(50_000)).code, 250);
    assert.equal((await again.command('QUIT')).code, 221);
  });

  test(`one client holds at most half: its ${MESSAGES_IN_MEMORY / 2 + 1}th message at once gets 452 4.3.1, while another client's is taken`, { timeout: 60_000 }, async () => {
    const hogs = await Promise.all(Array.from({ length: MESSAGES_IN_MEMORY / 2 + 1 }, (_, n) => start(100 + n)));
    for (let i = 0; i < mebibytes(); i++) for (const smtp of hogs) smtp.write(chunk);
    const other = await start(200, '127.0.2.10');
    for (let i = 0; i < mebibytes(); i++) other.write(chunk);
    await allRead([...hogs, other]);
    for (const smtp of [...hogs, other]) smtp.write('.\r\n');
    const replies = await Promise.all(hogs.map((smtp) => smtp.read(50_000)));
    assert.deepEqual(replies.map((r) => r.code).filter((c) => c !== 250), [452], replies.map((r) => r.text).join('\n'));
    assert.match(replies.find((r) => r.code === 452)!.text, /^452 4\.3\.1 Insufficient system storage: messages from 192\.0\.2\.66 being received at once hold as much as one client may/);
    assert.equal((await other.read(50_000)).code, 250, 'the other client is not refused for it');
    for (const smtp of [...hogs, other]) smtp.write('QUIT\r\n');
  });
});

describe('submission', () => {
  test('a logged-in user sending a message 40 times the size limit gets 552 5.3.4, and submission holds far less than it', { timeout: 60_000 }, async () => {
    const { smtp } = await RawSmtp.open(host, submissionPort, '127.0.0.1');
    assert.equal((await smtp.command('EHLO client.example')).code, 250);
    assert.equal((await smtp.command(`AUTH PLAIN ${Buffer.from('\0alice@receiver.test\0alice-lab-password').toString('base64')}`)).code, 235);
    assert.equal((await smtp.command('MAIL FROM:<alice@receiver.test>')).code, 250);
    assert.equal((await smtp.command('RCPT TO:<bob@receiver.test>')).code, 250);
    assert.equal((await smtp.command('DATA')).code, 354);
    const size = 40 * messageSize;
    const before = status('VmRSS');
    writeFileSync(`/proc/${mta.pid}/clear_refs`, '5');
    smtp.write('From: alice@receiver.test\r\nSubject: big\r\n\r\n');
    const line = Buffer.from(`${'z'.repeat(1022)}\r\n`);
    const chunk = Buffer.concat(Array.from({ length: 1024 }, () => line));
    for (let sent = 0; sent < size; sent += chunk.length) smtp.write(chunk);
    smtp.write('.\r\n');
    const reply = await smtp.read(50_000);
    assert.match(reply.text, /^552 5\.3\.4 /);
    const peak = status('VmHWM') - before;
    assert.ok(peak < size / 2, `submission grew by ${Math.round(peak / 2 ** 20)} MiB for a ${size / 2 ** 20} MiB message`);
    assert.equal((await smtp.command('QUIT')).code, 221);
  });
});
