// The MX verifies on a thread of its own (services/mta/inbound/verify-thread.ts).
// What the thread concludes must be what verify() concludes in the MX's own
// thread, for every kind of message, after the verdict has crossed between
// threads; a thread that stops fails what it held and the next message gets
// a new one; forget() reaches the thread's DNS cache.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { splitTxt } from '../services/dns/zone-file.ts';
import { LabResolver } from '../services/lib/resolver.ts';
import { createLogger } from '../services/lib/log.ts';
import { verify, type Envelope, type Verdict } from '../services/mta/inbound/verify.ts';
import { VerifyThread } from '../services/mta/inbound/verify-thread.ts';
import { startLab, type TestLab } from './support/lab.ts';

const silent = createLogger('test', { LOG_LEVEL: 'silent' });
const key = readFileSync(new URL('../dns-zone/dkim/sender.test/rsa2048.pem', import.meta.url));

let lab: TestLab;
let thread: VerifyThread;
before(async () => {
  lab = await startLab();
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
