// Every honest domain's lesson, end to end: a message signed by an
// independent signer (dkimpy's dkimsign) or by mailauth, or not at all, sent
// from the sender's or the attacker's address through the lab DNS, gets the
// verdict and the disposition its domain's records call for.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { ATTACKER_HOST, deliver, SENDER_HOST } from './support/mail.ts';
import { startLab, type TestLab } from './support/lab.ts';
import { hasTool } from './support/tools.ts';

const keys = new URL('../dns-zone/dkim/', import.meta.url).pathname;
const SENDER = SENDER_HOST;
const ATTACKER = ATTACKER_HOST;

let lab: TestLab;
let receiver: Awaited<ReturnType<TestLab['start']>>;
let scratch: string;

before(async () => {
  lab = await startLab();
  receiver = await lab.start('receiver');
  scratch = mkdtempSync(join(tmpdir(), 'dkimpy-'));
});
after(async () => {
  await lab.close();
  rmSync(scratch, { recursive: true, force: true });
});

type Signer = 'none' | 'dkimpy-rsa' | 'dkimpy-ed25519' | 'mailauth' | 'mailauth-both';

let counter = 0;
function message(from: string, subject: string): string {
  counter++;
  return (
    `From: ${from}\r\nTo: Bob <bob@receiver.test>\r\nSubject: ${subject}\r\n` +
    `Message-ID: <policy-${counter}.${Date.now()}@lab.test>\r\nDate: ${new Date().toUTCString()}\r\n\r\n` +
    `A message for the lesson "${subject}".\r\n`
  );
}

// dkimpy reads an RSA key as PEM, an Ed25519 key as its 32 raw bytes in base64.
function dkimpy(text: string, domain: string, selector: string, algorithm: 'rsa-sha256' | 'ed25519-sha256'): string {
  let keyFile = join(keys, domain, `${selector}.pem`);
  if (algorithm === 'ed25519-sha256') {
    const jwk = createPrivateKey(readFileSync(keyFile)).export({ format: 'jwk' });
    keyFile = join(scratch, `${domain}.${selector}.key`);
    writeFileSync(keyFile, Buffer.from(jwk.d!, 'base64url').toString('base64'));
  }
  const signed = execFileSync('/usr/bin/python3', ['/usr/bin/dkimsign', '--signalg', algorithm, selector, domain, keyFile], { input: text }).toString('latin1');
  return signed.replace(/\r?\n/g, '\r\n');
}

async function sign(text: string, domain: string, signer: Signer): Promise<string> {
  const key = (selector: string) => ({ signingDomain: domain, selector, privateKey: readFileSync(join(keys, domain, `${selector}.pem`)) });
  // mailauth's types want the single-signature form; signatureData is the documented list form.
  const several = (list: ReturnType<typeof key>[]) => ({ signatureData: list }) as unknown as Parameters<typeof dkimSign>[1];
  switch (signer) {
    case 'none':
      return text;
    case 'dkimpy-rsa':
      return dkimpy(text, domain, 'rsa2048', 'rsa-sha256');
    case 'dkimpy-ed25519':
      return dkimpy(text, domain, 'ed25519', 'ed25519-sha256');
    case 'mailauth':
      return (await dkimSign(text, several([key('rsa2048')]))).signatures + text;
    case 'mailauth-both':
      return (await dkimSign(text, several([key('rsa2048'), key('ed25519')]))).signatures + text;
  }
}

interface Lesson {
  lesson: string;
  from: string;
  mailFrom: string;
  client: { address: string; helo: string };
  signer: Signer;
  signingDomain?: string;
  reply: RegExp;
  checks?: { spf?: string; dkim?: string[]; dmarc?: string; policy?: string };
}

