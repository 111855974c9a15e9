// What the session index keeps of each message is small, whatever the
// message: the index lives as long as the records it lists (sessionsKept,
// 10,000 sessions, each with any number of messages), so anything of a
// message it holds on to adds up with every message a client sends. Against
// the MX of an in-process lab, over SMTP.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';
import { RawSmtp } from './support/smtp.ts';
import { waitFor } from './support/mail.ts';

// A full collection, so that what is measured is what is still referenced.
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;

let lab: TestLab;
let receiver: LabMta;
before(async () => {
  lab = await startLab();
  receiver = await lab.start('receiver');
});
after(() => lab?.close());

test('the index keeps no message header section: 40 messages with 500 kB of header fields leave the heap as it was', { timeout: 120_000 }, async () => {
  const { smtp, greeting } = await RawSmtp.open(receiver.host, receiver.mxPort, '127.0.2.66');
  assert.equal(greeting.code, 220);
  assert.equal((await smtp.command('EHLO mta.attacker.test')).code, 250);
  // One field folded over 500 lines: a header section of 500 kB. (Over about
  // 1 MB, Node makes the text an external string, outside the heap measured here.)
  const filler = `X-Filler: ${Array.from({ length: 500 }, () => 'f'.repeat(1000)).join('\r\n\t')}\r\n`;
  const send = async (n: number) => {
    assert.equal((await smtp.command('MAIL FROM:<mallory@attacker.test>')).code, 250);
    assert.equal((await smtp.command('RCPT TO:<bob@receiver.test>')).code, 250);
    assert.equal((await smtp.command('DATA')).code, 354);
    const reply = await smtp.command(`From: mallory@attacker.test\r\nMessage-ID: <held-${n}@attacker.test>\r\n${filler}Subject: held ${n}\r\n\r\nbody\r\n.`);
    assert.equal(reply.code, 250, reply.text);
  };
  // The first message loads what every message needs (mailauth, the verification thread).
  await send(0);
  collect();
  const baseline = process.memoryUsage().heapUsed;
  for (let n = 1; n <= 40; n++) await send(n);
  assert.equal((await smtp.command('QUIT')).code, 221);
  await smtp.closed;
  const listed = await waitFor('the session listed with its 41 messages', () => {
    const session = receiver.sessions.list({ messageId: '<held-40@attacker.test>' })[0];
    return session?.endedAt && session.messageIds.length === 41 ? session : undefined;
  });
  assert.equal(listed.messageIds[40], '<held-40@attacker.test>');
  collect();
  const grown = process.memoryUsage().heapUsed - baseline;
  // Each message's header section held on to would be 20 MB together.
  assert.ok(grown < 8 * 2 ** 20, `the heap grew by ${(grown / 2 ** 20).toFixed(1)} MiB over 40 messages`);
});
