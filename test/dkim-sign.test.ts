// The sender's DKIM signatures, judged from outside: dkimpy (another
// implementation) verifies what our sender signed through the lab DNS, and
// the RFC 8463 example, signed again by our signer with the RFC's keys,
// header list and time, gives the RFC's signature values.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, sign } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { checkInstance } from '../services/mta/instance.ts';
import { Signer } from '../services/mta/outbound/sign.ts';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';
import { arrival, message, submit } from './support/mail.ts';
import { dkimpyVerify } from './support/dkimpy.ts';
import { requireTool } from './support/tools.ts';

const fixtures = new URL('./fixtures/dkim-rfc8463/', import.meta.url).pathname;
const rfcSigned = readFileSync(join(fixtures, 'signed.eml'), 'latin1').replace(/\r?\n/g, '\r\n');
const rfcUnsigned = rfcSigned.slice(rfcSigned.indexOf('From: '));
const RFC_TIME = new Date(1528637909 * 1000); // t= of both RFC signatures
const RFC_HEADERS = ['from', 'to', 'subject', 'date', 'message-id', 'from', 'subject', 'date']; // their h=

let lab: TestLab;
let sender: LabMta;
let receiver: LabMta;
let keyDir: string;

before(async () => {
  lab = await startLab();
  receiver = await lab.start('receiver');
  sender = await lab.start('sender');
  // The RFC's keys where the signer looks for them: <domain>/<selector>.pem.
  keyDir = mkdtempSync(join(tmpdir(), 'rfc8463-keys-'));
  mkdirSync(join(keyDir, 'football.example.com'));
  const seed = Buffer.from(readFileSync(join(fixtures, 'private-ec.key'), 'utf8').trim(), 'base64');
  const ed25519 = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' });
  writeFileSync(join(keyDir, 'football.example.com/brisbane.pem'), ed25519.export({ format: 'pem', type: 'pkcs8' }));
  writeFileSync(join(keyDir, 'football.example.com/test.pem'), readFileSync(join(fixtures, 'private-rsa.key')));
});
after(async () => {
  await lab.close();
  rmSync(keyDir, { recursive: true, force: true });
});

// The DKIM-Signature fields of a message, in order, as written.
function signatureFields(text: string): string[] {
  const head = text.slice(0, text.indexOf('\r\n\r\n') + 2);
  return [...head.matchAll(/^DKIM-Signature:.*\r\n(?:[ \t].*\r\n)*/gim)].map((m) => m[0]);
}

// ... each as its tags, whitespace removed, as a verifier reads them.
const signatures = (text: string): Map<string, string>[] =>
  signatureFields(text).map((field) => new Map(field.slice(field.indexOf(':') + 1).replace(/\s+/g, '').split(';').filter(Boolean).map((tag) => [tag.slice(0, tag.indexOf('=')), tag.slice(tag.indexOf('=') + 1)])));

test('dkimpy, asking the lab DNS for the keys, verifies the RSA and the Ed25519 signature of a message the sender signed', async (t) => {
  if (!requireTool(t, '/usr/bin/dkimverify', 'python3-dkim')) return;
  const reply = await submit(sender, { user: 'alice@sender.test', mailFrom: 'alice@sender.test', to: ['bob@receiver.test'], data: message('Alice <alice@sender.test>', 'bob@receiver.test', 'dkimpy-check') });
  assert.match(reply.text, /^250 /);
  const stored = await arrival(receiver, 'bob@receiver.test', 'Subject: dkimpy-check');
  assert.deepEqual(signatures(stored).map((s) => `${s.get('a')} s=${s.get('s')}`), ['rsa-sha256 s=rsa2048', 'ed25519-sha256 s=ed25519']);
  assert.deepEqual(await dkimpyVerify(stored, `127.0.2.53:${lab.dnsPort}`), [true, true]);

  // A change to a signed field is caught: dkimpy does check.
  assert.deepEqual(await dkimpyVerify(stored.replace('Subject: dkimpy-check', 'Subject: dkimpy-checked'), `127.0.2.53:${lab.dnsPort}`), [false, false]);
});

// The RFC 8463 example through our signer: an instance whose dkim entry for
// football.example.com has the RFC's two selectors and header list.
async function signRfcExample(): Promise<string> {
  const instance = checkInstance(
    {
      name: 'rfc8463',
      hostname: 'mail.football.example.com',
      address: '192.0.2.99',
      dns: '192.0.2.53',
      domains: { 'football.example.com': ['joe'] },
      ports: { mx: 25, submission: 587, api: 8025 },
      limits: { messageSize: 1 << 20, recipients: 10, clients: 10, idleSeconds: 60 },
      policy: { spfFailWithoutDmarc: 'inbox' },
      submission: { plaintextAuth: false, senders: 'own', passwords: {} },
      dkim: { 'football.example.com': [{ selector: 'brisbane', headers: RFC_HEADERS }, { selector: 'test', headers: RFC_HEADERS }] },
      delivery: { retryInitialSeconds: 1, retryMaxSeconds: 1, giveUpAfterSeconds: 1 },
    },
    'rfc8463 test instance',
  );
  return new Signer(instance, keyDir).sign(Buffer.from(rfcUnsigned, 'latin1'), 'football.example.com', RFC_TIME);
}

