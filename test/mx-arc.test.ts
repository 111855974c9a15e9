// Forwarding through a mailing list breaks DKIM and SPF alignment, so DMARC
// fails; an ARC seal from a sealer the receiver trusts turns that around,
// and the session record says so. Without that trust the same message is
// refused, and so is a sealed copy that someone other than the sealer
// delivers (ARC replay).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { authenticate, sealMessage } from 'mailauth';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { LabResolver } from '../services/lib/resolver.ts';
import { RawSmtp } from './support/smtp.ts';
import { startLab, type TestLab } from './support/lab.ts';

const key = (domain: string) => readFileSync(new URL(`../dns-zone/dkim/${domain}/rsa2048.pem`, import.meta.url));

let lab: TestLab;
let trusting: Awaited<ReturnType<TestLab['start']>>;
let untrusting: Awaited<ReturnType<TestLab['start']>>;

before(async () => {
  lab = await startLab();
  trusting = await lab.start('receiver');
  untrusting = await lab.start('receiver', (i) => ({ ...i, name: 'untrusting', policy: { ...i.policy, trustedArcSealers: [] } }));
});
after(() => lab.close());

// What list.forwarder.test does: verify what it got, add a subject tag and
// a footer (breaking the author's DKIM signature), seal what it saw.
// `spoofed`: what reached the list was a spoof from the attacker's host, and
// the seal says dmarc=fail.
let counter = 0;
async function throughTheList(spoofed = false): Promise<{ message: string; messageId: string }> {
  const messageId = `<arc-${++counter}.${Date.now()}@sender.test>`;
  const original =
    `From: Alice <alice@sender.test>\r\nTo: class@forwarder.test\r\nSubject: homework\r\nMessage-ID: ${messageId}\r\n` +
    `Date: ${new Date().toUTCString()}\r\n\r\nPlease read chapter 3.\r\n`;
  const signing = { signatureData: [{ signingDomain: 'sender.test', selector: 'rsa2048', privateKey: key('sender.test') }] };
  const signed = spoofed ? original : (await dkimSign(original, signing as unknown as Parameters<typeof dkimSign>[1])).signatures + original;
  const resolver = new LabResolver({ host: '127.0.2.53', port: lab.dnsPort });
  const seen = await authenticate(signed, {
    ip: spoofed ? '192.0.2.66' : '192.0.2.10',
    helo: 'mta.sender.test',
    sender: 'alice@sender.test',
    mta: 'list.forwarder.test',
    resolver: ((name: string, type: string) => resolver.resolve(name, type)) as never,
    disableBimi: true,
  });
  assert.equal(seen.dmarc && seen.dmarc.status.result, spoofed ? 'fail' : 'pass', 'what the list saw');
  const arc = seen.arc as { authResults: unknown; status: { result: string } };
  const changed = signed.replace('Subject: homework', 'Subject: [class] homework').replace('chapter 3.\r\n', 'chapter 3.\r\n-- \r\nclass mailing list\r\n');
  const seal = await sealMessage(changed, {
    signingDomain: 'forwarder.test',
    selector: 'rsa2048',
    privateKey: key('forwarder.test'),
    authResults: arc.authResults,
    cv: arc.status.result,
  } as never);
  return { message: seal.toString() + changed, messageId };
}

// By default as the list delivers: from list.forwarder.test with its own envelope sender.
async function deliver(to: Awaited<ReturnType<TestLab['start']>>, message: string, from = { client: '127.0.2.30', helo: 'list.forwarder.test', mailFrom: 'class-bounces@forwarder.test' }) {
  const { smtp } = await RawSmtp.open(to.host, to.mxPort, from.client);
  await smtp.command(`EHLO ${from.helo}`);
  await smtp.command(`MAIL FROM:<${from.mailFrom}>`);
  await smtp.command('RCPT TO:<bob@receiver.test>');
  await smtp.command('DATA');
  smtp.write(message + '.\r\n');
  const reply = await smtp.read();
  await smtp.command('QUIT');
  return reply;
}

async function transaction(to: Awaited<ReturnType<TestLab['start']>>, messageId: string) {
  const base = `http://${to.host}:${to.apiPort}/api/sessions`;
  const [summary] = await (await fetch(`${base}?messageId=${encodeURIComponent(messageId)}`)).json();
  return (await (await fetch(`${base}/${summary.id}`)).json()).transactions[0];
}

