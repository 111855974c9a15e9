// The DNS server's TCP side under clients that hold it: idle and trickling
// connections are closed, connections are limited in all and per address,
// and a client that never reads its answers cannot make the server buffer them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { DnsServer } from '../services/dns/server.ts';
import { dig } from './support/dig.ts';
import { requireTool } from './support/tools.ts';

const fixtures = new URL('./fixtures/zones/', import.meta.url).pathname;
const IDLE_MS = 200; // the server's idle timeout here; a connection lives at most 12 of these

let dir: string;
let dns: DnsServer;
const logLines: Record<string, unknown>[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dns-tcp-test-'));
  cpSync(fixtures, dir, { recursive: true });
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) logLines.push(JSON.parse(line));
      done();
    },
  });
  dns = new DnsServer({
    listen: { host: '127.0.0.1', port: 0 },
    zoneDir: dir,
    logger: pino({ level: 'debug' }, stream),
    tcp: { idleMs: IDLE_MS, clients: 6, clientsPerAddress: 3 },
  });
  await dns.start();
});

after(async () => {
  await dns?.close();
  rmSync(dir, { recursive: true, force: true });
});

// A query as it goes over TCP: two-byte length, header, one question of class IN.
function queryFrame(id: number, name: string, type: number): Buffer {
  const labels = name.split('.').map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label)]));
  const message = Buffer.concat([Buffer.from([id >> 8, id & 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]), ...labels, Buffer.from([0, type >> 8, type & 0xff, 0, 1])]);
  const frame = Buffer.alloc(2 + message.length);
  frame.writeUInt16BE(message.length, 0);
  message.copy(frame, 2);
  return frame;
}

interface Connection {
  socket: Socket;
  answers: { id: number; rcode: number; ancount: number }[];
  closed: Promise<number>; // ms from connect to close
}

async function open(localAddress = '127.0.0.1'): Promise<Connection> {
  const socket = connect({ host: '127.0.0.1', port: dns.port, localAddress });
  const started = Date.now();
  const answers: Connection['answers'] = [];
  let buffered = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
      const message = buffered.subarray(2, 2 + buffered.readUInt16BE(0));
      answers.push({ id: message.readUInt16BE(0), rcode: message[3] & 0x0f, ancount: message.readUInt16BE(6) });
      buffered = buffered.subarray(2 + message.length);
    }
  });
  socket.on('error', () => {}); // a reset by the server is what some tests expect
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - started)));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, answers, closed };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Resolves with the close time, or rejects when the connection is still open after ms.
function closedWithin(connection: Connection, ms: number): Promise<number> {
  return Promise.race([connection.closed, sleep(ms).then(() => Promise.reject(new Error(`still open after ${ms} ms`)))]);
}

async function until(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await sleep(10);
  }
  return true;
}

test('several queries on one connection, pipelined, each answered with its own ID', async () => {
  const c = await open();
  c.socket.write(Buffer.concat([queryFrame(1, 'host.features.test', 1), queryFrame(2, 'big.features.test', 16), queryFrame(3, 'nothing.features.test', 1)]));
  assert.ok(await until(() => c.answers.length === 3, 2000), `3 answers, got ${c.answers.length}`);
  assert.deepEqual(
    c.answers.map((a) => [a.id, a.rcode, a.ancount]).sort(),
    [[1, 0, 1], [2, 0, 8], [3, 3, 0]],
  );
  // Asking again before the idle timeout keeps the connection.
  await sleep(IDLE_MS / 2);
  c.socket.write(queryFrame(4, 'host.features.test', 1));
  assert.ok(await until(() => c.answers.length === 4, 2000));
  c.socket.destroy();
});

test('dig +tcp gets its answer', async (t) => {
  if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
  const r = await dig(dns.port, ['+tcp', 'big.features.test', 'TXT']);
  assert.equal(r.status, 'NOERROR');
  assert.equal(r.answer.length, 8);
});

test('an idle connection is closed after the idle timeout', async () => {
  const c = await open();
  const ms = await closedWithin(c, IDLE_MS * 5);
  assert.ok(ms >= IDLE_MS * 0.9, `closed after ${ms} ms, not before the timeout`);
  assert.ok(logLines.some((l) => l.msg === 'DNS TCP connection closed' && l.level === 20 && l.reason === 'no query for 200 ms'), 'a plainly idle client is logged at debug');
});

test('a client that trickles a query a byte at a time is cut off', async () => {
  const c = await open();
  const frame = queryFrame(5, 'host.features.test', 1);
  let sent = 0;
  // Each byte comes well within the idle timeout, but the query never completes in it.
  const trickle = setInterval(() => {
    if (sent < frame.length && !c.socket.destroyed) c.socket.write(frame.subarray(sent, ++sent));
  }, IDLE_MS / 4);
  try {
    await closedWithin(c, IDLE_MS * 5);
    assert.ok(sent < frame.length, 'cut off before the query was complete');
    assert.equal(c.answers.length, 0);
  } finally {
    clearInterval(trickle);
  }
  assert.ok(logLines.some((l) => l.msg === 'DNS TCP connection closed' && /no complete query for 200 ms \(\d+ bytes of one begun\)/.test(String(l.reason))));
});

