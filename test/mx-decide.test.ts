// The decision paths that the lab's domains alone do not reach, over SMTP:
// temporary DNS failures end in 451 with the code their RFC names, and only
// when the failed lookup could have changed the outcome; RFC 8301's weak
// signatures are not valid; the null sender is checked on its HELO name.
// The lab DNS serves a copy of the zones with a few additions (below).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { ATTACKER_HOST, deliver, recorded, SENDER_HOST } from './support/mail.ts';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';
import { hasTool } from './support/tools.ts';

const keys = new URL('../dns-zone/dkim/', import.meta.url).pathname;
const SENDER = SENDER_HOST;
const ATTACKER = ATTACKER_HOST;

// A 512-bit key, published as weak._domainkey.sender.test (RFC 8301 section 3.2).
const weak = generateKeyPairSync('rsa', { modulusLength: 512 });
const weakRecord = `v=DKIM1; k=rsa; p=${weak.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`;

let zones: string;
let lab: TestLab;
let receiver: LabMta;
let delivering: LabMta; // spfFailWithoutDmarc: inbox
let refusing: LabMta; // spfFailWithoutDmarc: reject

before(async () => {
  zones = mkdtempSync(join(tmpdir(), 'decide-zones-'));
  cpSync(new URL('../dns-zone/', import.meta.url).pathname, zones, { recursive: true });
  appendFileSync(
    join(zones, 'sender.test.zone'),
    [
      `weak._domainkey TXT "${weakRecord}"`,
      '; a selector whose key lookup fails: DKIM temperror for d=sender.test',
      ';@fault gone._domainkey servfail',
      'gone._domainkey TXT "v=DKIM1; p=unused"',
      '',
    ].join('\n'),
  );
  // attacker.test's own key fails too: a temperror that could not align with sender.test.
  appendFileSync(join(zones, 'attacker.test.zone'), ';@fault gone._domainkey servfail\ngone._domainkey TXT "v=DKIM1; p=unused"\n');
  // nodmarc.test's SPF record cannot be read: SPF temperror without DMARC.
  appendFileSync(join(zones, 'nodmarc.test.zone'), ';@fault @ servfail TXT\n');
  lab = await startLab(zones);
  receiver = await lab.start('receiver');
  delivering = await lab.start('receiver', (i) => ({ ...i, name: 'delivering', policy: { ...i.policy, spfFailWithoutDmarc: 'inbox' } }));
  refusing = await lab.start('receiver', (i) => ({ ...i, name: 'refusing', policy: { ...i.policy, spfFailWithoutDmarc: 'reject' } }));
});
after(async () => {
  await lab.close();
  rmSync(zones, { recursive: true, force: true });
});

let counter = 0;
function message(from: string, subject: string): { text: string; messageId: string } {
  const messageId = `<decide-${++counter}.${Date.now()}@lab.test>`;
  return { messageId, text: `From: ${from}\r\nTo: bob@receiver.test\r\nSubject: ${subject}\r\nMessage-ID: ${messageId}\r\nDate: ${new Date().toUTCString()}\r\n\r\n${subject}\r\n` };
}

interface Signature {
  domain: string;
  selector: string;
  key?: string; // the lab key of this domain's rsa2048 selector unless given (PEM)
  algorithm?: string;
}

async function sign(text: string, signatures: Signature[]): Promise<string> {
  if (!signatures.length) return text;
  const signatureData = signatures.map((s) => ({ signingDomain: s.domain, selector: s.selector, privateKey: s.key ?? readFileSync(join(keys, s.domain, 'rsa2048.pem')), algorithm: s.algorithm }));
  return (await dkimSign(text, { signatureData } as unknown as Parameters<typeof dkimSign>[1])).signatures + text;
}

async function run(options: { to?: LabMta; client: { address: string; helo: string }; mailFrom: string; from: string; sign?: Signature[] }) {
  const to = options.to ?? receiver;
  const { text, messageId } = message(options.from, `decide ${++counter}`);
  const reply = await deliver(to, options.client, options.mailFrom, await sign(text, options.sign ?? []));
  return { reply, t: await recorded(to, messageId) };
}

