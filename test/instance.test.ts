// Instance files are checked whole at start; a mistake names the file and the key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { checkInstance, loadInstance } from '../services/mta/instance.ts';

const instances = new URL('../instances/', import.meta.url).pathname;
const receiver = () => parse(readFileSync(join(instances, 'receiver.yaml'), 'utf8'));

test('every shipped instance file is valid and matches its host in the zones', () => {
  const zones = new URL('../dns-zone/', import.meta.url).pathname;
  for (const file of readdirSync(instances).filter((f) => f.endsWith('.yaml'))) {
    const instance = loadInstance(join(instances, file));
    const origin = instance.hostname.split('.').slice(1).join('.');
    const zone = readFileSync(join(zones, `${origin}.zone`), 'utf8');
    const host = instance.hostname.split('.')[0];
    assert.match(zone, new RegExp(`^${host}\\s+A\\s+${instance.address.replace(/\./g, '\\.')}\\b`, 'm'), `${file}: A record of ${instance.hostname}`);
    assert.ok([...instance.domains.values()].every((mailboxes) => mailboxes.has('postmaster')), `${file}: postmaster everywhere`);
  }
});

test('mistakes name the file and the key', () => {
  const check = (change: (doc: Record<string, any>) => void) => {
    const doc = receiver();
    change(doc);
    return () => checkInstance(doc, 'instances/x.yaml');
  };
  assert.throws(check((d) => (d.limits.messageSize = 'big')), /^ConfigError: instances\/x\.yaml: limits\.messageSize: must be a whole number from 1024 to/);
  assert.throws(check((d) => (d.policy.spfFailWithoutDmarc = 'drop')), /instances\/x\.yaml: policy\.spfFailWithoutDmarc: must be one of inbox, junk, reject/);
  assert.throws(check((d) => (d.limits.clientz = 3)), /instances\/x\.yaml: limits\.clientz: unknown setting/);
  assert.throws(check((d) => (d.address = '192.0.2')), /address: must be an IPv4 address/);
  assert.throws(check((d) => delete d.hostname), /instances\/x\.yaml: hostname: missing/);
  assert.throws(check((d) => (d.domains = { 'receiver.test': 'alice' })), /domains\.receiver\.test: must be a list of mailbox names/);
  assert.throws(check((d) => (d.policy.trustedArcSealers = ['not a domain'])), /policy\.trustedArcSealers\[0\]: must be a host name/);
  assert.throws(check((d) => (d.policy.ambiguousFrom = 'inbox')), /instances\/x\.yaml: policy\.ambiguousFrom: must be reject or junk/);
  assert.throws(check((d) => (d.submission.senders = 'anyone')), /instances\/x\.yaml: submission\.senders: must be own or any/);
  assert.throws(check((d) => (d.submission.aliases = { 'carol@receiver.test': ['c@receiver.test'] })), /instances\/x\.yaml: submission\.aliases\.carol@receiver\.test: carol@receiver\.test is not a login: submission\.passwords has no carol/);
  assert.throws(check((d) => (d.submission.aliases = { 'alice@sender.test': ['a@receiver.test'] })), /submission\.aliases\.alice@sender\.test: alice@sender\.test is not in one of this instance's domains/);
  assert.throws(check((d) => (d.submission.aliases = { 'alice@receiver.test': ['ceo@sender.test'] })), /instances\/x\.yaml: submission\.aliases\.alice@receiver\.test\[0\]: ceo@sender\.test is not in one of this instance's domains/);
  assert.throws(check((d) => (d.submission.aliases = { 'alice@receiver.test': 'a@receiver.test' })), /submission\.aliases\.alice@receiver\.test: must be a list of e-mail addresses/);
  assert.deepEqual(checkInstance({ ...receiver(), submission: { ...receiver().submission, aliases: { 'Alice@receiver.test': ['A.Smith@receiver.test'] } } }, 'r.yaml').submission.aliases, new Map([['alice@receiver.test', ['a.smith@receiver.test']]]));
  assert.deepEqual(checkInstance(receiver(), 'r.yaml').submission.aliases, new Map(), 'no aliases unless listed');
  assert.equal(checkInstance(receiver(), 'r.yaml').policy.ambiguousFrom, 'reject');
  assert.equal(checkInstance({ ...receiver(), policy: { spfFailWithoutDmarc: 'junk' } }, 'r.yaml').policy.ambiguousFrom, 'reject', 'refusing by default');
});

test('the MTA process stops at once on a bad instance file, saying which', () => {
  const dir = mkdtempSync(join(tmpdir(), 'instance-'));
  const file = join(dir, 'bad.yaml');
  writeFileSync(file, readFileSync(join(instances, 'receiver.yaml'), 'utf8').replace('recipients: 100', 'recipients: -1'));
  const main = new URL('../services/mta/main.ts', import.meta.url).pathname;
  const result = spawnSync(process.execPath, [main], { env: { ...process.env, MTA_CONFIG: file }, encoding: 'utf8', timeout: 10_000 });
  assert.equal(result.status, 2);
  assert.match(result.stderr, new RegExp(`configuration error: ${file}: limits\\.recipients: must be a whole number from 1 to 10000, found -1`));
  const unset = spawnSync(process.execPath, [main], { env: { ...process.env, MTA_CONFIG: '' }, encoding: 'utf8', timeout: 10_000 });
  assert.equal(unset.status, 2);
  assert.match(unset.stderr, /MTA_CONFIG: not set/);
});
