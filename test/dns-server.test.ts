// The DNS server as dig and Node's resolver see it: every record type, rcode
// and flag an authoritative server must get right, over UDP and TCP.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { DnsServer } from '../services/dns/server.ts';
import { startControl } from '../services/dns/control.ts';
import { dig } from './support/dig.ts';
import { hasTool, requireTool } from './support/tools.ts';
import type { Server } from 'node:http';

const fixtures = new URL('./fixtures/zones/', import.meta.url).pathname;

// A logger whose lines the tests can read.
function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

let dir: string;
let dns: DnsServer;
let control: Server;
let controlUrl: string;
let logLines: Record<string, unknown>[];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dns-test-'));
  cpSync(fixtures, dir, { recursive: true });
  const { logger, lines } = capturingLogger();
  logLines = lines;
  dns = new DnsServer({ listen: { host: '127.0.0.1', port: 0 }, zoneDir: dir, logger });
  await dns.start();
  control = await startControl(dns, { host: '127.0.0.1', port: 0 }, logger);
  const address = control.address() as { port: number };
  controlUrl = `http://127.0.0.1:${address.port}`;
});

after(async () => {
  control?.close();
  await dns?.close();
  rmSync(dir, { recursive: true, force: true });
});

const resolver = () => {
  const r = new Resolver({ timeout: 1000, tries: 1 });
  r.setServers([`127.0.0.1:${dns.port}`]);
  return r;
};

