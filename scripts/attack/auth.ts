// Item 10: no AUTH throttle. 100 wrong passwords went by in 0.02 s on one
// connection, and then the right one was accepted. Failures are counted per
// client address: this attack locks 192.0.2.66 out of the sender's
// submission port for 5 minutes, which no other attack uses.
import { RawSmtp, summary } from './net.ts';
import { outcome, type Attack } from './report.ts';

const ATTACKER = '127.0.2.66'; // mta.attacker.test
const USER = 'alice@sender.test';
const plain = (password: string) => `AUTH PLAIN ${Buffer.from(`\0${USER}\0${password}`).toString('base64')}`;

const guessing: Attack = {
  item: 10,
  name: `100 wrong passwords for ${USER} pipelined on one connection, then the right one`,
  expected: '535 5.7.8 four times, each later than the one before (0.25, 0.5, 1, 2 s), then 421 4.7.0 and the connection closed: never 235; the right password on a new connection from that address: 421 4.7.0; from another address: 235',
  async run(lab) {
    const submission = lab.at('sender', 'submission');
    const right = lab.service('sender').instance!.submission.passwords.get('alice')!;
    const { smtp } = await RawSmtp.open(submission, ATTACKER);
    await smtp.command('EHLO mta.attacker.test');
    const started = performance.now();
    smtp.write([...Array.from({ length: 100 }, (_, i) => plain(`guess-${i}`)), plain(right), 'NOOP', ''].join('\r\n'));
    const replies = await smtp.readAll();
    const gaps = replies.slice(0, 4).map((r, i) => Math.round(r.at - (i ? replies[i - 1].at : started)));
    const slowed = gaps.length === 4 && gaps.every((gap, i) => gap >= 250 * 2 ** i - 20);

    const again = await RawSmtp.open(submission, ATTACKER);
    await again.smtp.command('EHLO mta.attacker.test');
    const later = await again.smtp.command(plain(right));
    const other = await RawSmtp.open(submission, '127.0.0.1');
    await other.smtp.command('EHLO client.example');
    const elsewhere = await other.smtp.command(plain(right));
    return outcome(
      replies.length === 5 &&
        replies.slice(0, 4).every((r) => r.text.startsWith('535 5.7.8 ')) &&
        slowed &&
        /^421 4\.7\.0 /.test(replies[4].text) &&
        smtp.closedByServer &&
        !replies.some((r) => r.code === 235) &&
        /^421 4\.7\.0 /.test(later.text) &&
        elsewhere.code === 235,
      `${summary(replies)}, ${smtp.closedByServer ? 'closed' : 'still open'} (gaps ${gaps.join(', ')} ms); new connection, right password: ${later.text}; from 127.0.0.1: ${elsewhere.code}`,
    );
  },
};

export const attacks: Attack[] = [guessing];
