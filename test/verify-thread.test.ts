// The MX verifies on a thread of its own (services/mta/inbound/verify-thread.ts).
// What the thread concludes must be what verify() concludes in the MX's own
// thread, for every kind of message, after the verdict has crossed between
// threads; a thread that stops fails what it held and the next message gets
// a new one; forget() reaches the thread's DNS cache. At the MX, a message
// whose checks never finish is not accepted: 451, nothing stored, recorded.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { splitTxt } from '../services/dns/zone-file.ts';
import { LabResolver } from '../services/lib/resolver.ts';
import { createLogger } from '../services/lib/log.ts';
import { verify, type Envelope, type Verdict } from '../services/mta/inbound/verify.ts';
import { VerifyThread } from '../services/mta/inbound/verify-thread.ts';
import { RawSmtp } from './support/smtp.ts';
import { startLab, type TestLab } from './support/lab.ts';

const silent = createLogger('test', { LOG_LEVEL: 'silent' });
const key = readFileSync(new URL('../dns-zone/dkim/sender.test/rsa2048.pem', import.meta.url));

let lab: TestLab;
let receiver: Awaited<ReturnType<TestLab['start']>>;
let thread: VerifyThread;
before(async () => {
  lab = await startLab();
  receiver = await lab.start('receiver');
  thread = new VerifyThread({ host: '127.0.2.53', port: lab.dnsPort }, 'mx.receiver.test', silent);
});
after(async () => {
  await thread.close();
  await lab.close();
});

const text = (from: string, extra = '') =>
  `From: ${from}\r\nTo: bob@receiver.test\r\nSubject: thread\r\n${extra}Message-ID: <t-${Math.random()}@sender.test>\r\n` +
  `Date: ${new Date().toUTCString()}\r\nMIME-Version: 1.0\r\n\r\nHello,\r\n\r\nthe lab.\r\n`;
const signed = async (message: string) => {
  const { signatures } = await dkimSign(message, { signatureData: [{ signingDomain: 'sender.test', selector: 'rsa2048', privateKey: key }] } as never);
  return signatures + message;
};
const fromSender: Envelope = { clientAddress: '192.0.2.10', helo: 'mta.sender.test', mailFrom: 'alice@sender.test' };
const fromAttacker: Envelope = { clientAddress: '192.0.2.66', helo: 'mta.attacker.test', mailFrom: 'ceo@sender.test' };

// The DNS questions carry times (when asked, how long, whether cached, the
// TTL left): the same questions, in the same order, with the same answers.
const comparable = (verdict: Verdict) => ({
  ...verdict,
  dns: verdict.dns.map(({ name, type, answer, error }) => ({ name, type, answer, error })),
  headers: verdict.headers.replace(/; \w{3}, \d+ \w{3} \d{4} [\d:]+ [+-]\d{4}/g, '; <date>'),
});

test('each kind of message gets the same verdict from the thread as from verify() in this thread', async () => {
  const good = await signed(text('Alice <alice@sender.test>'));
  const cases: [string, string, Envelope][] = [
    ['signed and sent by the sender', good, fromSender],
    ['signed, from the attacker (SPF fails, DKIM aligns)', good, fromAttacker],
    ['body changed after signing', good.replace('the lab.', 'the lab!'), fromSender],
    ['Subject changed after signing', good.replace('Subject: thread', 'Subject: changed'), fromSender],
    ['unsigned spoof of sender.test (p=reject)', text('CEO <ceo@sender.test>'), fromAttacker],
    ['two From fields', await signed(text('Alice <alice@sender.test>', 'From: ceo@attacker.test\r\n')), fromSender],
    ['no From field', text('x').replace(/^From: x\r\n/, ''), fromSender],
    ['null sender, quarantine.test', text('bounce <mailer-daemon@quarantine.test>'), { ...fromAttacker, mailFrom: '' }],
    ['a From domain with no DMARC record', text('a <a@nodmarc.test>'), fromAttacker],
    ['a From domain whose DNS fails', text('a <a@servfail.test>'), fromAttacker],
  ];
  const resolver = new LabResolver({ host: '127.0.2.53', port: lab.dnsPort });
  for (const [what, message, envelope] of cases) {
    const here = await verify(Buffer.from(message), envelope, resolver, 'mx.receiver.test');
    const there = await thread.verify(Buffer.from(message), envelope);
    assert.deepEqual(comparable(there), comparable(here), what);
  }
  // The cases cover what the MX decides on: pass, fail, none, and the author check.
  const results = await Promise.all(cases.map(([, message, envelope]) => thread.verify(Buffer.from(message), envelope)));
  assert.deepEqual(new Set(results.map((v) => v.dmarc.result)), new Set(['pass', 'fail', 'none', 'temperror']));
  assert.ok(results.some((v) => v.author?.problem), 'an unclear author');
});