describe('answers seen by dig', { skip: !hasTool('dig') && process.env.CI !== 'true' && 'dig not installed (apt-get install bind9-dnsutils)' }, () => {
  for (const transport of ['udp', 'tcp']) {
    const over = transport === 'tcp' ? ['+tcp'] : [];

    test(`A over ${transport}: authoritative, no recursion, TTL and letter case as asked`, async (t) => {
      if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
      const r = await dig(dns.port, [...over, 'HoSt.Features.TEST', 'A']);
      assert.equal(r.status, 'NOERROR');
      assert.ok(r.flags.includes('aa'), 'AA flag set');
      assert.ok(!r.flags.includes('ra'), 'no recursion offered');
      assert.deepEqual(r.answer, ['HoSt.Features.TEST. 3600 IN A 192.0.2.22']);
    });

    test(`question types whose low byte differs only as a letter's case does, over ${transport}`, async (t) => {
      if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
      // 65 and 97 are "A" and "a" in their low byte: folding the name's case must not fold the type.
      for (const type of ['TYPE65', 'TYPE97', 'TYPE65']) {
        const r = await dig(dns.port, [...over, 'HoSt.Features.TEST', type]);
        assert.equal(r.status, 'NOERROR');
        const question = /;; QUESTION SECTION:\n;(\S+)\s+IN\s+(\S+)/.exec(r.text);
        assert.deepEqual(question?.slice(1), ['HoSt.Features.TEST.', type === 'TYPE65' ? 'HTTPS' : type]);
      }
    });

    test(`every record type over ${transport}`, async (t) => {
      if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
      const answer = async (name: string, type: string) => (await dig(dns.port, [...over, name, type])).answer;
      assert.deepEqual(await answer('mx1.features.test', 'AAAA'), ['mx1.features.test. 300 IN AAAA 2001:db8::21']);
      assert.deepEqual(await answer('features.test', 'TXT'), ['features.test. 300 IN TXT "v=spf1 ip4:192.0.2.10 -all"']);
      assert.deepEqual(await answer('multi.features.test', 'TXT'), ['multi.features.test. 300 IN TXT "first string " "second string"']);
      assert.deepEqual(await answer('features.test', 'NS'), ['features.test. 300 IN NS ns.lab.test.']);
      assert.deepEqual(await answer('features.test', 'SOA'), ['features.test. 300 IN SOA ns.lab.test. hostmaster.lab.test. 2026112801 3600 600 86400 60']);
      assert.deepEqual(await answer('alias.features.test', 'CNAME'), ['alias.features.test. 300 IN CNAME host.features.test.']);
      assert.deepEqual(await answer('ptr.features.test', 'PTR'), ['ptr.features.test. 300 IN PTR Mail.Other.test.']);
      assert.deepEqual(await answer('53.2.0.192.in-addr.arpa', 'PTR'), ['53.2.0.192.in-addr.arpa. 300 IN PTR ns.lab.test.']);
    });
  }

  test('MX and NS answers carry the targets\' addresses in the additional section', async (t) => {
    if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
    const mx = await dig(dns.port, ['features.test', 'MX']);
    assert.deepEqual(mx.answer, ['features.test. 300 IN MX 10 mx1.features.test.', 'features.test. 300 IN MX 20 mx2.other.test.']);
    assert.deepEqual(mx.additional, [
      'mx1.features.test. 300 IN A 192.0.2.21',
      'mx1.features.test. 300 IN AAAA 2001:db8::21',
      'mx2.other.test. 300 IN A 192.0.2.41',
    ]);
    const ns = await dig(dns.port, ['features.test', 'NS']);
    assert.deepEqual(ns.additional, ['ns.lab.test. 300 IN A 192.0.2.53']);
  });

  test('CNAME chains are followed inside our zones, across zones too', async (t) => {
    if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
    const chain = await dig(dns.port, ['chain.features.test', 'A']);
    assert.deepEqual(chain.answer, [
      'chain.features.test. 300 IN CNAME alias.features.test.',
      'alias.features.test. 300 IN CNAME host.features.test.',
      'host.features.test. 3600 IN A 192.0.2.22',
    ]);
    const away = await dig(dns.port, ['away.features.test', 'A']);
    assert.deepEqual(away.answer, ['away.features.test. 300 IN CNAME www.other.test.', 'www.other.test. 300 IN A 192.0.2.40']);
    // RFC 6604: the rcode is that of the last name in the chain.
    const nowhere = await dig(dns.port, ['nowhere.features.test', 'A']);
    assert.equal(nowhere.status, 'NXDOMAIN');
    assert.deepEqual(nowhere.answer, ['nowhere.features.test. 300 IN CNAME missing.other.test.']);
    assert.deepEqual(nowhere.authority, ['other.test. 120 IN SOA ns.lab.test. hostmaster.lab.test. 1 3600 600 86400 120']);
    const loop = await dig(dns.port, ['loop1.features.test', 'A']);
    assert.equal(loop.status, 'NOERROR');
    assert.equal(loop.answer.length, 2, 'a CNAME loop ends after one turn');
  });

  test('NXDOMAIN and NODATA both carry the zone SOA, its TTL capped by MINIMUM', async (t) => {
    if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
    const soa = 'features.test. 60 IN SOA ns.lab.test. hostmaster.lab.test. 2026112801 3600 600 86400 60';
    const nx = await dig(dns.port, ['nothing.features.test', 'A']);
    assert.equal(nx.status, 'NXDOMAIN');
    assert.ok(nx.flags.includes('aa'));
    assert.deepEqual(nx.answer, []);
    assert.deepEqual(nx.authority, [soa]);
    const nodata = await dig(dns.port, ['host.features.test', 'AAAA']);
    assert.equal(nodata.status, 'NOERROR');
    assert.deepEqual(nodata.answer, []);
    assert.deepEqual(nodata.authority, [soa]);
    // A name with nothing of its own but names below it exists (RFC 8020).
    for (const name of ['empty.features.test', 'below.empty.features.test']) {
      const ent = await dig(dns.port, [name, 'A']);
      assert.equal(ent.status, 'NOERROR', name);
      assert.deepEqual(ent.authority, [soa]);
    }
    // Types the lab never publishes are NODATA, not errors.
    assert.equal((await dig(dns.port, ['host.features.test', 'SRV'])).status, 'NOERROR');
  });

  test('a name in no lab zone is NXDOMAIN with the root SOA: nothing is looked up outside', async (t) => {
    if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
    const r = await dig(dns.port, ['gmail.com', 'MX']);
    assert.equal(r.status, 'NXDOMAIN');
    assert.ok(r.flags.includes('aa'));
    assert.deepEqual(r.authority, ['. 30 IN SOA ns.lab.test. hostmaster.lab.test. 2026112801 3600 600 86400 30']);
  });

  test('ANY gets one RRset, not everything (RFC 8482)', async (t) => {
    if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
    const r = await dig(dns.port, ['features.test', 'ANY']);
    assert.equal(r.status, 'NOERROR');
    const types = new Set(r.answer.map((line) => line.split(' ')[3]));
    assert.equal(types.size, 1, `one type in ${r.answer.join(' | ')}`);
  });

  test('EDNS: our size is offered, the client\'s honoured, TC set when it does not fit, TCP gives all', async (t) => {
    if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
    // long.features.test is one record of about 650 bytes: too big for 512.
    const plain = await dig(dns.port, ['+noedns', '+ignore', 'long.features.test', 'TXT']);
    assert.ok(plain.flags.includes('tc'), 'TC without EDNS');
    assert.deepEqual(plain.answer, []);
    assert.equal(plain.ednsUdp, undefined, 'no OPT in the reply to a query without one');
    const edns = await dig(dns.port, ['+bufsize=1232', '+ignore', 'long.features.test', 'TXT']);
    assert.ok(!edns.flags.includes('tc'));
    assert.equal(edns.answer.length, 1);
    assert.equal(edns.ednsUdp, 1232);
    const small = await dig(dns.port, ['+bufsize=600', '+ignore', 'long.features.test', 'TXT']);
    assert.ok(small.flags.includes('tc'), 'a 600-byte client buffer is honoured');
    // big.features.test is about 1.4 kB: over our 1232 even if the client takes 4096.
    const big = await dig(dns.port, ['+bufsize=4096', '+ignore', 'big.features.test', 'TXT']);
    assert.ok(big.flags.includes('tc'));
    const tcp = await dig(dns.port, ['+tcp', 'big.features.test', 'TXT']);
    assert.ok(!tcp.flags.includes('tc'));
    assert.equal(tcp.answer.length, 8);
    // dig's own behaviour: on TC it asks again over TCP and gets everything.
    assert.equal((await dig(dns.port, ['big.features.test', 'TXT'])).answer.length, 8);
  });

  test('faults from the zone file: SERVFAIL, silence, a late answer', async (t) => {
    if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
    // Without a type list the fault hits every query of the name, records or not.
    assert.equal((await dig(dns.port, ['broken.features.test', 'A'])).status, 'SERVFAIL');
    assert.equal((await dig(dns.port, ['broken.features.test', 'TXT'])).status, 'SERVFAIL');
    // With one, only the types listed.
    assert.equal((await dig(dns.port, ['picky.features.test', 'TXT'])).status, 'SERVFAIL');
    assert.deepEqual((await dig(dns.port, ['picky.features.test', 'A'])).answer, ['picky.features.test. 300 IN A 192.0.2.25']);
    await assert.rejects(dig(dns.port, ['silent.features.test', 'A']), (error: { stdout?: string }) => /timed out/.test(error.stdout ?? ''));
    const started = Date.now();
    const slow = await dig(dns.port, ['slow.features.test', 'A']);
    assert.ok(Date.now() - started >= 400, 'answered after the delay');
    assert.deepEqual(slow.answer, ['slow.features.test. 300 IN A 192.0.2.24']);
  });
});

