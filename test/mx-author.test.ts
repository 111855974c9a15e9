// The author check before DMARC, over SMTP: a From field that is not exactly
// one field with one mailbox, or that reads more than one way, is refused
// with its own reason (or filed as Junk where the instance file says so),
// never let through as "no DMARC policy". The attacks come from the
// attacker's address with its own envelope sender, as a real one would.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { ATTACKER_HOST, deliver, recorded, SENDER_HOST } from './support/mail.ts';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';

const SENDER = SENDER_HOST;
const ATTACKER = ATTACKER_HOST;

let lab: TestLab;
let receiver: LabMta;
let lenient: LabMta; // ambiguousFrom: junk

before(async () => {
  lab = await startLab();
  receiver = await lab.start('receiver');
  lenient = await lab.start('receiver', (i) => ({ ...i, name: 'lenient', policy: { ...i.policy, ambiguousFrom: 'junk' } }));
});
after(() => lab.close());

let counter = 0;
// A message with the given From fields, exactly as written (none for []).
function message(fromFields: string[], subject: string): { text: string; messageId: string } {
  const messageId = `<author-${++counter}.${Date.now()}@lab.test>`;
  const from = fromFields.map((f) => `From: ${f}\r\n`).join('');
  return { messageId, text: `${from}To: bob@receiver.test\r\nSubject: ${subject}\r\nMessage-ID: ${messageId}\r\nDate: ${new Date().toUTCString()}\r\n\r\n${subject}\r\n` };
}

// From the attacker's host, envelope mallory@attacker.test, unsigned.
async function attack(fromFields: string[], to = receiver) {
  const { text, messageId } = message(fromFields, `author ${fromFields.join(' | ') || '(none)'}`);
  const reply = await deliver(to, ATTACKER, 'mallory@attacker.test', text);
  return { reply, t: await recorded(to, messageId) };
}

describe('the holes of issue 12: refused, each with its reason', () => {
  test('From: ceo@sender.test written twice: 550 5.7.1, two From fields', async () => {
    const { reply, t } = await attack(['ceo@sender.test', 'ceo@sender.test']);
    assert.match(reply.text, /^550 5\.7\.1 Message rejected: the author is unclear: 2 From fields .*RFC 5322 section 3\.6 allows exactly one/);
    assert.equal(t.decision.rule, 'author-reject');
    assert.equal(t.checks.author.fields, 2);
    assert.deepEqual(t.checks.author.mailboxes, ['ceo@sender.test', 'ceo@sender.test']);
    assert.equal(t.checks.dmarc.result, 'none');
    assert.equal(t.checks.dmarc.reason, 'not evaluated: more than one From field (multiple-from-fields)');
    assert.equal(t.deliveries.length, 0);
  });

  test('one From of sender.test and one of attacker.test: 550 5.7.1', async () => {
    const { reply, t } = await attack(['ceo@sender.test', 'mallory@attacker.test']);
    assert.match(reply.text, /^550 5\.7\.1 Message rejected: the author is unclear: 2 From fields/);
    assert.equal(t.decision.rule, 'author-reject');
  });

  test('no From field: 550 5.7.1', async () => {
    const { reply, t } = await attack([]);
    assert.match(reply.text, /^550 5\.7\.1 Message rejected: the author is unclear: no From field/);
    assert.equal(t.checks.author.fields, 0);
    assert.equal(t.checks.dmarc.reason, 'not evaluated: no mailbox with a domain (no-author-domain)');
  });

  test('one From field with mailboxes of two domains: 550 5.7.1', async () => {
    const { reply, t } = await attack(['ceo@sender.test, mallory@attacker.test']);
    assert.match(reply.text, /^550 5\.7\.1 Message rejected: the author is unclear: the From field holds 2 mailboxes \(ceo@sender\.test, mallory@attacker\.test\)/);
    assert.equal(t.checks.dmarc.reason, 'not evaluated: mailboxes of more than one domain (multiple-author-domains)');
  });

  test('one From field, one mailbox: DMARC decides, as before (550 for p=reject)', async () => {
    const { reply, t } = await attack(['ceo@sender.test']);
    assert.match(reply.text, /^550 5\.7\.1 Message rejected: DMARC fail for sender\.test \(p=reject\)/);
    assert.equal(t.decision.rule, 'dmarc-reject');
    assert.deepEqual(t.checks.author, { fields: 1, mailboxes: ['ceo@sender.test'], domain: 'sender.test' });
  });
});

