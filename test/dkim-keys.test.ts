// The zone files and the lab's DKIM keys agree: every private key in
// dns-zone/dkim matches the p= its zone publishes (but for the two keys that
// exist to fail), every zone passes knot's checker, and dkim-keygen prints
// records that parse and match the key it writes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseZoneFile } from '../services/dns/zone-file.ts';
import { publicKeyData } from '../scripts/dkim-keygen.ts';

const zoneDir = join(import.meta.dirname, '..', 'dns-zone');
const keyDir = join(zoneDir, 'dkim');
const keygen = join(import.meta.dirname, '..', 'scripts', 'dkim-keygen.ts');

const zoneFiles = readdirSync(zoneDir).filter((f) => f.endsWith('.zone')).sort();
const zones = zoneFiles.map((f) => parseZoneFile(readFileSync(join(zoneDir, f), 'utf8'), `dns-zone/${f}`));

// These keys are kept on purpose without a matching record (see their zones).
const REVOKED = 'revoked.test/rsa2048';
const UNPUBLISHED = 'nokey.test/rsa2048';

// Every TXT record at a name, its strings joined as DKIM verifiers join them.
function txtAt(name: string): string[] {
  return zones.flatMap((z) => z.records).flatMap((r) => (r.type === 'TXT' && r.name === name ? [Buffer.concat(r.data).toString()] : []));
}

// The tags of a DKIM record, "v=DKIM1; k=rsa; p=..." (white space is allowed around and inside p=).
function tags(record: string): Map<string, string> {
  const pairs = record.split(';').map((part) => part.trim()).filter(Boolean);
  return new Map(pairs.map((pair) => [pair.slice(0, pair.indexOf('=')).trim(), pair.slice(pair.indexOf('=') + 1).replace(/\s+/g, '')]));
}

const keys = readdirSync(keyDir).flatMap((domain) =>
  readdirSync(join(keyDir, domain))
    .filter((f) => f.endsWith('.pem'))
    .map((f) => ({ domain, selector: f.slice(0, -'.pem'.length), id: `${domain}/${f.slice(0, -'.pem'.length)}` })),
);

test('one zone file per zone, named after its origin', () => {
  assert.deepEqual(
    zones.map((z) => `${z.origin || 'root'}.zone`),
    zoneFiles,
  );
});

test('the root zone delegates nothing: only its SOA, NS and the name server glue', () => {
  const root = zones.find((z) => z.origin === '');
  assert.ok(root, 'root.zone is missing');
  assert.deepEqual(
    root.records.map((r) => `${r.name || '.'} ${r.type}`),
    ['. SOA', '. NS', 'ns.lab.test A'],
  );
  const glue = (origin: string) => zones.find((z) => z.origin === origin)?.records.find((r) => r.name === 'ns.lab.test' && r.type === 'A');
  assert.deepEqual(glue(''), glue('lab.test'));
});

test('every lab key matches the record its zone publishes', () => {
  assert.ok(keys.some((k) => k.id === REVOKED) && keys.some((k) => k.id === UNPUBLISHED), 'the revoked and unpublished keys are kept');
  for (const { domain, selector, id } of keys) {
    const pem = readFileSync(join(keyDir, domain, `${selector}.pem`), 'utf8');
    assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n/, `${id}: not PKCS#8 PEM`);
    const privateKey = createPrivateKey(pem);
    if (selector === 'rsa2048') assert.equal(privateKey.asymmetricKeyDetails?.modulusLength, 2048, `${id}: not RSA 2048`);
    if (selector === 'ed25519') assert.equal(privateKey.asymmetricKeyType, 'ed25519', `${id}: not Ed25519`);
    const records = txtAt(`${selector}._domainkey.${domain}`);
    if (id === UNPUBLISHED) {
      assert.deepEqual(records, [], `${id}: must have no record (the missing-key lesson)`);
      continue;
    }
    assert.equal(records.length, 1, `${id}: expected one DKIM record, found ${records.length}`);
    const record = tags(records[0]);
    assert.equal(record.get('v'), 'DKIM1', `${id}: v=`);
    if (id === REVOKED) {
      assert.equal(record.get('p'), '', `${id}: must publish an empty p= (the revoked-key lesson)`);
      continue;
    }
    assert.equal(record.get('k'), privateKey.asymmetricKeyType, `${id}: k=`);
    assert.equal(record.get('p'), publicKeyData(createPublicKey(privateKey)), `${id}: p= is not the public key of ${id}.pem`);
  }
});

