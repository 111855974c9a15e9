// The lab resolver: only the lab DNS, answers kept for exactly their TTL,
// Node's shapes and error codes, every question recorded.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import { pino } from 'pino';
import { DnsServer } from '../services/dns/server.ts';
import { startControl } from '../services/dns/control.ts';
import { LabResolver, type Question } from '../services/lib/resolver.ts';

const zones = new URL('./fixtures/zones/', import.meta.url).pathname;
let dns: DnsServer;
let control: Server;
let controlUrl: string;

before(async () => {
  const logger = pino({ level: 'silent' });
  dns = new DnsServer({ listen: { host: '127.0.0.1', port: 0 }, zoneDir: zones, logger });
  await dns.start();
  control = await startControl(dns, { host: '127.0.0.1', port: 0 }, logger);
  controlUrl = `http://127.0.0.1:${(control.address() as { port: number }).port}`;
});
after(async () => {
  control.close();
  await dns.close();
});

const override = (name: string, type: string, values: string[], ttl: number) =>
  fetch(`${controlUrl}/overrides`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, type, values, ttl }) });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test("answers in the shapes of Node's dns.promises, errors with its codes", async () => {
  const resolver = new LabResolver({ host: '127.0.0.1', port: dns.port }, 500);
  assert.deepEqual(await resolver.resolve('chain.features.test', 'A'), ['192.0.2.22']);
  assert.deepEqual(await resolver.resolve('mx1.features.test', 'AAAA'), ['2001:db8::21']);
  assert.deepEqual(await resolver.resolve('features.test', 'MX'), [
    { exchange: 'mx1.features.test', priority: 10 },
    { exchange: 'mx2.other.test', priority: 20 },
  ]);
  assert.deepEqual(await resolver.resolve('multi.features.test', 'TXT'), [['first string ', 'second string']]);
  assert.deepEqual(await resolver.resolve('53.2.0.192.in-addr.arpa', 'PTR'), ['ns.lab.test']);
  await assert.rejects(resolver.resolve('gmail.com', 'TXT'), { code: 'ENOTFOUND' });
  await assert.rejects(resolver.resolve('host.features.test', 'AAAA'), { code: 'ENODATA' });
  await assert.rejects(resolver.resolve('broken.features.test', 'A'), { code: 'ESERVFAIL' });
  await assert.rejects(resolver.resolve('silent.features.test', 'A'), { code: 'ETIMEOUT' });
});

test('an answer is kept for exactly its TTL, then asked again', async () => {
  const resolver = new LabResolver({ host: '127.0.0.1', port: dns.port });
  await override('ttl.features.test', 'TXT', ['first'], 1);
  const questions: Question[] = [];
  const ask = resolver.recording(questions);
  assert.deepEqual(await ask('ttl.features.test', 'TXT'), [['first']]);
  await override('ttl.features.test', 'TXT', ['second'], 1);
  assert.deepEqual(await ask('ttl.features.test', 'TXT'), [['first']], 'within the TTL: from the cache');
  await sleep(1100);
  assert.deepEqual(await ask('ttl.features.test', 'TXT'), [['second']], 'after the TTL: asked again');
  assert.deepEqual(questions.map((q) => q.cached), [false, true, false]);
  assert.equal(questions[0].ttl, 1);
  assert.equal(questions[0].name, 'ttl.features.test');
});

test('a negative answer is kept for the SOA minimum (RFC 2308)', async () => {
  const resolver = new LabResolver({ host: '127.0.0.1', port: dns.port });
  const questions: Question[] = [];
  const ask = resolver.recording(questions);
  await assert.rejects(ask('later.features.test', 'TXT'), { code: 'ENOTFOUND' });
  await override('later.features.test', 'TXT', ['now here'], 5);
  await assert.rejects(ask('later.features.test', 'TXT'), { code: 'ENOTFOUND' });
  assert.equal(questions[1].cached, true);
  // features.test has an SOA minimum of 60 s: the negative answer stays.
  assert.equal(questions[0].ttl, 60);
});

test('failures are not kept: the next question asks again', async () => {
  const resolver = new LabResolver({ host: '127.0.0.1', port: dns.port });
  const questions: Question[] = [];
  const ask = resolver.recording(questions);
  await assert.rejects(ask('broken.features.test', 'A'), { code: 'ESERVFAIL' });
  await assert.rejects(ask('broken.features.test', 'A'), { code: 'ESERVFAIL' });
  assert.deepEqual(questions.map((q) => q.cached), [false, false]);
});

test('TXT bytes arrive one character per byte, as Node gives them', async () => {
  const resolver = new LabResolver({ host: '127.0.0.1', port: dns.port });
  await override('bytes.features.test', 'TXT', ['caf\u00e9'], 5); // sent as UTF-8: 63 61 66 c3 a9
  assert.deepEqual(await resolver.resolve('bytes.features.test', 'TXT'), [['caf\u00c3\u00a9']]);
});
