// What a hostile or broken client does to an MX, over real sockets against
// the real receiver: guessing mailboxes one RCPT after another, a message
// that has gone round a mail loop, holding every connection slot.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { checkInstance } from '../services/mta/instance.ts';
import { ATTACKER_HOST, deliver, recorded } from './support/mail.ts';
import { RawSmtp, type Reply } from './support/smtp.ts';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';

const REFUSED_RECIPIENTS = 10; // services/mta/inbound/mx.ts

let lab: TestLab;
let receiver: LabMta;

before(async () => {
  lab = await startLab();
  receiver = await lab.start('receiver');
});
after(() => lab.close());

async function mx(): Promise<RawSmtp> {
  const { smtp } = await RawSmtp.open(receiver.host, receiver.mxPort, '127.0.2.66');
  assert.equal((await smtp.command('EHLO mta.attacker.test')).code, 250);
  return smtp;
}

describe('mailbox harvesting', () => {
  test(`after ${REFUSED_RECIPIENTS} refused RCPTs in a session the next one gets 421 4.7.0 and the connection closes`, async () => {
    const smtp = await mx();
    assert.equal((await smtp.command('MAIL FROM:<mallory@attacker.test>')).code, 250);
    // Known mailboxes in between do not count; a foreign domain does; RSET does not start over.
    for (let i = 1; i <= REFUSED_RECIPIENTS; i++) {
      const rcpt = i === 5 ? 'someone@gmail.com' : `guess${i}@receiver.test`;
      assert.match((await smtp.command(`RCPT TO:<${rcpt}>`)).text, /^550 5\.(1\.1|7\.1) /, rcpt);
      if (i === 3) assert.equal((await smtp.command('RCPT TO:<alice@receiver.test>')).code, 250);
      if (i === 7) {
        assert.equal((await smtp.command('RSET')).code, 250);
        assert.equal((await smtp.command('MAIL FROM:<mallory@attacker.test>')).code, 250);
      }
    }
    const cut = await smtp.command('RCPT TO:<guess11@receiver.test>');
    assert.equal(cut.text, '421 4.7.0 Too many unknown recipients: more than 10 refused in one session; closing the connection');
    await smtp.closed;
    assert.equal((await smtp.read()).code, 0, 'the server closed the connection');

    // The next session starts with a clean count.
    const again = await mx();
    assert.equal((await again.command('MAIL FROM:<mallory@attacker.test>')).code, 250);
    assert.match((await again.command('RCPT TO:<guess12@receiver.test>')).text, /^550 5\.1\.1 /);
    assert.equal((await again.command('QUIT')).code, 221);
  });
});

describe('the hop limit', () => {
  // A message that has passed `hops` MTAs, each of which added a Received field.
  const looped = (hops: number) => {
    const messageId = `<hops-${hops}.${Date.now()}@attacker.test>`;
    const received = Array.from({ length: hops }, (_, i) => `Received: from relay${i}.attacker.test by relay${i + 1}.attacker.test; ${new Date().toUTCString()}\r\n`).join('');
    return { messageId, text: `${received}From: mallory@attacker.test\r\nTo: bob@receiver.test\r\nSubject: ${hops} hops\r\nMessage-ID: ${messageId}\r\n\r\nround and round\r\n` };
  };

  test('more than 50 Received fields: 554 5.4.6, nothing stored, the reason recorded', async () => {
    for (const hops of [51, 150]) {
      const { messageId, text } = looped(hops);
      const reply = await deliver(receiver, ATTACKER_HOST, 'mallory@attacker.test', text);
      assert.equal(reply.text, `554 5.4.6 Too many hops: ${hops} Received fields, more than 50: the message is in a mail loop (RFC 5321 section 6.3)`);
      const t = await recorded(receiver, messageId);
      assert.deepEqual(t.decision, { disposition: 'refused', code: 554, enhanced: '5.4.6', reason: reply.text.slice('554 5.4.6 '.length) });
      assert.deepEqual(t.deliveries, []);
    }
  });

  test('50 Received fields are still delivered', async () => {
    const { text } = looped(50);
    assert.match((await deliver(receiver, ATTACKER_HOST, 'mallory@attacker.test', text)).text, /^250 2\.6\.0 Delivered to INBOX: /);
  });
});

describe('connections per client address', () => {
  const connect = (to: LabMta, client: string) => RawSmtp.open(to.host, to.mxPort, client);

  test('by default 30 sessions from one address are served (bench:mx opens 20), the 31st gets 421 4.7.0; others still get in', async () => {
    assert.equal(receiver.instance.limits.clientsPerAddress, 30, 'from instances/receiver.yaml');
    const held = await Promise.all(Array.from({ length: 30 }, () => connect(receiver, '127.0.2.66')));
    assert.deepEqual(new Set(held.map((h) => h.greeting.code)), new Set([220]));
    const refused = await connect(receiver, '127.0.2.66');
    assert.equal(refused.greeting.text, '421 4.7.0 mx.receiver.test Too many connections from 192.0.2.66: at most 30 at once; try again later');
    await refused.smtp.closed;
    // Another MTA is not locked out.
    const other = await connect(receiver, '127.0.2.10');
    assert.equal(other.greeting.code, 220);
    assert.equal((await other.smtp.command('EHLO mta.sender.test')).code, 250);
    other.smtp.end();
    // A session that ends frees its slot.
    assert.equal((await held[0].smtp.command('QUIT')).code, 221);
    await held[0].smtp.closed;
    let again: Reply = { code: 0, text: '' };
    for (const deadline = Date.now() + 3000; again.code !== 220 && Date.now() < deadline; ) {
      const attempt = await connect(receiver, '127.0.2.66');
      again = attempt.greeting;
      if (again.code === 220) attempt.smtp.end();
    }
    assert.equal(again.code, 220, 'a slot came free');
    for (const { smtp } of held) smtp.end();
    await Promise.all(held.map((h) => h.smtp.closed));
  });

  test('limits.clientsPerAddress in the instance file sets it', async () => {
    const crowded = await lab.start('receiver', (i) => ({ ...i, name: 'crowded', limits: { ...i.limits, clientsPerAddress: 2 } }));
    const held = [await connect(crowded, '127.0.2.66'), await connect(crowded, '127.0.2.66')];
    assert.deepEqual(held.map((h) => h.greeting.code), [220, 220]);
    assert.match((await connect(crowded, '127.0.2.66')).greeting.text, /^421 4\.7\.0 mx\.receiver\.test Too many connections from 192\.0\.2\.66: at most 2 at once/);
    for (const { smtp } of held) smtp.end();
    await lab.stop('crowded');
  });

  test('the instance file is checked: a whole number from 1 to limits.clients, 30 when absent', () => {
    const doc = () => parse(readFileSync(new URL('../instances/receiver.yaml', import.meta.url), 'utf8'));
    const check = (change: (d: { limits: Record<string, unknown> }) => void) => () => {
      const d = doc();
      change(d);
      return checkInstance(d, 'instances/x.yaml');
    };
    assert.throws(check((d) => (d.limits.clientsPerAddress = 0)), /^ConfigError: instances\/x\.yaml: limits\.clientsPerAddress: must be a whole number from 1 to 100, found 0$/);
    assert.throws(check((d) => (d.limits.clientsPerAddress = 101)), /limits\.clientsPerAddress: must be a whole number from 1 to 100, found 101/);
    assert.equal(check((d) => delete d.limits.clientsPerAddress)().limits.clientsPerAddress, 30);
    assert.equal(check((d) => ((d.limits.clients = 5), delete d.limits.clientsPerAddress))().limits.clientsPerAddress, 5);
  });
});
