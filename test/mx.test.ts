// The receiver's SMTP side, driven over real sockets and by swaks: every
// command, every refusal with its code, limits, smuggling, and what is
// stored and recorded.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { SessionStore } from '../services/mta/store/sessions.ts';
import { WriteAheadLog } from '../services/mta/store/write-ahead-log.ts';
import { RawSmtp } from './support/smtp.ts';
import { startLab, type TestLab } from './support/lab.ts';
import { requireTool } from './support/tools.ts';

const run = promisify(execFile);
const caFile = new URL('../instances/certs/ca.pem', import.meta.url).pathname;

let lab: TestLab;
let receiver: Awaited<ReturnType<TestLab['start']>>;

before(async () => {
  lab = await startLab();
  receiver = await lab.start('receiver');
});
after(() => lab.close());

const api = async (path: string) => (await fetch(`http://${receiver.host}:${receiver.apiPort}${path}`)).json();
// A session's record is complete (the last reply, QUIT) once the connection has closed.
async function endedSession(id: string) {
  for (const deadline = Date.now() + 3000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 20))) {
    const session = await api(`/api/sessions/${id}`);
    if (session.endedAt) return session;
  }
  throw new Error(`session ${id} did not end`);
}
const inbox = (mailbox: string, folder = '') => join(lab.dataDir, 'receiver', 'mail', 'receiver.test', mailbox, folder, 'new');
const files = (dir: string) => {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
};

async function swaks(args: string[]) {
  try {
    const { stdout } = await run('swaks', ['--server', `${receiver.host}:${receiver.mxPort}`, '--timeout', '10', ...args]);
    return { code: 0, output: stdout };
  } catch (error) {
    const e = error as { code: number; stdout: string };
    return { code: e.code, output: e.stdout };
  }
}