// What a signer with the RFC's own DKIM-Signature layout signs (RFC 6376
// section 3.7, relaxed header canonicalization, section 3.4.2): the fields
// of h= bottom-up, then the signature field itself with an empty b=.
function rfcLayoutSignature(rfcField: string, selector: string, algorithm: string): string {
  const relaxed = (field: string) => {
    const colon = field.indexOf(':');
    return `${field.slice(0, colon).trim().toLowerCase()}:${field.slice(colon + 1).replace(/\r\n/g, '').replace(/[ \t]+/g, ' ').trim()}`;
  };
  const unused = rfcUnsigned.slice(0, rfcUnsigned.indexOf('\r\n\r\n') + 2).split(/\r\n(?![ \t])/).filter(Boolean);
  let data = '';
  for (const name of RFC_HEADERS) {
    const index = unused.findLastIndex((f) => f.toLowerCase().startsWith(`${name}:`));
    if (index === -1) continue; // an h= name past the fields there are: signs nothing (oversigning)
    data += `${relaxed(unused[index])}\r\n`;
    unused.splice(index, 1);
  }
  data += relaxed(rfcField.replace(/b=[^;]*$/, 'b='));
  const privateKey = readFileSync(join(keyDir, 'football.example.com', `${selector}.pem`));
  // RFC 8463 section 3: Ed25519 signs the SHA-256 of the data, not the data.
  const signature = algorithm === 'rsa-sha256' ? sign('sha256', Buffer.from(data), privateKey) : sign(null, createHash('sha256').update(data).digest(), privateKey);
  return signature.toString('base64');
}

test('RFC 8463: with the RFC\'s keys, time and header list our signatures carry the RFC\'s tag values, and verify with its keys', async (t) => {
  const signed = `${await signRfcExample()}${rfcUnsigned}`;
  const ours = signatures(signed);
  const theirs = signatures(rfcSigned);
  assert.deepEqual(ours.map((s) => s.get('s')), ['brisbane', 'test']);
  for (const [i, rfc] of theirs.entries()) {
    const our = ours[i];
    // Byte for byte: the body hash (canonicalization and SHA-256) and every tag but h=, i= and b=.
    for (const tag of ['v', 'a', 'c', 'd', 'q', 's', 't', 'bh']) assert.equal(our.get(tag), rfc.get(tag), `${rfc.get('s')}: ${tag}=`);
    // i=@football.example.com is the default AUID (RFC 6376 section 3.5): leaving it out says the same.
    assert.equal(rfc.get('i'), '@football.example.com');
    assert.equal(our.get('i'), undefined);
    // h=: the same fields. The RFC signer (dkimpy) lists them top-down and names From,
    // Subject and Date once more than they occur ("oversigning", RFC 6376 section 8.15);
    // mailauth lists the fields present bottom-up, once each, and cannot oversign.
    assert.equal(rfc.get('h'), RFC_HEADERS.join(':'));
    assert.equal(our.get('h'), 'Message-ID:Date:Subject:To:From');
    // b= therefore differs: the DKIM-Signature field itself, h= and i= included, is
    // part of what is signed (RFC 6376 section 3.7), and mailauth writes it differently
    // (tag order too). Laid out as the RFC lays it out, the same keys give the RFC's b=
    // exactly: so the keys, canonicalization and both algorithms are the RFC's.
    assert.equal(rfcLayoutSignature(signatureFields(rfcSigned)[i], rfc.get('s')!, rfc.get('a')!), rfc.get('b'));
  }

  // Our signatures verify with the RFC's public keys (dns.json): mailauth, and dkimpy when installed.
  const dns = JSON.parse(readFileSync(join(fixtures, 'dns.json'), 'utf8')) as Record<string, { TXT: string[][] }>;
  const resolver = async (name: string, type: string) => {
    const record = dns[name]?.[type as 'TXT'];
    if (!record) throw Object.assign(new Error(`${name} ${type}: none`), { code: 'ENOTFOUND' });
    return record;
  };
  const verdict = await dkimVerify(Buffer.from(signed, 'latin1'), { resolver, curTime: RFC_TIME } as Parameters<typeof dkimVerify>[1]);
  assert.deepEqual(verdict.results.map((r) => `${r.selector} ${r.status.result}`), ['brisbane pass', 'test pass']);
  if (!requireTool(t, '/usr/bin/dkimverify', 'python3-dkim')) return;
  assert.deepEqual(await dkimpyVerify(signed, join(fixtures, 'dns.json')), [true, true]);
});