describe('temporary failures never become permanent refusals', () => {
  test('an unsigned timeout.test message from its own authorised address: SPF temperror, 451 4.4.3 (not 550)', async () => {
    const { reply, t } = await run({ client: SENDER, mailFrom: 'alice@timeout.test', from: 'alice@timeout.test' });
    assert.match(reply.text, /^451 4\.4\.3 Temporary failure: DMARC fail for timeout\.test \(p=reject\).*but the SPF check of timeout\.test hit a temporary DNS failure/);
    assert.equal(t.checks.spf.result, 'temperror');
    assert.equal(t.checks.dmarc.result, 'fail');
    assert.equal(t.decision.rule, 'spf-temperror');
  });

  test('an SPF temperror for a domain that could not align changes nothing: 550', async () => {
    const { reply, t } = await run({ client: SENDER, mailFrom: 'alice@timeout.test', from: 'ceo@sender.test' });
    assert.match(reply.text, /^550 5\.7\.1 Message rejected: DMARC fail for sender\.test/);
    assert.equal(t.checks.spf.result, 'temperror');
    assert.equal(t.decision.rule, 'dmarc-reject');
  });

  test('a DKIM key lookup that fails for an aligned signature: 451 4.7.5', async () => {
    const { reply, t } = await run({ client: ATTACKER, mailFrom: 'mallory@attacker.test', from: 'alice@sender.test', sign: [{ domain: 'sender.test', selector: 'gone' }] });
    assert.match(reply.text, /^451 4\.7\.5 Temporary failure: DMARC fail for sender\.test \(p=reject\).*the key of the DKIM signature d=sender\.test s=gone could not be read/);
    assert.equal(t.checks.dkim[0].result, 'temperror');
    assert.equal(t.decision.rule, 'dkim-temperror');
  });

  test('a DKIM key lookup that fails for a signature of another domain changes nothing: 550', async () => {
    const { reply, t } = await run({ client: ATTACKER, mailFrom: 'mallory@attacker.test', from: 'ceo@sender.test', sign: [{ domain: 'attacker.test', selector: 'gone' }] });
    assert.match(reply.text, /^550 5\.7\.1 /);
    assert.equal(t.checks.dkim[0].result, 'temperror');
    assert.equal(t.decision.rule, 'dmarc-reject');
  });

  test('no DMARC record and an SPF temperror, where a fail would be Junk: 451 4.4.3', async () => {
    const { reply, t } = await run({ client: ATTACKER, mailFrom: 'alice@nodmarc.test', from: 'alice@nodmarc.test' });
    assert.match(reply.text, /^451 4\.4\.3 Temporary failure: no DMARC policy for nodmarc\.test/);
    assert.equal(t.checks.spf.result, 'temperror');
    assert.equal(t.checks.dmarc.result, 'none');
    assert.equal(t.decision.rule, 'spf-temperror');
  });

  test('no DMARC record and an SPF temperror, where even a fail is delivered: INBOX', async () => {
    const { reply, t } = await run({ to: delivering, client: ATTACKER, mailFrom: 'alice@nodmarc.test', from: 'alice@nodmarc.test' });
    assert.match(reply.text, /^250 2\.6\.0 Delivered to INBOX/);
    assert.equal(t.decision.rule, 'no-dmarc');
    assert.match(t.decision.reason, /SPF temperror .*local policy delivers even SPF failures/);
  });
});

describe('local policy without DMARC', () => {
  test('spfFailWithoutDmarc: reject: SPF softfail is delivered, SPF fail gets 550 5.7.23', async () => {
    const { reply, t } = await run({ to: refusing, client: ATTACKER, mailFrom: 'ceo@quarantine.test', from: 'ceo@gmail.com' });
    // gmail.com does not exist in the lab; quarantine.test's SPF (~all) softfails: not a fail.
    assert.match(reply.text, /^250 2\.6\.0 Delivered to INBOX/);
    assert.equal(t.decision.rule, 'no-dmarc');
    const spoof = await run({ to: refusing, client: ATTACKER, mailFrom: 'ceo@monitor.test', from: 'ceo@gmail.com' });
    assert.match(spoof.reply.text, /^550 5\.7\.23 Message rejected: no DMARC policy for gmail\.com .*SPF fail for monitor\.test.*local policy rejects SPF failures/);
    assert.equal(spoof.t.decision.rule, 'no-dmarc-spf-fail');
  });

  test('spfFailWithoutDmarc: inbox: SPF fail is delivered, and the reason says local policy did it', async () => {
    const { reply, t } = await run({ to: delivering, client: ATTACKER, mailFrom: 'ceo@monitor.test', from: 'ceo@gmail.com' });
    assert.match(reply.text, /^250 2\.6\.0 Delivered to INBOX/);
    assert.equal(t.checks.spf.result, 'fail');
    assert.equal(t.decision.rule, 'no-dmarc-spf-fail');
    assert.match(t.decision.reason, /local policy delivers SPF failures/);
  });
});