test('a client that keeps asking is let go after the longest lifetime', async () => {
  const c = await open();
  let id = 100;
  const ask = setInterval(() => c.socket.writable && c.socket.write(queryFrame(id++, 'host.features.test', 1)), IDLE_MS / 4);
  try {
    const ms = await closedWithin(c, IDLE_MS * 12 + 2000);
    assert.ok(ms >= IDLE_MS * 12 * 0.9, `closed after ${ms} ms, while it kept asking`);
    assert.ok(c.answers.length > 20, `it was answered meanwhile (${c.answers.length})`);
  } finally {
    clearInterval(ask);
  }
  assert.ok(logLines.some((l) => l.msg === 'DNS TCP connection closed' && /the most a connection may/.test(String(l.reason))));
});

test('connections are limited per client address and in all, with the reason in the log', async () => {
  const held: Connection[] = [];
  try {
    for (let i = 0; i < 3; i++) held.push(await open('127.0.0.1'));
    const fourth = await open('127.0.0.1');
    fourth.socket.write(queryFrame(7, 'host.features.test', 1));
    await closedWithin(fourth, 1000);
    assert.equal(fourth.answers.length, 0);
    assert.ok(logLines.some((l) => l.msg === 'DNS TCP connection refused' && /3 TCP connections open from this address/.test(String(l.reason))));

    // Another address still gets in, up to the limit in all (6).
    for (let i = 0; i < 3; i++) held.push(await open('127.0.0.2'));
    for (const c of held) c.socket.write(queryFrame(8, 'host.features.test', 1));
    assert.ok(await until(() => held.every((c) => c.answers.length === 1), 2000), 'every held connection is answered');
    const seventh = await open('127.0.0.3');
    await closedWithin(seventh, 1000);
    assert.ok(logLines.some((l) => l.msg === 'DNS TCP connection refused' && /6 TCP connections open, the limit/.test(String(l.reason))));
  } finally {
    for (const c of held) c.socket.destroy();
  }
  await Promise.all(held.map((c) => c.closed));
  // Freed slots serve again.
  const again = await open('127.0.0.3');
  again.socket.write(queryFrame(9, 'host.features.test', 1));
  assert.ok(await until(() => again.answers.length === 1, 2000));
  again.socket.destroy();
});

test('a client that never reads its answers cannot make the server buffer them', async () => {
  // 40,000 queries of 35 bytes ask for 40,000 answers of 1.4 KB: 56 MB, far
  // more than the sockets' kernel buffers on both sides hold.
  const queries = 40_000;
  const burst = Buffer.concat(Array.from({ length: queries }, (_, i) => queryFrame(i & 0xffff, 'big.features.test', 16)));
  const answered = () => logLines.filter((l) => l.msg === 'query' && l.transport === 'tcp' && l.qname === 'big.features.test').length;
  const before = answered();
  const socket = connect({ host: '127.0.0.1', port: dns.port });
  socket.on('error', () => {});
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.pause(); // never reads
  socket.write(burst);
  // The server answers what the kernel takes, then stops reading; with nothing
  // more complete to read, the idle timeout closes the connection.
  const closings = () => logLines.filter((l) => l.msg === 'DNS TCP connection closed' && /client has not read its answers for 200 ms/.test(String(l.reason))).length;
  try {
    assert.ok(await until(() => closings() > 0, 5000), 'the server closes the connection');
    await sleep(50); // the query log is written at the end of a turn
    const count = answered() - before;
    assert.ok(count < queries / 4, `answered ${count} of ${queries} queries that the client never read`);
  } finally {
    socket.destroy();
  }
});

test('answers held back by a delay fault are bounded too: a client that piles them up is closed', async () => {
  const c = await open('127.0.0.4');
  c.socket.pause(); // never reads
  // slow.features.test is answered 400 ms late; 5,000 of its answers would be held meanwhile.
  c.socket.write(Buffer.concat(Array.from({ length: 5000 }, (_, i) => queryFrame(i, 'slow.features.test', 1))));
  assert.ok(
    await until(() => logLines.some((l) => l.msg === 'DNS TCP connection closed' && l.client === '127.0.0.4' && /client does not read its answers/.test(String(l.reason))), 2000),
    'closed for its unread answers',
  );
  c.socket.destroy();
});

test('the limits are settings of the server process, checked at start', () => {
  const main = new URL('../services/dns/main.ts', import.meta.url).pathname;
  const run = (env: Record<string, string>) =>
    spawnSync(process.execPath, [main], { env: { ...process.env, LOG_LEVEL: 'silent', DNS_LISTEN: '127.0.0.1:0', ZONE_DIR: dir, ...env }, encoding: 'utf8', timeout: 10_000 });
  const perAddress = run({ DNS_TCP_CLIENTS: '10', DNS_TCP_CLIENTS_PER_ADDRESS: '11' });
  assert.equal(perAddress.status, 2);
  assert.match(perAddress.stderr, /DNS_TCP_CLIENTS_PER_ADDRESS: "11" is not a whole number from 1 to 10/);
  const idle = run({ DNS_TCP_IDLE_MS: '0' });
  assert.equal(idle.status, 2);
  assert.match(idle.stderr, /DNS_TCP_IDLE_MS: "0" is not a whole number from 100 to 600000/);
});
