// Password guessing at submission, over real sockets against the real
// sender: failed logins are answered ever more slowly, then the client's
// address is locked out, whatever password it sends next. Each test speaks
// from its own loopback address, since the count is per address.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { RawSmtp, type Reply } from './support/smtp.ts';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';

let lab: TestLab;
let sender: LabMta;

before(async () => {
  lab = await startLab();
  sender = await lab.start('sender');
});
after(() => lab.close());

const plain = (password: string) => `AUTH PLAIN ${Buffer.from(`\0alice@sender.test\0${password}`).toString('base64')}`;

async function open(client: string): Promise<RawSmtp> {
  const { smtp } = await RawSmtp.open(sender.host, sender.submissionPort, client);
  assert.equal((await smtp.command('EHLO client.example')).code, 250);
  return smtp;
}

test('100 wrong passwords pipelined, then the right one: 535s ever slower, then 421 4.7.0 and the connection closed, never 235', async () => {
  const smtp = await open('127.0.5.1');
  const started = Date.now();
  smtp.write([...Array.from({ length: 100 }, (_, i) => plain(`guess-${i}`)), plain('alice-lab-password'), 'NOOP', ''].join('\r\n'));
  const replies: (Reply & { at: number })[] = [];
  for (let reply = await smtp.read(10_000); reply.code !== 0; reply = await smtp.read(10_000)) replies.push({ ...reply, at: Date.now() - started });
  assert.equal(replies.length, 5, replies.map((r) => r.text).join('\n'));
  for (const reply of replies.slice(0, 4)) assert.equal(reply.text, '535 5.7.8 Authentication failed: wrong user name or password');
  // Locked out for 5 minutes from the first failure, about 4 s ago.
  assert.match(replies[4].text, /^421 4\.7\.0 Too many failed logins from 127\.0\.5\.1: try again in 29\d s$/);
  // Each failure waits twice as long as the one before: 0.25, 0.5, 1, 2 s.
  const gaps = replies.slice(0, 4).map((r, i) => r.at - (i ? replies[i - 1].at : 0));
  gaps.forEach((gap, i) => assert.ok(gap >= 250 * 2 ** i - 20, `failure ${i + 1} answered after ${gap} ms`));
});

test('the locked-out address gets 421 4.7.0 on a new connection, even with the right password; another address logs in', async () => {
  const smtp = await open('127.0.5.2');
  for (let i = 0; i < 4; i++) assert.equal((await smtp.command(plain('wrong'))).code, 535);
  assert.match((await smtp.command(plain('wrong'))).text, /^421 4\.7\.0 Too many failed logins from 127\.0\.5\.2: try again in 29\d s$/);
  await smtp.closed;

  const again = await open('127.0.5.2');
  assert.match((await again.command(plain('alice-lab-password'))).text, /^421 4\.7\.0 Too many failed logins from 127\.0\.5\.2: try again in 29\d s$/);
  await again.closed;

  const other = await open('127.0.5.3');
  assert.equal((await other.command(plain('alice-lab-password'))).code, 235);
  assert.equal((await other.command('QUIT')).code, 221);
});

test('AUTH LOGIN counts the same way, and a success in between does not clear the count', async () => {
  const smtp = await open('127.0.5.4');
  const login = async (password: string) => {
    // The user name as the initial response: smtp-server closes a session after
    // 10 commands other than AUTH before a login, and each continuation line is one.
    assert.equal((await smtp.command(`AUTH LOGIN ${Buffer.from('alice@sender.test').toString('base64')}`)).code, 334);
    return smtp.command(Buffer.from(password).toString('base64'));
  };
  for (let i = 0; i < 3; i++) assert.equal((await login('wrong')).code, 535);
  const other = await open('127.0.5.4');
  assert.equal((await other.command(plain('alice-lab-password'))).code, 235, 'not locked yet');
  other.end();
  assert.equal((await login('wrong')).code, 535);
  assert.match((await login('wrong')).text, /^421 4\.7\.0 Too many failed logins from 127\.0\.5\.4: /);
});
