// Forwarding through a mailing list breaks DKIM and SPF alignment, so DMARC
// fails; an ARC seal from a sealer the receiver trusts turns that around,
// and the session record says so. Without that trust the same message is
// refused.
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
async function throughTheList(): Promise<{ message: string; messageId: string }> {
  const messageId = `<arc-${Date.now()}@sender.test>`;
  const original =
    `From: Alice <alice@sender.test>\r\nTo: class@forwarder.test\r\nSubject: homework\r\nMessage-ID: ${messageId}\r\n` +
    `Date: ${new Date().toUTCString()}\r\n\r\nPlease read chapter 3.\r\n`;
  const signing = { signatureData: [{ signingDomain: 'sender.test', selector: 'rsa2048', privateKey: key('sender.test') }] };
  const signed = (await dkimSign(original, signing as unknown as Parameters<typeof dkimSign>[1])).signatures + original;
  const resolver = new LabResolver({ host: '127.0.2.53', port: lab.dnsPort });
  const seen = await authenticate(signed, {
    ip: '192.0.2.10',
    helo: 'mta.sender.test',
    sender: 'alice@sender.test',
    mta: 'list.forwarder.test',
    resolver: ((name: string, type: string) => resolver.resolve(name, type)) as never,
    disableBimi: true,
  });
  assert.equal(seen.dmarc && seen.dmarc.status.result, 'pass', 'the list saw a good message');
  assert.equal(seen.dkim.results[0].status.result, 'pass');
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

async function deliver(to: Awaited<ReturnType<TestLab['start']>>, message: string) {
  const { smtp } = await RawSmtp.open(to.host, to.mxPort, '127.0.2.30');
  await smtp.command('EHLO list.forwarder.test');
  await smtp.command('MAIL FROM:<class-bounces@forwarder.test>');
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
});

test('a receiver that trusts no sealer refuses the same message', async () => {
  const { message, messageId } = await throughTheList();
  const reply = await deliver(untrusting, message);
  assert.match(reply.text, /^550 5\.7\.1 Message rejected: DMARC fail for sender\.test/);
  const t = await transaction(untrusting, messageId);
  assert.equal(t.checks.arc.result, 'pass');
  assert.equal(t.decision.arcOverride, undefined);
});