test('a receiver that trusts forwarder.test accepts the list message on its ARC seal, and records why', async () => {
  const { message, messageId } = await throughTheList();
  const reply = await deliver(trusting, message);
  assert.match(reply.text, /^250 2\.6\.0 Delivered to INBOX/);
  const t = await transaction(trusting, messageId);
  assert.equal(t.checks.dmarc.result, 'fail', 'DMARC itself fails: the footer broke DKIM, SPF is the list\'s');
  assert.equal(t.checks.dkim[0].result, 'neutral');
  assert.equal(t.checks.dkim[0].reason, 'body hash did not verify');
  assert.equal(t.checks.arc.result, 'pass');
  assert.equal(t.checks.arc.sealer, 'forwarder.test');
  assert.equal(t.checks.arc.sealerSaw.dmarc, 'pass');
  assert.match(t.decision.arcOverride, /forwarder\.test is a trusted ARC sealer/);
  assert.match(t.decision.reason, /DMARC fail for sender\.test \(p=reject\).*accepted anyway/);
  assert.equal(t.decision.rule, 'arc-override');
  assert.deepEqual(t.checks.arc.delivery, { bySealer: true, reason: "SPF passed for forwarder.test, inside the sealer's domain forwarder.test: the client 192.0.2.30 speaks for it" });
});

test('a receiver that trusts no sealer refuses the same message', async () => {
  const { message, messageId } = await throughTheList();
  const reply = await deliver(untrusting, message);
  assert.match(reply.text, /^550 5\.7\.1 Message rejected: DMARC fail for sender\.test/);
  const t = await transaction(untrusting, messageId);
  assert.equal(t.checks.arc.result, 'pass');
  assert.equal(t.decision.arcOverride, undefined);
  assert.equal(t.decision.rule, 'dmarc-reject');
  assert.equal(t.decision.arcDeclined, 'forwarder.test sealed it, but is not a trusted ARC sealer here (policy.trustedArcSealers)');
});

test('ARC replay: the attacker re-sends a list copy, unchanged, from its own host: 550, the sealer did not deliver it', async () => {
  const { message, messageId } = await throughTheList();
  assert.match((await deliver(trusting, message)).text, /^250 2\.6\.0 Delivered to INBOX/, 'the list itself delivers it');
  // Byte for byte the same copy, Message-ID included: its session is the one from 192.0.2.66.
  const reply = await deliver(trusting, message, { client: '127.0.2.66', helo: 'mta.attacker.test', mailFrom: 'mallory@attacker.test' });
  assert.match(reply.text, /^550 5\.7\.1 Message rejected: DMARC fail for sender\.test \(p=reject\).*ARC did not help: forwarder\.test is trusted and saw dmarc=pass, but it did not deliver this copy/);
  const sessions = await (await fetch(`http://${trusting.host}:${trusting.apiPort}/api/sessions?messageId=${encodeURIComponent(messageId)}`)).json();
  const replay = sessions.find((s: { client: string }) => s.client === '192.0.2.66');
  const t = (await (await fetch(`http://${trusting.host}:${trusting.apiPort}/api/sessions/${replay.id}`)).json()).transactions[0];
  assert.equal(t.checks.arc.result, 'pass', 'the chain itself still validates');
  assert.equal(t.decision.rule, 'dmarc-reject');
  assert.equal(t.decision.arcOverride, undefined);
  assert.equal(t.checks.arc.delivery.bySealer, false);
  assert.match(t.checks.arc.delivery.reason, /the client 192\.0\.2\.66 is not forwarder\.test's: its reverse name is mta\.attacker\.test, SPF pass for attacker\.test/);
});

test("ARC replay with the list's envelope sender forged: SPF fails for forwarder.test, the client is mta.attacker.test: 550", async () => {
  const { message, messageId } = await throughTheList();
  const reply = await deliver(trusting, message, { client: '127.0.2.66', helo: 'mta.attacker.test', mailFrom: 'class-bounces@forwarder.test' });
  assert.match(reply.text, /^550 5\.7\.1 /);
  const t = await transaction(trusting, messageId);
  assert.equal(t.checks.spf.result, 'fail');
  assert.match(t.decision.arcDeclined, /did not deliver this copy: the client 192\.0\.2\.66 is not forwarder\.test's: its reverse name is mta\.attacker\.test, SPF fail for forwarder\.test/);
});

test("the list's own host with another envelope sender: its forward-confirmed reverse name is in forwarder.test, accepted", async () => {
  const { message, messageId } = await throughTheList();
  const reply = await deliver(trusting, message, { client: '127.0.2.30', helo: 'list.forwarder.test', mailFrom: 'alice@sender.test' });
  assert.match(reply.text, /^250 2\.6\.0 Delivered to INBOX/);
  const t = await transaction(trusting, messageId);
  assert.equal(t.checks.spf.result, 'fail', 'sender.test does not authorize the list');
  assert.equal(t.decision.rule, 'arc-override');
  assert.equal(t.checks.arc.delivery.reason, "the client 192.0.2.30 is list.forwarder.test (forward-confirmed reverse DNS), inside the sealer's domain forwarder.test");
});

test('a trusted sealer that saw dmarc=fail vouches for nothing: 550', async () => {
  const { message, messageId } = await throughTheList(true);
  const reply = await deliver(trusting, message);
  assert.match(reply.text, /^550 5\.7\.1 /);
  const t = await transaction(trusting, messageId);
  assert.equal(t.checks.arc.result, 'pass');
  assert.equal(t.decision.arcDeclined, 'forwarder.test is trusted, but it saw dmarc=fail itself');
});