describe('a session a person types', () => {
  test('the classic first session over a raw socket lands in the INBOX', async () => {
    const { smtp, greeting } = await RawSmtp.open(receiver.host, receiver.mxPort, '127.0.0.1');
    assert.equal(greeting.code, 220);
    assert.match(greeting.text, /^220 mx\.receiver\.test ESMTP/);
    assert.equal((await smtp.command('HELO gmail.com')).code, 250);
    assert.equal((await smtp.command('MAIL FROM: <example@gmail.com>')).code, 250);
    assert.equal((await smtp.command('RCPT TO: <alice@receiver.test>')).code, 250);
    assert.equal((await smtp.command('DATA')).code, 354);
    smtp.write('From: John Doe <example@gmail.com>\r\nTo: Alice <alice@receiver.test>\r\nSubject: This is smtp mail\r\n\r\nHello from telnet.\r\n.\r\n');
    const accepted = await smtp.read();
    assert.equal(accepted.code, 250);
    assert.match(accepted.text, /^250 2\.6\.0 Delivered to INBOX: /);
    assert.equal((await smtp.command('QUIT')).code, 221);
    await smtp.closed;

    const id = accepted.text.split(': ')[1];
    assert.ok(files(inbox('alice')).includes(id), 'in alice/new');
    const stored = readFileSync(join(inbox('alice'), id), 'utf8');
    assert.match(stored, /^Return-Path: <example@gmail\.com>\r\nDelivered-To: alice@receiver\.test\r\nReceived: from gmail\.com \(\[127\.0\.0\.1\]\)\r\n\tby mx\.receiver\.test \(mail-lab\) with ESMTP id \w+\r\n\tfor <alice@receiver\.test>; /);
    // gmail.com does not exist in the lab: a definite "none", not an error.
    assert.match(stored, /\r\nReceived-SPF: none /);
    assert.match(stored, /\r\nAuthentication-Results: mx\.receiver\.test;[\s\S]*spf=none[\s\S]*dmarc=none/);
    assert.match(stored, /\r\n\r\nHello from telnet\.\r\n$/);

    const message = await api(`/api/messages/${id}`);
    assert.equal(message.mailbox, 'alice@receiver.test');
    assert.equal(message.folder, 'INBOX');
    assert.deepEqual(message.headers.find((h: { name: string }) => h.name === 'Subject'), { name: 'Subject', value: 'This is smtp mail' });
    const session = await endedSession(message.session);
    assert.deepEqual(
      session.transcript.map((t: { line: string }) => t.line.split(' ')[0]),
      ['S:', 'C:', 'S:', 'C:', 'S:', 'C:', 'S:', 'C:', 'S:', 'C:', 'S:', 'C:', 'S:'],
    );
    assert.equal(session.transcript[1].line, 'C: HELO gmail.com');
    assert.ok(session.transcript.some((t: { line: string }) => /^C: <\d+ bytes of DATA>$/.test(t.line)), 'the message data as its size');
    assert.equal(session.transactions[0].decision.disposition, 'inbox');
    assert.equal(session.transactions[0].checks.spf.result, 'none');
    assert.ok(session.transactions[0].dns.some((q: { name: string; error?: string }) => q.name === 'gmail.com' && q.error === 'ENOTFOUND'));
    const raw = await fetch(`http://${receiver.host}:${receiver.apiPort}/api/messages/${id}/raw`);
    assert.equal(raw.headers.get('content-type'), 'message/rfc822');
    assert.equal(await raw.text(), stored);
  });

  test('EHLO lists the extensions; NOOP, RSET, VRFY, HELP answer', async () => {
    const { smtp } = await RawSmtp.open(receiver.host, receiver.mxPort, '127.0.0.1');
    const ehlo = await smtp.command('EHLO client.example');
    for (const extension of ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'STARTTLS', 'SIZE 10485760']) {
      assert.match(ehlo.text, new RegExp(`^250[- ]${extension}$`, 'm'), extension);
    }
    assert.doesNotMatch(ehlo.text, /AUTH/, 'an MX offers no AUTH');
    assert.equal((await smtp.command('NOOP')).code, 250);
    assert.equal((await smtp.command('RSET')).code, 250);
    assert.match((await smtp.command('VRFY alice')).text, /^252 2\.1\.5 /);
    assert.equal((await smtp.command('HELP')).code, 214);
    assert.equal((await smtp.command('QUIT')).code, 221);
  });

  test('pipelined commands are answered in order', async () => {
    const { smtp } = await RawSmtp.open(receiver.host, receiver.mxPort, '127.0.0.1');
    await smtp.command('EHLO client.example');
    smtp.write('MAIL FROM:<a@gmail.com>\r\nRCPT TO:<bob@receiver.test>\r\nRCPT TO:<nobody@receiver.test>\r\nDATA\r\n');
    assert.deepEqual([(await smtp.read()).code, (await smtp.read()).code, (await smtp.read()).code, (await smtp.read()).code], [250, 250, 550, 354]);
    smtp.write('From: a@gmail.com\r\nSubject: pipelined\r\n\r\nbody\r\n.\r\nQUIT\r\n');
    assert.equal((await smtp.read()).code, 250);
    assert.equal((await smtp.read()).code, 221);
  });
});