describe("answers seen by Node's resolver", () => {
  test('each lookup a mail system makes', async () => {
    const r = resolver();
    assert.deepEqual(await r.resolveMx('features.test'), [
      { exchange: 'mx1.features.test', priority: 10, type: 'MX' },
      { exchange: 'mx2.other.test', priority: 20, type: 'MX' },
    ]);
    assert.deepEqual(await r.resolve4('chain.features.test'), ['192.0.2.22']);
    assert.deepEqual(await r.resolve6('mx1.features.test'), ['2001:db8::21']);
    assert.deepEqual(await r.resolveTxt('multi.features.test'), [['first string ', 'second string']]);
    assert.deepEqual(await r.reverse('192.0.2.53'), ['ns.lab.test']);
    await assert.rejects(r.resolveTxt('gmail.com'), { code: 'ENOTFOUND' });
    await assert.rejects(r.resolve6('host.features.test'), { code: 'ENODATA' });
    await assert.rejects(r.resolve4('broken.features.test'), { code: 'ESERVFAIL' });
    await assert.rejects(r.resolve4('silent.features.test'), { code: 'ETIMEOUT' });
  });
});

describe('control endpoint', () => {
  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(controlUrl + path, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: response.status, body: await response.json() };
  };

  test('health', async () => {
    const { status, body } = await call('GET', '/health');
    assert.equal(status, 200);
    assert.equal(body.status, 'ok');
    assert.equal(body.zones, 5);
  });

  test('overrides change answers at once, never the files, and clear', async () => {
    const file = join(dir, 'features.test.zone');
    const before = readFileSync(file, 'utf8');
    const r = resolver();
    const set = await call('POST', '/overrides', { name: 'features.test', type: 'TXT', values: ['v=spf1 -all'] });
    assert.equal(set.status, 200);
    assert.deepEqual(await r.resolveTxt('features.test'), [['v=spf1 -all']]);
    // Over 255 bytes: split into character-strings on the wire.
    const key = 'k'.repeat(600);
    await call('POST', '/overrides', { name: 'sel._domainkey.features.test', type: 'TXT', values: [key] });
    assert.deepEqual((await r.resolveTxt('sel._domainkey.features.test'))[0].map((s) => s.length), [255, 255, 90]);
    await call('POST', '/overrides', { name: 'features.test', type: 'MX', values: ['5 mx1', '7 www.other.test.'] });
    assert.deepEqual(await r.resolveMx('features.test'), [
      { exchange: 'mx1.features.test', priority: 5, type: 'MX' },
      { exchange: 'www.other.test', priority: 7, type: 'MX' },
    ]);
    // An empty list hides the records; a name left with none is gone, as if deleted from the file.
    await call('POST', '/overrides', { name: 'host.features.test', type: 'A', values: [] });
    await assert.rejects(r.resolve4('host.features.test'), { code: 'ENOTFOUND' });
    const listed = await call('GET', '/overrides');
    assert.equal(listed.body.length, 4);
    assert.deepEqual(listed.body[2], { name: 'features.test', type: 'MX', values: ['5 mx1.features.test.', '7 www.other.test.'] });
    assert.deepEqual((await call('DELETE', '/overrides?name=features.test&type=TXT')).body, { cleared: 1 });
    assert.deepEqual(await r.resolveTxt('features.test'), [['v=spf1 ip4:192.0.2.10 -all']]);
    assert.deepEqual((await call('DELETE', '/overrides')).body, { cleared: 3 });
    assert.deepEqual(await r.resolve4('host.features.test'), ['192.0.2.22']);
    assert.equal(readFileSync(file, 'utf8'), before);
  });

  test('faults can be set and lifted live: servfail, then none over the file\'s own fault', async () => {
    const r = resolver();
    await call('POST', '/overrides', { name: 'host.features.test', fault: 'servfail', types: ['A'] });
    await assert.rejects(r.resolve4('host.features.test'), { code: 'ESERVFAIL' });
    assert.deepEqual((await call('GET', '/overrides')).body, [{ name: 'host.features.test', fault: 'servfail', types: ['A'] }]);
    assert.deepEqual((await call('DELETE', '/overrides?name=host.features.test&type=fault')).body, { cleared: 1 });
    assert.deepEqual(await r.resolve4('host.features.test'), ['192.0.2.22']);
    // broken.features.test has ;@fault broken servfail in its file: "none" lifts it.
    await call('POST', '/overrides', { name: 'broken.features.test', fault: 'none' });
    assert.deepEqual(await r.resolveTxt('broken.features.test'), [['never seen']]);
    await call('DELETE', '/overrides');
    await assert.rejects(r.resolveTxt('broken.features.test'), { code: 'ESERVFAIL' });
    assert.match((await call('POST', '/overrides', { name: 'x.features.test', fault: 'explode' })).body.error, /"fault": unknown fault "explode"/);
  });

  test('bad overrides are refused with the reason', async () => {
    const bad = await call('POST', '/overrides', { name: 'host.features.test', type: 'A', values: ['300.1.1.1'] });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error, /"300.1.1.1" is not an IPv4 address/);
    assert.match((await call('POST', '/overrides', { name: 'x.features.test', type: 'HINFO', values: [] })).body.error, /"type" must be one of/);
    assert.match((await call('POST', '/overrides', { name: 'x.features.test', type: 'A', values: '192.0.2.1' })).body.error, /"values" must be a list/);
    const notJson = await fetch(controlUrl + '/overrides', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' });
    assert.equal(notJson.status, 400);
    assert.equal((await call('GET', '/nothing')).status, 404);
  });

  test('recent queries and the query log name the question, client, rcode and answer count', async () => {
    const r = resolver();
    await assert.rejects(r.resolveTxt('logged-nxdomain.features.test'));
    const { body } = await call('GET', '/queries?name=logged-nxdomain.features.test');
    assert.equal(body.length, 1);
    assert.equal(body[0].type, 'TXT');
    assert.equal(body[0].rcode, 'NXDOMAIN');
    assert.equal(body[0].client, '127.0.0.1');
    assert.equal(body[0].answers, 0);
    const line = logLines.find((l) => l.msg === 'query' && l.qname === 'logged-nxdomain.features.test');
    assert.ok(line, 'query logged');
    assert.equal(line.rcode, 'NXDOMAIN');
    assert.equal(line.transport, 'udp');
    // A pino line like the others: level, time and the logger's own fields.
    const other = logLines.find((l) => l.msg !== 'query')!;
    for (const key of ['level', 'pid', 'hostname']) assert.equal(line[key], other[key], key);
    assert.equal(typeof line.time, 'number');
  });

  test('the query log writes any name as valid JSON, in lower case', async () => {
    // dig's presentation format: \" is a quote and \\ a backslash inside a label.
    const r = await dig(dns.port, ['Qu\\"O\\\\te.features.test', 'TXT']);
    assert.equal(r.status, 'NXDOMAIN');
    const line = logLines.find((l) => l.msg === 'query' && l.qname === 'qu"o\\te.features.test');
    assert.ok(line, `no query line for qu"o\\te.features.test among ${logLines.filter((l) => l.msg === 'query').map((l) => l.qname).join(', ')}`);
    assert.equal(line.qtype, 'TXT');
  });
});

