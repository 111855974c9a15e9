// Bytes that SMTP input must not carry, over real sockets against the real
// MX and submission: a NUL or a bare CR in a message, a bare CR or a NUL
// inside a command line, a non-ASCII address without SMTPUTF8. Each is
// refused with its own code and the session goes on in step.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { api, submit } from './support/mail.ts';
import { RawSmtp } from './support/smtp.ts';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';

let lab: TestLab;
let receiver: LabMta;
let sender: LabMta;

before(async () => {
  lab = await startLab();
  receiver = await lab.start('receiver');
  sender = await lab.start('sender');
});
after(() => lab.close());

const stored = (mailbox: string) => {
  try {
    return readdirSync(`${receiver.maildir.folderPath(mailbox, 'INBOX')}/new`).length;
  } catch {
    return 0;
  }
};

async function mx(): Promise<RawSmtp> {
  const { smtp } = await RawSmtp.open(receiver.host, receiver.mxPort, '127.0.0.1');
  assert.equal((await smtp.command('EHLO client.example')).code, 250);
  return smtp;
}

// The record of the session whose transcript has `line`, once it has ended.
async function sessionWith(at: LabMta, line: string) {
  for (const deadline = Date.now() + 3000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 20))) {
    for (const { id } of await api<{ id: string }[]>(at, '/api/sessions')) {
      const session = await api<{ endedAt?: string; transcript: { line: string }[] }>(at, `/api/sessions/${id}`);
      if (session.endedAt && session.transcript.some((t) => t.line === line)) return session;
    }
  }
  throw new Error(`no ended session with ${JSON.stringify(line)}`);
}