describe('refusals, each with its code', () => {
  const transaction = async (rcpt: string) => {
    const { smtp } = await RawSmtp.open(receiver.host, receiver.mxPort, '127.0.0.1');
    await smtp.command('EHLO client.example');
    await smtp.command('MAIL FROM:<someone@gmail.com>');
    const reply = await smtp.command(`RCPT TO:<${rcpt}>`);
    smtp.end();
    return reply;
  };

  test('relaying is denied, unknown mailboxes are refused, postmaster always exists', async () => {
    assert.match((await transaction('bob@gmail.com')).text, /^550 5\.7\.1 Relaying denied: mx\.receiver\.test does not accept mail for gmail\.com$/);
    assert.match((await transaction('nobody@receiver.test')).text, /^550 5\.1\.1 No such mailbox: nobody@receiver\.test$/);
    assert.equal((await transaction('postmaster@receiver.test')).code, 250);
    assert.equal((await transaction('Alice@Receiver.TEST')).code, 250, 'domains and mailboxes are case-insensitive');
  });

  test('swaks sees a spoof of a p=reject domain refused with 550 5.7.1 and the reason', async (t) => {
    if (!requireTool(t, 'swaks', 'swaks')) return;
    const result = await swaks(['--local-interface', '127.0.2.66', '--helo', 'mta.attacker.test', '--from', 'ceo@sender.test', '--to', 'alice@receiver.test', '--header', 'Subject: urgent wire transfer']);
    assert.notEqual(result.code, 0);
    assert.match(result.output, /<\*\* +550 5\.7\.1 Message rejected: DMARC fail for sender\.test \(p=reject\): neither SPF nor DKIM passed/);
    const rejected = await api('/api/sessions?disposition=reject');
    const session = await endedSession(rejected[0].id);
    const [transactionRecord] = session.transactions;
    assert.equal(session.client.address, '192.0.2.66', 'the lab address, not the loopback one');
    assert.equal(session.client.hostname, 'mta.attacker.test', 'from the lab PTR');
    assert.equal(transactionRecord.checks.spf.result, 'fail');
    assert.equal(transactionRecord.checks.dmarc.policy, 'reject');
    assert.ok(transactionRecord.dns.some((q: { name: string; type: string }) => q.name === '_dmarc.sender.test' && q.type === 'TXT'));
    assert.ok(session.transcript.some((l: { line: string }) => l.line.startsWith('S: 550 5.7.1 Message rejected')));
  });

  test('swaks over STARTTLS with the lab CA: verified, and the Received header says so', async (t) => {
    if (!requireTool(t, 'swaks', 'swaks')) return;
    const result = await swaks(['--tls', '--tls-verify', '--tls-ca-path', caFile, '--local-interface', '127.0.2.10', '--helo', 'mta.sender.test', '--from', 'alice@sender.test', '--to', 'bob@receiver.test', '--header', 'Subject: over TLS']);
    assert.equal(result.code, 0, result.output);
    assert.match(result.output, /TLS started with cipher TLSv1\.3/);
    const id = /250 2\.6\.0 Delivered to INBOX: (\S+)/.exec(result.output)![1];
    const stored = readFileSync(join(inbox('bob'), id), 'utf8');
    assert.match(stored, /with ESMTPS \(TLSv1\.3 TLS_AES_256_GCM_SHA384\)/);
    // SPF passes for the sender's address; no DKIM signature, so DMARC passes on SPF alone.
    assert.match(stored, /spf=pass/);
    assert.match(stored, /dmarc=pass/);
  });

  test('a declared size over the limit gets 552 5.3.4 at MAIL FROM', async () => {
    const { smtp } = await RawSmtp.open(receiver.host, receiver.mxPort, '127.0.0.1');
    await smtp.command('EHLO client.example');
    assert.match((await smtp.command('MAIL FROM:<a@gmail.com> SIZE=20000000')).text, /^552 5\.3\.4 /);
    smtp.end();
  });
});