const lessons: Lesson[] = [
  { lesson: 'sender.test signed by dkimpy (RSA) from its own MTA: all pass, INBOX', from: 'alice@sender.test', mailFrom: 'alice@sender.test', client: SENDER, signer: 'dkimpy-rsa', reply: /^250 2\.6\.0 Delivered to INBOX/, checks: { spf: 'pass', dkim: ['pass'], dmarc: 'pass' } },
  { lesson: 'sender.test signed by dkimpy (Ed25519), relayed by another host: DKIM alone carries DMARC', from: 'alice@sender.test', mailFrom: 'bounce@attacker.test', client: ATTACKER, signer: 'dkimpy-ed25519', reply: /^250 2\.6\.0 Delivered to INBOX/, checks: { spf: 'pass', dkim: ['pass'], dmarc: 'pass' } },
  { lesson: 'sender.test signed by mailauth with RSA and Ed25519: two passing signatures', from: 'alice@sender.test', mailFrom: 'alice@sender.test', client: SENDER, signer: 'mailauth-both', reply: /^250 2\.6\.0 Delivered to INBOX/, checks: { dkim: ['pass', 'pass'], dmarc: 'pass' } },
  { lesson: 'a spoof of sender.test (p=reject): 550', from: 'ceo@sender.test', mailFrom: 'ceo@sender.test', client: ATTACKER, signer: 'none', reply: /^550 5\.7\.1 Message rejected: DMARC fail for sender\.test \(p=reject\)/, checks: { spf: 'fail', dmarc: 'fail', policy: 'reject' } },
  { lesson: 'a spoof of quarantine.test: Junk', from: 'alice@quarantine.test', mailFrom: 'alice@quarantine.test', client: ATTACKER, signer: 'none', reply: /^250 2\.6\.0 Delivered to Junk/, checks: { spf: 'softfail', dmarc: 'fail', policy: 'quarantine' } },
  { lesson: 'quarantine.test signed by dkimpy from its MTA: INBOX', from: 'alice@quarantine.test', mailFrom: 'alice@quarantine.test', client: SENDER, signer: 'dkimpy-rsa', reply: /^250 2\.6\.0 Delivered to INBOX/, checks: { dmarc: 'pass' } },
  { lesson: 'a spoof of monitor.test (p=none): delivered, DMARC fail reported only', from: 'alice@monitor.test', mailFrom: 'alice@monitor.test', client: ATTACKER, signer: 'none', reply: /^250 2\.6\.0 Delivered to INBOX/, checks: { dmarc: 'fail', policy: 'none' } },
  { lesson: 'a spoof of nodmarc.test: SPF fail, no DMARC, local policy files it as Junk', from: 'alice@nodmarc.test', mailFrom: 'alice@nodmarc.test', client: ATTACKER, signer: 'none', reply: /^250 2\.6\.0 Delivered to Junk/, checks: { spf: 'fail', dmarc: 'none' } },
  { lesson: 'strict.test: bounces from a subdomain pass SPF but do not align strictly: 550', from: 'alice@strict.test', mailFrom: 'bounces@bounces.strict.test', client: SENDER, signer: 'none', reply: /^550 5\.7\.1 .*DMARC fail for strict\.test/, checks: { spf: 'pass', dmarc: 'fail' } },
  { lesson: 'strict.test signed by mailauth with d=strict.test: aligned strictly, INBOX', from: 'alice@strict.test', mailFrom: 'bounces@bounces.strict.test', client: SENDER, signer: 'mailauth', reply: /^250 2\.6\.0 Delivered to INBOX/, checks: { dkim: ['pass'], dmarc: 'pass' } },
  { lesson: 'a spoof of news.subdomains.test: sp=reject applies to the subdomain: 550', from: 'alice@news.subdomains.test', mailFrom: 'alice@news.subdomains.test', client: ATTACKER, signer: 'none', reply: /^550 5\.7\.1 .*DMARC fail for news\.subdomains\.test \(p=reject\)/, checks: { dmarc: 'fail', policy: 'reject' } },
  { lesson: 'a spoof of subdomains.test itself: p=none, delivered', from: 'alice@subdomains.test', mailFrom: 'alice@subdomains.test', client: ATTACKER, signer: 'none', reply: /^250 2\.6\.0 Delivered to INBOX/, checks: { dmarc: 'fail', policy: 'none' } },
  { lesson: 'a spoof of testing.test (p=reject; t=y): applied as quarantine, Junk', from: 'alice@testing.test', mailFrom: 'alice@testing.test', client: ATTACKER, signer: 'none', reply: /^250 2\.6\.0 Delivered to Junk/, checks: { dmarc: 'fail', policy: 'quarantine' } },
  { lesson: 'includes.test unsigned from its MTA: SPF passes through the include chain', from: 'alice@includes.test', mailFrom: 'alice@includes.test', client: SENDER, signer: 'none', reply: /^250 2\.6\.0 Delivered to INBOX/, checks: { spf: 'pass', dmarc: 'pass' } },
  { lesson: 'toomanylookups.test unsigned: SPF permerror, nothing aligned passes: 550', from: 'alice@toomanylookups.test', mailFrom: 'alice@toomanylookups.test', client: SENDER, signer: 'none', reply: /^550 5\.7\.1 /, checks: { spf: 'permerror', dmarc: 'fail' } },
  { lesson: 'toomanylookups.test signed by dkimpy: DKIM rescues it', from: 'alice@toomanylookups.test', mailFrom: 'alice@toomanylookups.test', client: SENDER, signer: 'dkimpy-rsa', reply: /^250 2\.6\.0 Delivered to INBOX/, checks: { spf: 'permerror', dkim: ['pass'], dmarc: 'pass' } },
  { lesson: 'revoked.test signed with its revoked key, sent from elsewhere: 550', from: 'alice@revoked.test', mailFrom: 'bounce@attacker.test', client: ATTACKER, signer: 'dkimpy-rsa', reply: /^550 5\.7\.1 /, checks: { dmarc: 'fail' } },
  { lesson: 'nokey.test signed with an unpublished key, sent from elsewhere: 550', from: 'alice@nokey.test', mailFrom: 'bounce@attacker.test', client: ATTACKER, signer: 'mailauth', reply: /^550 5\.7\.1 /, checks: { dmarc: 'fail' } },
  { lesson: 'servfail.test signed from its MTA: the DMARC lookup fails, but SPF and DKIM pass for servfail.test itself: INBOX', from: 'alice@servfail.test', mailFrom: 'alice@servfail.test', client: SENDER, signer: 'dkimpy-rsa', reply: /^250 2\.6\.0 Delivered to INBOX/, checks: { spf: 'pass', dkim: ['pass'], dmarc: 'temperror' } },
  { lesson: 'a spoof of servfail.test: the DMARC lookup fails and nothing passed, so 451 and the sender retries', from: 'ceo@servfail.test', mailFrom: 'mallory@attacker.test', client: ATTACKER, signer: 'none', reply: /^451 4\.7\.0 Temporary failure: DMARC check for servfail\.test hit a temporary DNS failure/, checks: { spf: 'pass', dmarc: 'temperror' } },
  { lesson: 'timeout.test: the SPF lookup is never answered, DKIM carries DMARC', from: 'alice@timeout.test', mailFrom: 'alice@timeout.test', client: SENDER, signer: 'dkimpy-rsa', reply: /^250 2\.6\.0 Delivered to INBOX/, checks: { spf: 'temperror', dkim: ['pass'], dmarc: 'pass' } },
  { lesson: 'slow.test: every answer 1.5 s late, still a pass', from: 'alice@slow.test', mailFrom: 'alice@slow.test', client: SENDER, signer: 'mailauth', reply: /^250 2\.6\.0 Delivered to INBOX/, checks: { spf: 'pass', dkim: ['pass'], dmarc: 'pass' } },
];