describe('a message with a NUL or a bare CR', () => {
  test('a NUL byte in DATA: 550 5.6.0 with where, nothing stored, the refusal recorded', async () => {
    const before = stored('bob@receiver.test');
    const smtp = await mx();
    await smtp.command('MAIL FROM:<a@gmail.com>');
    await smtp.command('RCPT TO:<bob@receiver.test>');
    await smtp.command('DATA');
    smtp.write('From: a@gmail.com\r\nSubject: nul\r\n\r\nhello\0world\r\n.\r\n');
    const reply = await smtp.read();
    assert.match(reply.text, /^550 5\.6\.0 NUL byte in message data at byte 40: a message has none \(RFC 5322 section 2\.3/);
    assert.equal((await smtp.command('NOOP')).code, 250, 'the session goes on in step');
    assert.equal((await smtp.command('QUIT')).code, 221);
    assert.equal(stored('bob@receiver.test'), before, 'nothing stored');
    const session = (await sessionWith(receiver, `S: ${reply.text}`)) as unknown as { transactions: { decision: { disposition: string; code: number; enhanced: string } }[] };
    assert.deepEqual(
      { ...session.transactions[0].decision, reason: undefined },
      { disposition: 'refused', code: 550, enhanced: '5.6.0', reason: undefined },
    );
  });

  test('a lone bare CR in the body (no dot near it): 550 5.5.2', async () => {
    const before = stored('bob@receiver.test');
    const smtp = await mx();
    await smtp.command('MAIL FROM:<a@gmail.com>');
    await smtp.command('RCPT TO:<bob@receiver.test>');
    await smtp.command('DATA');
    smtp.write('From: a@gmail.com\r\nSubject: cr\r\n\r\nover\rwritten\r\n.\r\n');
    assert.match((await smtp.read()).text, /^550 5\.5\.2 bare CR in message data at byte 38: lines must end in CRLF/);
    assert.equal((await smtp.command('QUIT')).code, 221);
    assert.equal(stored('bob@receiver.test'), before);
  });

  test('submission: a NUL byte is refused with 550 5.6.0 (line ends are mended there; a NUL cannot be)', async () => {
    const reply = await submit(sender, {
      user: 'alice@sender.test',
      mailFrom: 'alice@sender.test',
      to: ['bob@receiver.test'],
      data: 'From: alice@sender.test\r\nTo: bob@receiver.test\r\nSubject: nul\r\n\r\nhello\0world\r\n',
    });
    assert.match(reply.text, /^550 5\.6\.0 NUL byte in message data at byte 69: /);
  });
});

describe('a bare CR or a NUL inside a command line', () => {
  test('"MAIL FROM:<a>\\rRCPT TO:<b>" is one line, refused whole with 500 5.5.2: neither command runs', async () => {
    const smtp = await mx();
    smtp.write('MAIL FROM:<a@gmail.com>\rRCPT TO:<bob@receiver.test>\r\n');
    const refused = await smtp.read();
    assert.match(refused.text, /^500 5\.5\.2 Syntax error: a bare CR in the command line, which was not run: CR only ends a line, as CRLF \(RFC 5321 section 2\.3\.8\)$/);
    // Exactly one reply, and no MAIL transaction began.
    assert.match((await smtp.command('RCPT TO:<bob@receiver.test>')).text, /^503 /);
    assert.equal((await smtp.command('MAIL FROM:<a@gmail.com>')).code, 250, 'a well-formed MAIL still works');
    smtp.write('NOOP\rQUIT\r\n');
    assert.match((await smtp.read()).text, /^500 5\.5\.2 /);
    assert.equal((await smtp.command('NOOP')).code, 250, 'QUIT inside the line did not run');
    assert.equal((await smtp.command('QUIT')).code, 221);
    await smtp.closed;
    // The transcript holds it as the one line it was.
    const session = await sessionWith(receiver, 'C: MAIL FROM:<a@gmail.com>\rRCPT TO:<bob@receiver.test>');
    assert.equal(session.transcript.filter((t) => t.line.startsWith('C: RCPT')).length, 1, 'only the separate RCPT');
  });

  test('a NUL in a command line: 500 5.5.2', async () => {
    const smtp = await mx();
    smtp.write('MAIL FROM:<a@gmail.com>\0 SIZE=10\r\n');
    assert.match((await smtp.read()).text, /^500 5\.5\.2 Syntax error: a NUL byte in the command line, which was not run/);
    assert.match((await smtp.command('RCPT TO:<bob@receiver.test>')).text, /^503 /);
    smtp.end();
  });

  test('submission refuses the same line the same way, also in the middle of AUTH', async () => {
    const { smtp } = await RawSmtp.open(sender.host, sender.submissionPort, '127.0.0.1');
    await smtp.command('EHLO client.example');
    assert.match((await smtp.command('NOOP\rQUIT')).text, /^500 5\.5\.2 Syntax error: a bare CR/);
    assert.equal((await smtp.command('AUTH LOGIN')).code, 334);
    assert.match((await smtp.command(`${Buffer.from('alice@sender.test').toString('base64')}\r`)).text, /^500 5\.5\.2 /);
    assert.equal((await smtp.command('NOOP')).code, 250, 'the AUTH exchange ended: NOOP is a command again');
    assert.equal((await smtp.command('QUIT')).code, 221);
  });
});

describe('non-ASCII addresses need SMTPUTF8 (RFC 6531 section 3.5)', () => {
  test('the MX: 550 5.6.7 at MAIL, 553 5.6.7 at RCPT (local part or domain), without quoting the address', async () => {
    const smtp = await mx();
    const mail = await smtp.command('MAIL FROM:<jörg@gmail.com>');
    assert.equal(mail.text, '550 5.6.7 Non-ASCII sender address without SMTPUTF8: add the SMTPUTF8 parameter to MAIL FROM (RFC 6531 section 3.5)');
    assert.equal((await smtp.command('MAIL FROM:<a@gmail.com>')).code, 250, 'no transaction began');
    for (const rcpt of ['bøb@receiver.test', 'bob@recéiver.test']) {
      const reply = await smtp.command(`RCPT TO:<${rcpt}>`);
      assert.equal(reply.text, '553 5.6.7 Non-ASCII recipient address without SMTPUTF8 on MAIL FROM (RFC 6531 section 3.5)', rcpt);
    }
    assert.equal((await smtp.command('RCPT TO:<bob@receiver.test>')).code, 250);
    assert.equal((await smtp.command('QUIT')).code, 221);
  });

  test('the MX with SMTPUTF8 (advertised): the same addresses are taken as addresses, and the message is delivered', async () => {
    const before = stored('bob@receiver.test');
    const smtp = await mx();
    assert.equal((await smtp.command('MAIL FROM:<jörg@gmail.com> SMTPUTF8')).code, 250);
    assert.match((await smtp.command('RCPT TO:<bøb@receiver.test>')).text, /^550 5\.1\.1 No such mailbox: /);
    assert.equal((await smtp.command('RCPT TO:<bob@receiver.test>')).code, 250);
    assert.equal((await smtp.command('DATA')).code, 354);
    smtp.write('From: jörg@gmail.com\r\nTo: bob@receiver.test\r\nSubject: utf8\r\n\r\nGrüße\r\n.\r\n');
    assert.match((await smtp.read()).text, /^250 2\.6\.0 Delivered to INBOX: /);
    assert.equal((await smtp.command('QUIT')).code, 221);
    assert.equal(stored('bob@receiver.test'), before + 1);
  });

  test('submission advertises SMTPUTF8 and asks for it the same way', async () => {
    const { smtp } = await RawSmtp.open(sender.host, sender.submissionPort, '127.0.0.1');
    assert.match((await smtp.command('EHLO client.example')).text, /^250[- ]SMTPUTF8$/m);
    assert.equal((await smtp.command(`AUTH PLAIN ${Buffer.from('\0alice@sender.test\0alice-lab-password').toString('base64')}`)).code, 235);
    assert.equal((await smtp.command('MAIL FROM:<alice@sender.test>')).code, 250);
    assert.match((await smtp.command('RCPT TO:<jörg@receiver.test>')).text, /^553 5\.6\.7 /);
    assert.equal((await smtp.command('RSET')).code, 250);
    assert.equal((await smtp.command('MAIL FROM:<alice@sender.test> SMTPUTF8')).code, 250);
    assert.equal((await smtp.command('RCPT TO:<jörg@receiver.test>')).code, 250);
    assert.equal((await smtp.command('QUIT')).code, 221);
  });
});