describe('RFC 8301: weak signatures are not valid', () => {
  test('an rsa-sha1 signature of sender.test does not verify (dkim=policy); DMARC fails: 550', async () => {
    const { reply, t } = await run({ client: ATTACKER, mailFrom: 'mallory@attacker.test', from: 'alice@sender.test', sign: [{ domain: 'sender.test', selector: 'rsa2048', algorithm: 'rsa-sha1' }] });
    assert.match(reply.text, /^550 5\.7\.1 Message rejected: DMARC fail for sender\.test/);
    assert.equal(t.checks.dkim[0].result, 'policy');
    assert.equal(t.checks.dkim[0].algorithm, 'rsa-sha1');
    assert.match(t.checks.dkim[0].reason, /rsa-sha1 signature: RFC 8301 section 3\.1/);
  });

  test('the same signature made by dkimpy (an independent signer): also dkim=policy', async (tt) => {
    if (!hasTool('/usr/bin/dkimsign')) {
      if (process.env.CI === 'true') throw new Error('dkimsign not installed (apt-get install python3-dkim)');
      return tt.skip('dkimsign not installed (apt-get install python3-dkim)');
    }
    const { text, messageId } = message('alice@sender.test', 'rsa-sha1 by dkimpy');
    const signed = execFileSync('/usr/bin/python3', ['/usr/bin/dkimsign', '--signalg', 'rsa-sha1', 'rsa2048', 'sender.test', join(keys, 'sender.test', 'rsa2048.pem')], { input: text }).toString('latin1').replace(/\r?\n/g, '\r\n');
    const reply = await deliver(receiver, ATTACKER, 'mallory@attacker.test', signed);
    assert.match(reply.text, /^550 5\.7\.1 /);
    const t = await recorded(receiver, messageId);
    assert.equal(t.checks.dkim[0].result, 'policy');
  });

  test('a signature with a 512-bit key does not verify (dkim=policy), and the record says why', async () => {
    const key = weak.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const { reply, t } = await run({ client: ATTACKER, mailFrom: 'mallory@attacker.test', from: 'alice@sender.test', sign: [{ domain: 'sender.test', selector: 'weak', key }] });
    assert.match(reply.text, /^550 5\.7\.1 /);
    assert.equal(t.checks.dkim[0].result, 'policy');
    assert.equal(t.checks.dkim[0].reason, 'the key is 512 bits: RFC 8301 section 3.2 says keys under 1024 bits must not be considered valid');
  });
});

describe('the null sender: SPF checks the HELO name (RFC 7208 section 2.4)', () => {
  test('a bounce from mta.sender.test: SPF pass for the HELO name, aligned with its From: INBOX', async () => {
    const { reply, t } = await run({ client: SENDER, mailFrom: '', from: 'MAILER-DAEMON@mta.sender.test' });
    assert.match(reply.text, /^250 2\.6\.0 Delivered to INBOX/);
    assert.equal(t.checks.spf.result, 'pass');
    assert.equal(t.checks.spf.domain, 'mta.sender.test');
    assert.equal(t.decision.rule, 'dmarc-pass');
  });

  test('a "bounce" from the attacker that names mta.sender.test in HELO: SPF fail, DMARC fail: 550', async () => {
    const { reply, t } = await run({ client: { address: ATTACKER.address, helo: 'mta.sender.test' }, mailFrom: '', from: 'postmaster@sender.test' });
    assert.match(reply.text, /^550 5\.7\.1 Message rejected: DMARC fail for sender\.test/);
    assert.equal(t.checks.spf.result, 'fail');
    assert.equal(t.checks.spf.domain, 'mta.sender.test');
  });
});