test('a port held by another program for TCP: start fails and leaves no socket open', async () => {
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  const { port } = holder.address() as { port: number };
  try {
    const server = new DnsServer({ listen: { host: '127.0.0.1', port }, zoneDir: dir, logger: pino({ level: 'silent' }) });
    await assert.rejects(server.start(), { code: 'EADDRINUSE' });
    // Its UDP socket is closed again: the port is free for UDP.
    const udp = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(port, '127.0.0.1', () => resolve());
    });
    udp.close();
  } finally {
    holder.close();
  }
});

describe('zone reload', () => {
  test('an edit is served within a second; a broken edit keeps the previous zone and logs file:line', async () => {
    const file = join(dir, 'other.test.zone');
    const original = readFileSync(file, 'utf8');
    const r = resolver();
    writeFileSync(file, original.replace('www         A   192.0.2.40', 'www         A   192.0.2.42'));
    const until = async (check: () => Promise<boolean>) => {
      const deadline = Date.now() + 1000;
      while (!(await check())) {
        if (Date.now() > deadline) return false;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return true;
    };
    assert.ok(await until(async () => (await r.resolve4('www.other.test'))[0] === '192.0.2.42'), 'new address within 1 s');
    writeFileSync(file, original + 'bad  A  not-an-address\n');
    assert.ok(
      await until(async () => logLines.some((l) => l.msg?.toString().startsWith('zone reload failed'))),
      'the failed reload is logged',
    );
    const failure = logLines.find((l) => l.msg?.toString().startsWith('zone reload failed'))!;
    assert.match(String(failure.error), /other\.test\.zone:7: "not-an-address" is not an IPv4 address/);
    assert.deepEqual(await r.resolve4('www.other.test'), ['192.0.2.42'], 'still the previous zone');
    writeFileSync(file, original);
    assert.ok(await until(async () => (await r.resolve4('www.other.test'))[0] === '192.0.2.40'));
  });
});