describe('From fields that read more than one way (the audit)', () => {
  // Each of these got past p=reject before: mailauth either skipped DMARC or
  // evaluated a domain nobody sees.
  const cases: [string, string, RegExp][] = [
    ['two @ in one address', 'ceo@sender.test@attacker.test', /is not a mailbox list in RFC 5322 syntax/],
    ['an encoded-word as the domain', 'ceo@=?utf-8?q?sender.test?=', /has no host name after the @/],
    ['white space inside the domain (obsolete syntax)', 'ceo@sender .test', /is not a mailbox list in RFC 5322 syntax/],
    ['an empty group', 'undisclosed-recipients:;', /holds no mailbox/],
    ['an encoded-word instead of an address', '=?utf-8?q?ceo=40sender.test?=', /is not a mailbox list in RFC 5322 syntax/],
    ['a domain literal', 'ceo@[192.0.2.10]', /a domain literal/],
    ['a quoted display name before an address without <>', '"mallory@attacker.test" ceo@sender.test', /is not a mailbox list in RFC 5322 syntax/],
    ['a list with an empty member', 'ceo@sender.test,', /ends with a comma/],
  ];
  for (const [what, from, why] of cases) {
    test(`${what}: From: ${from}: 550 5.7.1, author unclear`, async () => {
      const { reply, t } = await attack([from]);
      assert.match(reply.text, /^550 5\.7\.1 Message rejected: the author is unclear: /);
      assert.match(t.decision.reason, why);
      assert.equal(t.decision.rule, 'author-reject');
    });
  }

  // What stays clear: comments, a group of one (RFC 6854), an encoded display name.
  const clear: [string, string][] = [
    ['a comment', 'alice@sender.test (Alice at work)'],
    ['a group of one mailbox', 'Team: alice@sender.test;'],
    ['an encoded-word display name', '=?utf-8?q?Alice_M=C3=BCller?= <alice@sender.test>'],
    ['capitals in the domain', 'Alice <alice@SENDER.TEST>'],
  ];
  for (const [what, from] of clear) {
    test(`${what} is one clear author: From: ${from}: DMARC decides (INBOX for a signed message)`, async () => {
      const { text, messageId } = message([from], `clear ${what}`);
      const key = readFileSync(new URL('../dns-zone/dkim/sender.test/rsa2048.pem', import.meta.url));
      const signing = { signatureData: [{ signingDomain: 'sender.test', selector: 'rsa2048', privateKey: key }] };
      const signed = (await dkimSign(text, signing as unknown as Parameters<typeof dkimSign>[1])).signatures + text;
      const reply = await deliver(receiver, SENDER, 'alice@sender.test', signed);
      assert.match(reply.text, /^250 2\.6\.0 Delivered to INBOX/);
      const t = await recorded(receiver, messageId);
      assert.equal(t.checks.author.domain, 'sender.test');
      assert.equal(t.checks.author.problem, undefined);
      assert.equal(t.decision.rule, 'dmarc-pass');
    });
  }
});

test('a long reason comes as a multiline reply: every line at most 512 octets, each with its codes (RFC 5321 section 4.5.3.1.5, RFC 2034)', async () => {
  const long = (n: number) => `"${'Chief Executive Officer '.repeat(4)}${n}" <ceo${n}@sender.test>`;
  const { reply, t } = await attack([1, 2, 3, 4, 5, 6].map(long));
  const lines = reply.text.split('\n');
  assert.ok(lines.length > 1, reply.text);
  lines.forEach((line, i) => {
    assert.ok(Buffer.byteLength(line) + 2 <= 512, `line ${i + 1} is ${Buffer.byteLength(line) + 2} octets`);
    assert.match(line, i < lines.length - 1 ? /^550-5\.7\.1 / : /^550 5\.7\.1 /);
  });
  assert.equal(lines.map((l) => l.slice(10)).join(' '), `Message rejected: ${t.decision.reason}`, 'nothing lost');
  assert.match(t.decision.reason, /6 From fields \("\\"Chief Executive Officer Chief .{20,60}\.\.\."/, 'each field quoted in part');
});

test('a Unicode From domain is one clear author, and DMARC is asked about its A-label form', async () => {
  const { reply, t } = await attack(['ceo@bücher.test']);
  assert.match(reply.text, /^250 2\.6\.0 Delivered to INBOX/, 'no such domain in the lab: no DMARC record, SPF passes for attacker.test');
  assert.equal(t.checks.author.domain, 'xn--bcher-kva.test');
  assert.equal(t.checks.author.problem, undefined);
  assert.equal(t.checks.dmarc.fromDomain, 'xn--bcher-kva.test');
  assert.ok(t.dns.some((q: { name: string }) => q.name === '_dmarc.xn--bcher-kva.test'), 'the DMARC question is in A-labels');
  assert.equal(t.decision.rule, 'no-dmarc');
});

describe('ambiguousFrom: junk', () => {
  test('two From fields go to Junk, with the reason', async () => {
    const { reply, t } = await attack(['ceo@sender.test', 'ceo@sender.test'], lenient);
    assert.match(reply.text, /^250 2\.6\.0 Delivered to Junk/);
    assert.equal(t.decision.rule, 'author-junk');
    assert.match(t.decision.reason, /local policy \(ambiguousFrom\) files such messages as Junk/);
  });

  test('a refusal DMARC asks for still stands: two mailboxes of sender.test, unsigned, from the attacker', async () => {
    const { reply, t } = await attack(['ceo@sender.test, cfo@sender.test'], lenient);
    assert.match(reply.text, /^550 5\.7\.1 Message rejected: DMARC fail for sender\.test \(p=reject\).*also, the author is unclear: the From field holds 2 mailboxes/);
    assert.equal(t.decision.rule, 'dmarc-reject');
  });
});
