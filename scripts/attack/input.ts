// Item 11: SMTP input the MX took as it came. NUL bytes in DATA were
// stored, 8-bit envelopes accepted without SMTPUTF8, a bare CR inside a
// command split it into two, 5,000 unknown RCPTs got 5,000 550s and no
// disconnect, and a message with 150 Received fields was taken and
// forwarded. Each over a raw session from the attacker's host to the receiver.
import type { AttackLab } from './lab.ts';
import { RawSmtp, summary } from './net.ts';
import { outcome, type Attack } from './report.ts';

const ATTACKER = '127.0.2.66'; // mta.attacker.test
const REFUSED_RECIPIENTS = 10; // services/mta/inbound.ts

async function session(lab: AttackLab): Promise<RawSmtp> {
  const { smtp } = await RawSmtp.open(lab.at('receiver', 'mx'), ATTACKER);
  await smtp.command('EHLO mta.attacker.test');
  return smtp;
}

// MAIL and RCPT for bob@receiver.test, DATA, then the message: its reply.
async function sendData(smtp: RawSmtp, message: string) {
  await smtp.command('MAIL FROM:<mallory@attacker.test>');
  await smtp.command('RCPT TO:<bob@receiver.test>');
  const data = await smtp.command('DATA');
  if (data.code !== 354) return data;
  smtp.write(`${message}.\r\n`);
  return smtp.read();
}

const nul: Attack = {
  item: 11,
  name: 'a NUL byte in DATA',
  expected: '550 5.6.0 (NUL byte in message data), and the session goes on in step (NOOP 250)',
  async run(lab) {
    const smtp = await session(lab);
    const reply = await sendData(smtp, 'From: mallory@attacker.test\r\nSubject: nul\r\n\r\nhello\0world\r\n');
    const noop = await smtp.command('NOOP');
    return outcome(/^550 5\.6\.0 NUL byte/.test(reply.text) && noop.code === 250, `${reply.text}; NOOP ${noop.code}`);
  },
};

const eightBit: Attack = {
  item: 11,
  name: 'an 8-bit envelope without SMTPUTF8 (jörg@gmail.com, bøb@receiver.test)',
  expected: '550 5.6.7 at MAIL FROM, 553 5.6.7 at RCPT TO',
  async run(lab) {
    const smtp = await session(lab);
    const mail = await smtp.command('MAIL FROM:<jörg@gmail.com>');
    await smtp.command('MAIL FROM:<mallory@attacker.test>');
    const rcpt = await smtp.command('RCPT TO:<bøb@receiver.test>');
    return outcome(/^550 5\.6\.7 /.test(mail.text) && /^553 5\.6\.7 /.test(rcpt.text), `MAIL: ${mail.text}; RCPT: ${rcpt.text}`);
  },
};

const bareCr: Attack = {
  item: 11,
  name: 'a bare CR inside a command: "MAIL FROM:<a@gmail.com>\\rRCPT TO:<bob@receiver.test>"',
  expected: '500 5.5.2, the line refused whole: neither command runs (a RCPT after it gets 503, no MAIL began)',
  async run(lab) {
    const smtp = await session(lab);
    smtp.write('MAIL FROM:<a@gmail.com>\rRCPT TO:<bob@receiver.test>\r\n');
    const refused = await smtp.read();
    const rcpt = await smtp.command('RCPT TO:<bob@receiver.test>');
    return outcome(/^500 5\.5\.2 /.test(refused.text) && rcpt.code === 503, `${refused.text}; then RCPT: ${rcpt.text}`);
  },
};

const harvesting: Attack = {
  item: 11,
  name: '5,000 RCPTs for unknown mailboxes, pipelined',
  expected: `${REFUSED_RECIPIENTS} × 550 5.1.1, then 421 4.7.0 and the connection closed`,
  async run(lab) {
    const smtp = await session(lab);
    await smtp.command('MAIL FROM:<mallory@attacker.test>');
    smtp.write(Array.from({ length: 5000 }, (_, i) => `RCPT TO:<guess${i}@receiver.test>\r\n`).join(''));
    const replies = await smtp.readAll();
    return outcome(
      replies.length === REFUSED_RECIPIENTS + 1 &&
        replies.slice(0, REFUSED_RECIPIENTS).every((r) => /^550 5\.1\.1 /.test(r.text)) &&
        /^421 4\.7\.0 /.test(replies.at(-1)!.text) &&
        smtp.closedByServer,
      `${summary(replies.map((r) => ({ ...r, text: r.text.replace(/guess\d+/, 'guessN') })))}, then ${smtp.closedByServer ? 'closed' : 'still open'}`,
    );
  },
};

const hops: Attack = {
  item: 11,
  name: 'a message with 150 Received fields (a mail loop)',
  expected: '554 5.4.6 (too many hops, more than 50)',
  async run(lab) {
    const smtp = await session(lab);
    const received = Array.from({ length: 150 }, (_, i) => `Received: from relay${i}.attacker.test by relay${i + 1}.attacker.test; ${new Date().toUTCString()}\r\n`).join('');
    const reply = await sendData(smtp, `${received}From: mallory@attacker.test\r\nTo: bob@receiver.test\r\nSubject: 150 hops\r\n\r\nround and round\r\n`);
    return outcome(/^554 5\.4\.6 /.test(reply.text), reply.text);
  },
};

export const attacks: Attack[] = [nul, eightBit, bareCr, harvesting, hops];
