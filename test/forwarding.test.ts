// Forwarding paths, end to end through the lab: the sender submits, the
// forwarder's alias or list sends it on, the receiver decides. What each
// habit of the forwarder does to SPF, DKIM, DMARC and ARC is what the
// scenarios teach.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RawSmtp } from './support/smtp.ts';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';

let lab: TestLab;
let sender: LabMta;
let receiver: LabMta;
let forwarder: LabMta;

before(async () => {
  lab = await startLab();
  receiver = await lab.start('receiver');
  sender = await lab.start('sender');
  forwarder = await lab.start('forwarder');
});
after(() => lab.close());

let counter = 0;

// Submits as alice@sender.test (AUTH PLAIN over the lab's plaintext allowance).
async function submit(to: string, subject: string): Promise<string> {
  const messageId = `<fwd-${++counter}.${Date.now()}@sender.test>`;
  const { smtp } = await RawSmtp.open(sender.host, sender.submissionPort, '127.0.0.1');
  await smtp.command('EHLO client.example');
  const auth = Buffer.from('\0alice@sender.test\0alice-lab-password').toString('base64');
  assert.equal((await smtp.command(`AUTH PLAIN ${auth}`)).code, 235);
  await smtp.command('MAIL FROM:<alice@sender.test>');
  assert.equal((await smtp.command(`RCPT TO:<${to}>`)).code, 250);
  await smtp.command('DATA');
  smtp.write(`From: Alice <alice@sender.test>\r\nTo: ${to}\r\nSubject: ${subject}\r\nMessage-ID: ${messageId}\r\n\r\nRead chapter 3.\r\n.\r\n`);
  assert.equal((await smtp.read()).code, 250);
  await smtp.command('QUIT');
  return messageId;
}

// The receiving transaction of a message at an instance, once it is there.
async function arrival(at: LabMta, messageId: string, count = 1) {
  const base = `http://${at.host}:${at.apiPort}/api/sessions`;
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
    const found = await (await fetch(`${base}?messageId=${encodeURIComponent(messageId)}`)).json();
    if (found.length >= count) {
      return Promise.all(found.map(async (s: { id: string }) => (await (await fetch(`${base}/${s.id}`)).json()).transactions.find((t: { message?: { messageId?: string } }) => t.message?.messageId === messageId)));
    }
  }
  throw new Error(`${messageId} did not arrive at ${at.instance.name}`);
}

test('an alias forwards unchanged: SPF fails at the receiver, DKIM survives and carries DMARC', async () => {
  const messageId = await submit('alice@forwarder.test', 'through an alias');
  const [atForwarder] = await arrival(forwarder, messageId);
  assert.equal(atForwarder.checks.dmarc.result, 'pass');
  assert.deepEqual(atForwarder.forwarded.map((f: { kind: string; to: string[]; mailFrom: string }) => [f.kind, f.to, f.mailFrom]), [['alias', ['alice@receiver.test'], 'alice@sender.test']]);
  const [atReceiver] = await arrival(receiver, messageId);
  assert.equal(atReceiver.checks.spf.result, 'fail', '192.0.2.30 is not in sender.test\'s SPF');
  assert.deepEqual(atReceiver.checks.dkim.map((d: { result: string }) => d.result), ['pass', 'pass']);
  assert.equal(atReceiver.checks.dmarc.result, 'pass');
  assert.equal(atReceiver.decision.disposition, 'inbox');
  assert.equal(atReceiver.checks.arc.result, 'pass', 'sealed by the forwarder');
});

test('a list tags and adds a footer: DKIM breaks, DMARC fails, the trusted ARC seal gets it in', async () => {
  const messageId = await submit('class@forwarder.test', 'homework');
  // One message for both members: they share the receiver.
  const transactions = await arrival(receiver, messageId);
  for (const t of transactions) {
    assert.deepEqual(t.envelope.rcptTo, ['alice@receiver.test', 'bob@receiver.test']);
    assert.deepEqual(t.deliveries.map((d: { mailbox: string }) => d.mailbox), ['alice@receiver.test', 'bob@receiver.test']);
    assert.equal(t.envelope.mailFrom, 'class-bounces@forwarder.test');
    assert.equal(t.checks.dkim[0].result, 'neutral', t.checks.dkim[0].reason);
    assert.equal(t.checks.dmarc.result, 'fail');
    assert.equal(t.checks.arc.sealer, 'forwarder.test');
    assert.match(t.decision.arcOverride, /forwarder\.test is a trusted ARC sealer/);
    assert.equal(t.decision.disposition, 'inbox');
  }
  const bob = join(lab.dataDir, 'receiver', 'mail', 'receiver.test', 'bob', 'new');
  const stored = readdirSync(bob).map((f) => readFileSync(join(bob, f), 'utf8')).find((m) => m.includes(messageId))!;
  assert.match(stored, /^Subject: \[class\] homework$/m);
  assert.match(stored, /^List-Id: <class\.forwarder\.test>$/m);
  assert.match(stored, /The class mailing list, class@forwarder\.test\r\n$/);
});

test('with SRS the envelope sender is the forwarder\'s, and a bounce finds its way back', async () => {
  // Started last, it takes over forwarder.test's MX address in the test lab.
  await lab.start('forwarder', (i) => ({
    ...i,
    name: 'forwarder-srs',
    forwarding: { ...i.forwarding, srs: true, aliases: new Map([['alice@forwarder.test', ['alice@receiver.test']], ['lost@forwarder.test', ['nobody@receiver.test']]]) },
  }));
  const messageId = await submit('alice@forwarder.test', 'srs');
  const [atReceiver] = await arrival(receiver, messageId);
  assert.match(atReceiver.envelope.mailFrom, /^SRS0=[^=]{4}=[A-Z2-7]{2}=sender\.test=alice@forwarder\.test$/);
  assert.equal(atReceiver.checks.spf.result, 'pass', 'SPF now checks forwarder.test');
  assert.equal(atReceiver.checks.dmarc.result, 'pass', 'by DKIM: SPF passes for a domain that does not align');
  // nobody@receiver.test does not exist: the receiver refuses, the forwarder
  // bounces to the SRS address, its own MX sends that on to alice@sender.test.
  const lost = await submit('lost@forwarder.test', 'to nobody');
  const alice = join(lab.dataDir, 'sender', 'mail', 'sender.test', 'alice', 'new');
  for (const deadline = Date.now() + 15_000; ; await new Promise((r) => setTimeout(r, 100))) {
    const files = (() => {
      try {
        return readdirSync(alice);
      } catch {
        return []; // no mail for alice yet
      }
    })();
    const bounce = files.map((f) => readFileSync(join(alice, f), 'utf8')).find((m) => m.includes(lost) && /multipart\/report/.test(m));
    if (bounce) {
      assert.match(bounce, /^Return-Path: <>$/m);
      assert.match(bounce, /Final-Recipient: rfc822; nobody@receiver\.test/);
      assert.match(bounce, /Diagnostic-Code: smtp; 550 5\.1\.1/);
      break;
    }
    assert.ok(Date.now() < deadline, 'the bounce reached alice@sender.test');
  }
});