describe('limits', () => {
  let small: Awaited<ReturnType<TestLab['start']>>;
  before(async () => {
    small = await lab.start('receiver', (instance) => ({
      ...instance,
      name: 'small',
      limits: { messageSize: 2048, recipients: 2, clients: 1, clientsPerAddress: 1, idleSeconds: 1 },
    }));
  });

  test('too many recipients: 452 4.5.3', async () => {
    const { smtp } = await RawSmtp.open(small.host, small.mxPort, '127.0.0.1');
    await smtp.command('EHLO client.example');
    await smtp.command('MAIL FROM:<a@gmail.com>');
    assert.equal((await smtp.command('RCPT TO:<alice@receiver.test>')).code, 250);
    assert.equal((await smtp.command('RCPT TO:<bob@receiver.test>')).code, 250);
    assert.match((await smtp.command('RCPT TO:<postmaster@receiver.test>')).text, /^452 4\.5\.3 Too many recipients: at most 2/);
    smtp.end();
    await smtp.closed;
  });

  test('a message over the size limit: 552 5.3.4, and nothing stored', async () => {
    const { smtp } = await RawSmtp.open(small.host, small.mxPort, '127.0.0.1');
    await smtp.command('EHLO client.example');
    await smtp.command('MAIL FROM:<a@gmail.com>');
    await smtp.command('RCPT TO:<alice@receiver.test>');
    await smtp.command('DATA');
    smtp.write(`Subject: big\r\n\r\n${'x'.repeat(70) + '\r\n'}`.repeat(60) + '.\r\n');
    assert.match((await smtp.read()).text, /^552 5\.3\.4 /);
    assert.equal((await smtp.command('QUIT')).code, 221);
    assert.deepEqual(files(join(lab.dataDir, 'small', 'mail', 'receiver.test', 'alice', 'new')), []);
  });

  test('one client too many: 421 before the greeting; a silent client is dropped with 421 4.4.2', async () => {
    const first = await RawSmtp.open(small.host, small.mxPort, '127.0.0.1');
    const second = await RawSmtp.open(small.host, small.mxPort, '127.0.0.1');
    // In place of the greeting, so without an enhanced code (RFC 2034 section 3).
    assert.match(second.greeting.text, /^421 mx\.receiver\.test Too many connected clients, try again in a moment$/);
    await second.smtp.closed;
    // The first one says nothing for more than idleSeconds.
    const dropped = await first.smtp.read(5000);
    assert.match(dropped.text, /^421 4\.4\.2 /);
    await first.smtp.closed;
  });
});

describe('SMTP smuggling', () => {
  for (const [name, separator] of [
    ['\\n.\\n', '\n.\n'],
    ['\\r.\\r', '\r.\r'],
    ['\\n.\\r\\n', '\n.\r\n'],
    ['\\r\\n.\\r', '\r\n.\r'],
  ]) {
    test(`a message hiding a second one behind ${name} yields no second message`, async () => {
      const before = files(inbox('bob')).length;
      const { smtp } = await RawSmtp.open(receiver.host, receiver.mxPort, '127.0.0.1');
      await smtp.command('EHLO client.example');
      await smtp.command('MAIL FROM:<a@gmail.com>');
      await smtp.command('RCPT TO:<bob@receiver.test>');
      await smtp.command('DATA');
      smtp.write(
        `From: a@gmail.com\r\nSubject: first\r\n\r\nhello${separator}` +
          `MAIL FROM:<ceo@sender.test>\r\nRCPT TO:<bob@receiver.test>\r\nDATA\r\nFrom: ceo@sender.test\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n`,
      );
      const reply = await smtp.read();
      // Bare CR or LF is refused: exactly one reply, and the "commands" inside were never run.
      assert.match(reply.text, /^550 5\.5\.2 bare (LF|CR) in message data/);
      assert.equal((await smtp.command('NOOP')).code, 250, 'the session goes on in step');
      assert.equal((await smtp.command('QUIT')).code, 221);
      assert.equal(files(inbox('bob')).length, before, 'nothing stored');
    });
  }
});

describe('shutdown', () => {
  test('stopping the MTA right after a session closes keeps the end of its record', async () => {
    const stopping = await lab.start('receiver', (instance) => ({ ...instance, name: 'stopping' }));
    const { smtp } = await RawSmtp.open(stopping.host, stopping.mxPort, '127.0.0.1');
    await smtp.command('EHLO client.example');
    assert.equal((await smtp.command('QUIT')).code, 221);
    await smtp.closed;
    await lab.stop('stopping');
    const reopened = new SessionStore(join(lab.dataDir, 'stopping', 'sessions'), 10, new WriteAheadLog(join(lab.dataDir, 'stopping', 'wal'), pino({ level: 'silent' })));
    const [summary] = reopened.list();
    assert.ok(summary, 'the session was recorded');
    const record = await reopened.get(summary.id);
    assert.ok(record?.endedAt, 'the end time was saved before the MTA stopped');
    assert.equal(record.transcript.at(-1)?.line, 'S: 221 2.0.0 Bye');
  });
});