test('a message that shares its buffer with other bytes is verified on its own bytes', async () => {
  const message = Buffer.from(await signed(text('Alice <alice@sender.test>')));
  const shared = Buffer.concat([Buffer.from('MAIL FROM:<x@y>\r\n'), message, Buffer.from('garbage after the message')]);
  const view = shared.subarray(17, 17 + message.length);
  const verdict = await thread.verify(view, fromSender);
  assert.equal(verdict.dkim[0]?.result, 'pass');
  assert.equal(verdict.dmarc.result, 'pass');
  assert.equal(view.toString(), message.toString(), 'the caller\'s bytes are untouched');
});

test('a thread that stops fails the messages it held; the next message starts a new one', async () => {
  const message = Buffer.from(await signed(text('Alice <alice@sender.test>')));
  const held = Array.from({ length: 20 }, () => thread.verify(message, fromSender));
  await thread.close();
  const outcomes = await Promise.allSettled(held);
  const failed = outcomes.filter((o) => o.status === 'rejected');
  assert.ok(failed.length > 0, 'some were still held');
  for (const o of failed) assert.match(String((o as PromiseRejectedResult).reason), /the verification thread stopped/);
  const next = await thread.verify(message, fromSender);
  assert.equal(next.dmarc.result, 'pass');
});

test('forget() clears the thread\'s cache for a domain, and only then is a changed record seen', async () => {
  const policy = (p: string) => ({ name: '_dmarc.sender.test', type: 'TXT' as const, records: [{ name: '_dmarc.sender.test', type: 'TXT' as const, ttl: 300, data: splitTxt([Buffer.from(`v=DMARC1; p=${p}`)]) }] });
  try {
    lab.dns.zones.setOverride(policy('quarantine'));
    thread.forget('sender.test');
    const spoof = Buffer.from(text('CEO <ceo@sender.test>'));
    assert.equal((await thread.verify(spoof, fromAttacker)).dmarc.published, 'quarantine');
    lab.dns.zones.setOverride(policy('none'));
    assert.equal((await thread.verify(spoof, fromAttacker)).dmarc.published, 'quarantine', 'kept for its TTL of 300 s');
    thread.forget('sender.test');
    assert.equal((await thread.verify(spoof, fromAttacker)).dmarc.published, 'none');
  } finally {
    lab.dns.zones.clearOverrides('_dmarc.sender.test');
    thread.forget('sender.test');
  }
});

test('at the MX, a message held by a thread that stops gets 451 4.3.0, is not stored, and its record says why; the next one passes', async () => {
  const keyName = 'rsa2048._domainkey.sender.test';
  const stored = () => receiver.maildir.list().then((boxes) => boxes.flatMap((b) => b.folders).reduce((n, f) => n + f.messages, 0));
  const before = await stored();
  const send = async (messageId: string) => {
    const message = await signed(text('Alice <alice@sender.test>').replace(/Message-ID: <[^>]+>/, `Message-ID: <${messageId}>`));
    const { smtp } = await RawSmtp.open(receiver.host, receiver.mxPort, '127.0.2.10');
    await smtp.command('EHLO mta.sender.test');
    await smtp.command('MAIL FROM:<alice@sender.test>');
    await smtp.command('RCPT TO:<bob@receiver.test>');
    await smtp.command('DATA');
    smtp.write(`${message}.\r\n`);
    return smtp;
  };
  // The key's answer is held back 2 s: the checks are under way until then.
  lab.dns.zones.setOverride({ name: keyName, fault: { name: keyName, kind: 'delay', delayMs: 2000, types: ['TXT'], source: 'override' } });
  try {
    const asked = lab.dns.recentQueries().filter((q) => q.name === keyName).length;
    const smtp = await send('held@sender.test');
    for (const deadline = Date.now() + 10_000; lab.dns.recentQueries().filter((q) => q.name === keyName).length === asked; ) {
      assert.ok(Date.now() < deadline, 'the MX never asked for the key');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await receiver.verifier.close();
    const reply = await smtp.read();
    assert.equal(reply.code, 451);
    assert.match(reply.text, /^451 4\.3\.0 Local error while checking the message; try again later$/);
    await smtp.command('QUIT');
  } finally {
    lab.dns.zones.clearOverrides(keyName);
  }
  assert.equal(await stored(), before, 'nothing stored');
  const api = async (path: string) => (await fetch(`http://${receiver.host}:${receiver.apiPort}${path}`)).json();
  const [summary] = await api(`/api/sessions?messageId=${encodeURIComponent('<held@sender.test>')}`);
  const { transactions } = await api(`/api/sessions/${summary.id}`);
  assert.deepEqual(transactions[0].decision, { disposition: 'defer', code: 451, enhanced: '4.3.0', reason: 'local error while checking the message: the verification thread stopped (exit code 1)' });
  assert.equal(transactions[0].deliveries.length, 0);

  const next = await send('after@sender.test');
  assert.match((await next.read()).text, /^250 2\.6\.0 Delivered to INBOX: /);
  await next.command('QUIT');
  assert.equal(await stored(), before + 1);
});