for (const l of lessons) {
  test(l.lesson, async (t) => {
    if (l.signer.startsWith('dkimpy') && !hasTool('/usr/bin/dkimsign')) {
      if (process.env.CI === 'true') throw new Error('dkimsign not installed (apt-get install python3-dkim)');
      return t.skip('dkimsign not installed (apt-get install python3-dkim)');
    }
    const domain = l.from.split('@')[1];
    const text = message(l.from, l.lesson);
    const reply = await deliver(receiver, l.client, l.mailFrom, await sign(text, domain, l.signer));
    assert.match(reply.text, l.reply);
    const messageId = /^Message-ID: (.*)$/m.exec(text)![1].trim();
    const [summary] = await (await fetch(`http://${receiver.host}:${receiver.apiPort}/api/sessions?messageId=${encodeURIComponent(messageId)}`)).json();
    const session = await (await fetch(`http://${receiver.host}:${receiver.apiPort}/api/sessions/${summary.id}`)).json();
    const { checks, decision } = session.transactions[0];
    if (l.checks?.spf) assert.equal(checks.spf.result, l.checks.spf, `spf: ${checks.spf.reason}`);
    if (l.checks?.dkim) assert.deepEqual(checks.dkim.map((d: { result: string }) => d.result), l.checks.dkim);
    if (l.checks?.dmarc) assert.equal(checks.dmarc.result, l.checks.dmarc, `dmarc: ${checks.dmarc.reason}`);
    if (l.checks?.policy) assert.equal(checks.dmarc.policy, l.checks.policy);
    assert.ok(decision.reason.length > 10, 'the decision says why');
  });
}