test('every published DKIM key has its private key beside the zones', () => {
  for (const record of zones.flatMap((z) => z.records)) {
    const match = /^([^.]+)\._domainkey\.(.+)$/.exec(record.name);
    if (!match) continue;
    const [, selector, domain] = match;
    assert.ok(keys.some((k) => k.id === `${domain}/${selector}`), `${record.name} has no dns-zone/dkim/${domain}/${selector}.pem`);
  }
});

test('every zone file passes kzonecheck (knot)', (t) => {
  if (spawnSync('kzonecheck', ['--version']).error) {
    const reason = 'kzonecheck not installed (apt-get install knot-dnssecutils)';
    if (process.env.CI === 'true') assert.fail(reason);
    t.skip(reason);
    return;
  }
  for (const zone of zones) {
    const result = spawnSync('kzonecheck', ['-o', `${zone.origin}.`, join(zoneDir, zone.file.slice('dns-zone/'.length))], { encoding: 'utf8' });
    assert.equal(result.status, 0, `${zone.file}:\n${result.stdout}${result.stderr}`);
  }
});

for (const type of ['rsa', 'ed25519']) {
  test(`dkim-keygen --type ${type} prints a record that parses and matches the key it writes`, (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'dkim-keygen-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const run = (...args: string[]) => spawnSync(process.execPath, [keygen, ...args], { encoding: 'utf8' });
    const args = ['example.test', 'sel1', '--type', type, '--dir', dir];

    const made = run(...args);
    assert.equal(made.status, 0, made.stderr);
    const line = made.stdout.trim();
    for (const [, s] of line.matchAll(/"([^"]*)"/g)) assert.ok(s.length <= 255, `a string of ${s.length} bytes`);
    const zone = parseZoneFile(`$ORIGIN example.test.\n$TTL 5\n@ SOA ns.lab.test. hostmaster.lab.test. 1 3600 600 604800 5\n${line}\n`, 'keygen.zone');
    const published = zone.records.filter((r) => r.name === 'sel1._domainkey.example.test');
    assert.equal(published.length, 1);
    assert.equal(published[0].type, 'TXT');
    if (published[0].type !== 'TXT') return;
    const record = tags(Buffer.concat(published[0].data).toString());
    const privateKey = createPrivateKey(readFileSync(join(dir, 'example.test', 'sel1.pem')));
    assert.equal(record.get('k'), type);
    assert.equal(record.get('p'), publicKeyData(createPublicKey(privateKey)));

    const again = run(...args);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /sel1\.pem already exists.*--force/);
    const forced = run(...args, '--force');
    assert.equal(forced.status, 0, forced.stderr);
    assert.notEqual(forced.stdout, made.stdout, 'a new key');
  });
}

test('dkim-keygen: bad arguments print a message and exit 2, --help exits 0', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [keygen, ...args, '--dir', tmpdir()], { encoding: 'utf8' });
  for (const [args, message] of [
    [['example.test'], 'expected a domain and a selector'],
    [['example.test', 'sel', '--type', 'dsa'], '--type must be rsa or ed25519'],
    [['example.test', 'sel', '--bits', '512'], '--bits must be a number from 1024 to 4096'],
    [['example.test', 'sel', '--type', 'ed25519', '--bits', '2048'], '--bits is for RSA keys only'],
    [['../etc', 'sel'], 'is not a domain name'],
    [['example.test', 'a/b'], 'is not a selector'],
    [['example.test', 'sel', '--frobnicate'], "Unknown option '--frobnicate'"],
  ] as const) {
    const result = run(...args);
    assert.equal(result.status, 2, args.join(' '));
    assert.ok(result.stderr.includes(message), `${args.join(' ')}: ${result.stderr}`);
    assert.match(result.stderr, /usage: node scripts\/dkim-keygen\.ts/);
  }
  const help = run('--help');
  assert.equal(help.status, 0);
  assert.match(help.stdout, /--type rsa\|ed25519/);
});
