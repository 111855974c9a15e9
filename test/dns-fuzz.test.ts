// Robustness of the lab DNS server: tens of thousands of random and mutated
// packets over UDP, a few hundred over TCP (bad length prefixes, split frames,
// half-closed and reset connections), then proof that it still answers
// correctly. Every reply seen on the way must be a well-formed response to the
// query that caused it. Deterministic: FUZZ_SEED=<n> replays a run, and
// FUZZ_COUNT=<n> sends more (or fewer) UDP packets.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { connect } from 'node:net';
import { promises as dnsPromises } from 'node:dns';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Packet } from 'dns2';
import { DnsServer } from '../services/dns/server.ts';
import type { ZoneRecord } from '../services/dns/zone-file.ts';

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
const UDP_PACKETS = Number(process.env.FUZZ_COUNT ?? 20_000);
const BURST = 100; // packets in flight at once: well inside a socket buffer
const MARKER_TIMEOUT_MS = 1000;
const MAX_FAILURES_SHOWN = 10;

const TYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, OPT: 41, AXFR: 252, IXFR: 251, ANY: 255 };
const QUERY_TYPES = [TYPE.A, TYPE.NS, TYPE.SOA, TYPE.MX, TYPE.TXT, TYPE.AAAA, TYPE.PTR, TYPE.CNAME, TYPE.ANY];

// mulberry32: small, fast and the same on every machine.
function makeRandom(seed: number) {
  let state = seed;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    int,
    chance: (p: number) => next() < p,
    pick: <T>(items: readonly T[]): T => items[int(items.length)],
    bytes: (n: number) => Buffer.from(Array.from({ length: n }, () => int(256))),
  };
}
type Random = ReturnType<typeof makeRandom>;

// ---- building queries byte by byte (dns2 would refuse to encode the odd ones)

// A name in wire form; labels given as an array may hold dots of their own.
function encodeName(name: string | string[]): Buffer {
  const labels = (typeof name === 'string' ? name.split('.').filter(Boolean) : name).map((l) => Buffer.from(l, 'latin1'));
  return Buffer.concat([...labels.flatMap((l) => [Buffer.from([l.length]), l]), Buffer.from([0])]);
}

interface Opt {
  size?: number;
  version?: number;
  dnssecOk?: boolean;
  rdata?: Buffer;
}

function optRecord({ size = 1232, version = 0, dnssecOk = false, rdata = Buffer.alloc(0) }: Opt): Buffer {
  const record = Buffer.alloc(11);
  record.writeUInt16BE(TYPE.OPT, 1);
  record.writeUInt16BE(size, 3);
  record[6] = version;
  record[7] = dnssecOk ? 0x80 : 0;
  record.writeUInt16BE(rdata.length, 9);
  return Buffer.concat([record, rdata]);
}

interface QuerySpec {
  id?: number;
  flags?: number; // default: RD, opcode QUERY
  name: string;
  label?: string; // one more label in front of the name, written as it is
  qtype: number;
  qclass?: number;
  opt?: Opt;
}

function buildQuery({ id = 0, flags = 0x0100, name, label, qtype, qclass = 1, opt }: QuerySpec): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(flags, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(opt ? 1 : 0, 10);
  const question = Buffer.alloc(4);
  question.writeUInt16BE(qtype, 0);
  question.writeUInt16BE(qclass, 2);
  const labels = name.split('.').filter(Boolean);
  return Buffer.concat([header, encodeName(label === undefined ? labels : [label, ...labels]), question, opt ? optRecord(opt) : Buffer.alloc(0)]);
}

// ---- mutations of valid queries

const randomCase = (random: Random, name: string) =>
  [...name].map((c) => (random.chance(0.3) ? c.toUpperCase() : c)).join('');

function oddLabel(random: Random): string {
  const odd = ['.', '\0', '\xff', 'A', '-', '*', '\\', ' ', '\x80'];
  const label = Array.from({ length: 1 + random.int(8) }, () => (random.chance(0.5) ? random.pick(odd) : 'x')).join('');
  return random.chance(0.1) ? 'y'.repeat(63) : label;
}

// A packet whose question name is made of compression pointers that loop,
// point outside the packet, into the header, or chain on for a long way.
function pointerPacket(random: Random): Buffer {
  const header = Buffer.from([0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
  const pointer = (to: number) => Buffer.from([0xc0 | ((to >> 8) & 0x3f), to & 0xff]);
  const tail = Buffer.from([0, 1, 0, 1]);
  switch (random.int(6)) {
    case 0: // points at itself
      return Buffer.concat([header, pointer(12), tail]);
    case 1: // two pointers pointing at each other
      return Buffer.concat([header, pointer(14), pointer(12), tail]);
    case 2: // a label, then back to the start of the name
      return Buffer.concat([header, Buffer.from([3, 0x61, 0x62, 0x63]), pointer(12), tail]);
    case 3: // past the end of the packet
      return Buffer.concat([header, pointer(12 + random.int(0x3fff)), tail]);
    case 4: // into the header
      return Buffer.concat([header, pointer(random.int(12)), tail]);
    default: {
      // a long chain, each pointer to the one after it, ending in a real name
      const hops = 1 + random.int(120);
      const chain = Array.from({ length: hops }, (_, i) => pointer(12 + 2 * (i + 1)));
      return Buffer.concat([header, ...chain, encodeName('sender.test'), tail]);
    }
  }
}

function oddOpt(random: Random): Opt {
  const option = () => {
    const data = random.bytes(random.int(12));
    const head = Buffer.alloc(4);
    head.writeUInt16BE(random.pick([3, 8, 10, 12, 15, random.int(65536)]), 0);
    // sometimes an option length that does not match its data
    head.writeUInt16BE(random.chance(0.7) ? data.length : random.int(65536), 2);
    return Buffer.concat([head, data]);
  };
  return {
    size: random.pick([0, 1, 511, 512, 1232, 4096, 65535, random.int(65536)]),
    version: random.chance(0.5) ? 0 : random.int(256),
    dnssecOk: random.chance(0.5),
    rdata: random.chance(0.5) ? Buffer.alloc(0) : Buffer.concat(Array.from({ length: 1 + random.int(3) }, option)),
  };
}

type Mutation = (packet: Buffer, random: Random) => Buffer;

const mutations: Mutation[] = [
  function flipBits(packet, random) {
    const out = Buffer.from(packet);
    for (let n = 1 + random.int(8); n > 0; n--) out[random.int(out.length)] ^= 1 << random.int(8);
    return out;
  },
  function truncate(packet, random) {
    return packet.subarray(0, random.int(packet.length));
  },
  function appendBytes(packet, random) {
    return Buffer.concat([packet, random.bytes(1 + random.int(64))]);
  },
  function overwriteBytes(packet, random) {
    const out = Buffer.from(packet);
    for (let n = 1 + random.int(4); n > 0; n--) out[random.int(out.length)] = random.pick([0, 0x3f, 0x40, 0x7f, 0x80, 0xc0, 0xff, random.int(256)]);
    return out;
  },
  function insertOrDelete(packet, random) {
    const at = random.int(packet.length);
    if (random.chance(0.5)) return Buffer.concat([packet.subarray(0, at), packet.subarray(at + 1 + random.int(4))]);
    return Buffer.concat([packet.subarray(0, at), random.bytes(1 + random.int(4)), packet.subarray(at)]);
  },
  function oddHeaderFlags(packet, random) {
    if (packet.length < 12) return packet;
    const out = Buffer.from(packet);
    if (random.chance(0.5)) {
      out.writeUInt16BE(random.int(65536), 2);
    } else {
      // one field at a time: QR, opcode, AA, TC, Z, AD, CD, rcode
      const field = random.pick([0x8000, 0x7800, 0x0400, 0x0200, 0x0040, 0x0020, 0x0010, 0x000f]);
      out.writeUInt16BE((out.readUInt16BE(2) & ~field) | (random.int(65536) & field), 2);
    }
    return out;
  },
  function oddCounts(packet, random) {
    if (packet.length < 12) return packet;
    const out = Buffer.from(packet);
    for (const at of [4, 6, 8, 10]) {
      if (random.chance(0.4)) out.writeUInt16BE(random.pick([0, 1, 2, 0xffff, random.int(65536)]), at);
    }
    return out;
  },
];

// One fuzz packet: a mutated query most of the time, otherwise pure noise or a
// purpose-built odd packet.
function fuzzPacket(random: Random, seeds: QuerySpec[]): Buffer {
  const roll = random.int(100);
  if (roll < 10) {
    // mostly small, now and then a big one
    const length = random.chance(0.005) ? 60_000 + random.int(5_000) : random.pick([0, 1, 2, 11, 12, 13, 17, random.int(600)]);
    return random.bytes(length);
  }
  if (roll < 15) return pointerPacket(random);
  const spec: QuerySpec = { ...random.pick(seeds) };
  if (roll < 25) spec.opt = oddOpt(random);
  else if (roll < 30) spec.qtype = random.pick([0, TYPE.OPT, TYPE.AXFR, TYPE.IXFR, 250, 253, 254, 65535, random.int(65536)]);
  else if (roll < 35) spec.qclass = random.pick([0, 2, 3, 4, 254, 255, random.int(65536)]);
  else if (roll < 40) spec.label = oddLabel(random);
  let packet = buildQuery(spec);
  if (roll >= 40 || random.chance(0.3)) {
    for (let n = 1 + random.int(3); n > 0 && packet.length > 0; n--) packet = random.pick(mutations)(packet, random);
  }
  return packet;
}

// ---- checking replies

// Why this reply is wrong for this query, or undefined when it is fine.
function replyProblem(query: Buffer, reply: Buffer, transport: 'udp' | 'tcp'): string | undefined {
  if ((query[2] & 0x80) !== 0) return 'answered a packet that is itself a response (QR=1)';
  if (reply.length < 12) return `reply of ${reply.length} bytes`;
  if (reply.readUInt16BE(0) !== query.readUInt16BE(0)) return 'reply ID differs from the query ID';
  if ((reply[2] & 0x80) === 0) return 'reply has QR=0';
  let parsed: InstanceType<typeof Packet>;
  try {
    parsed = Packet.parse(reply);
  } catch (error) {
    return `reply does not parse: ${(error as Error).message}`;
  }
  if (parsed.errors.length > 0) return `reply has bad records: ${parsed.errors[0].message}`;
  if (![0, 1, 2, 3, 4, 5, 16].includes(parsed.header.rcode)) return `unexpected rcode ${parsed.header.rcode}`;
  if (parsed.questions.length > 1) return `reply has ${parsed.questions.length} questions`;
  let asked: InstanceType<typeof Packet> | undefined;
  try {
    asked = Packet.parse(query);
  } catch {
    // an unparsable query: any well-formed error reply will do
  }
  // Without additional records a query has no OPT, so the reply has none
  // either (RFC 6891 section 7) and fits in 512 bytes.
  const mayHaveOpt = query.length >= 12 && query.readUInt16BE(10) > 0;
  if (transport === 'udp' && reply.length > (mayHaveOpt ? 1232 : 512)) return `UDP reply of ${reply.length} bytes`;
  if (!mayHaveOpt && parsed.additionals.some((r) => r.type === TYPE.OPT)) return 'reply has an OPT record, the query had none';
  const question = asked?.questions.length === 1 && asked.errors.length === 0 ? asked.questions[0] : undefined;
  const echoed = parsed.questions[0];
  if (question && echoed) {
    if (echoed.name !== question.name || echoed.type !== question.type || echoed.class !== question.class) {
      return `reply question ${JSON.stringify(echoed.name)}/${echoed.type}/${echoed.class} differs from the query's ${JSON.stringify(question.name)}/${question.type}/${question.class}`;
    }
  }
  return undefined;
}

// Collects problems, keeping a few reproducers (the query in hex).
class Findings {
  problems = new Map<string, { count: number; query: string }>();
  add(problem: string, query: Buffer): void {
    const seen = this.problems.get(problem);
    if (seen) seen.count++;
    else this.problems.set(problem, { count: 1, query: query.toString('hex') });
  }
  report(): string {
    return [...this.problems]
      .slice(0, MAX_FAILURES_SHOWN)
      .map(([problem, { count, query }]) => `${problem} (x${count}); query ${query}`)
      .join('\n');
  }
}

// ---- the server under test

let dns: DnsServer;
let seeds: QuerySpec[];
let maxDelayMs = 0;
const uncaught: unknown[] = [];
const onUncaught = (error: unknown) => uncaught.push(error);
const serverErrors: string[] = []; // what the server logged at level error

before(async () => {
  process.on('uncaughtException', onUncaught);
  const sink = new Writable({
    write(chunk, _encoding, done) {
      serverErrors.push(String(chunk));
      done();
    },
  });
  const zoneDir = join(import.meta.dirname, '..', 'dns-zone');
  dns = new DnsServer({ listen: { host: '127.0.0.1', port: 0 }, zoneDir, logger: pino({ level: 'error' }, sink) });
  await dns.start();
  // Every owner name of the lab zones, asked for each common type, with and
  // without EDNS, in random letter case, and names that do not exist.
  const names = [...new Set(dns.zones.zones.flatMap((z) => z.records.map((r) => r.name)))];
  names.push('nx.sender.test', 'example.com', '');
  const random = makeRandom(SEED);
  seeds = names.flatMap((name) =>
    QUERY_TYPES.map((qtype) => ({
      name: randomCase(random, name),
      qtype,
      opt: random.chance(0.5) ? { dnssecOk: random.chance(0.3), size: random.pick([512, 1232, 4096]) } : undefined,
    })),
  );
  maxDelayMs = Math.max(0, ...dns.zones.zones.flatMap((z) => z.faults.map((f) => f.delayMs)));
});

after(async () => {
  await dns?.close();
  process.off('uncaughtException', onUncaught);
});

function udpClient(): Promise<Socket> {
  const socket = createSocket('udp4');
  return new Promise((resolve) => socket.bind(0, '127.0.0.1', () => resolve(socket)));
}

// One question over UDP; the reply, or undefined after the timeout.
async function ask(packet: Buffer, timeoutMs = 500): Promise<Buffer | undefined> {
  const socket = await udpClient();
  try {
    return await new Promise((resolve) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs);
      socket.on('message', (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      socket.send(packet, dns.port, '127.0.0.1');
    });
  } finally {
    socket.close();
  }
}

test(`UDP: ${UDP_PACKETS} random and mutated packets (FUZZ_SEED=${SEED})`, async (t) => {
  t.diagnostic(`FUZZ_SEED=${SEED}`);
  const random = makeRandom(SEED);
  const socket = await udpClient();
  t.after(() => socket.close());
  socket.setRecvBufferSize(4 * 1024 * 1024);
  const sent = new Map<number, Buffer>(); // ID -> the packet that carried it
  const answered = new Set<number>();
  const findings = new Findings();
  let markerWaiting: { id: number; done: () => void } | undefined;
  let replies = 0;
  socket.on('message', (reply) => {
    if (reply.length < 2) return findings.add(`reply of ${reply.length} bytes`, Buffer.alloc(0));
    const id = reply.readUInt16BE(0);
    if (markerWaiting?.id === id) return markerWaiting.done();
    const query = sent.get(id);
    if (!query) return findings.add('reply with an ID that no query had', reply);
    if (answered.has(id)) return findings.add('two replies to one query', query);
    answered.add(id);
    replies++;
    const problem = replyProblem(query, reply, 'udp');
    if (problem) findings.add(problem, query);
  });
  // A valid query after each burst: its answer means the burst was handled.
  const marker = async (id: number) => {
    const packet = buildQuery({ id, name: 'sender.test', qtype: TYPE.A });
    for (let attempt = 0; attempt < 3; attempt++) {
      const answeredInTime = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), MARKER_TIMEOUT_MS);
        markerWaiting = { id, done: () => (clearTimeout(timer), resolve(true)) };
        socket.send(packet, dns.port, '127.0.0.1');
      });
      if (answeredInTime) return;
    }
    assert.fail(`the server stopped answering (no reply to a valid query after packet ${sent.size}, FUZZ_SEED=${SEED})`);
  };
  // IDs 0..UDP_PACKETS-1 go to fuzz packets (fuzzing the ID itself is
  // pointless); markers use IDs from 65535 down.
  assert.ok(UDP_PACKETS + UDP_PACKETS / BURST < 65536, 'FUZZ_COUNT must leave room for unique IDs');
  let id = 0;
  for (let burst = 0; id < UDP_PACKETS; burst++) {
    const sends: Promise<void>[] = [];
    for (let n = 0; n < BURST && id < UDP_PACKETS; n++, id++) {
      const packet = fuzzPacket(random, seeds);
      if (packet.length >= 2) {
        packet.writeUInt16BE(id, 0);
        sent.set(id, packet);
      }
      sends.push(new Promise((resolve) => socket.send(packet, dns.port, '127.0.0.1', () => resolve())));
    }
    await Promise.all(sends);
    await marker(65535 - burst);
  }
  // Answers that a delay fault holds back arrive last.
  await new Promise((resolve) => setTimeout(resolve, Math.min(maxDelayMs, 5000) + 200));
  t.diagnostic(`${UDP_PACKETS} packets sent, ${replies} answered`);
  assert.equal(findings.problems.size, 0, `FUZZ_SEED=${SEED}\n${findings.report()}`);
  assert.ok(replies > UDP_PACKETS / 10, `only ${replies} replies`);
});

// ---- TCP

interface TcpRun {
  frames: Buffer[];
  closedByServer: boolean;
}

// Writes the chunks (pausing between them), half-closes if asked, and
// collects the framed replies until the server closes or waitMs passes.
function tcpSession(chunks: Buffer[], { halfClose = true, waitMs = 1500, reset = false } = {}): Promise<TcpRun> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port: dns.port, allowHalfOpen: true });
    socket.setNoDelay(true);
    let data = Buffer.alloc(0);
    let closedByServer = false;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.destroy();
      const frames: Buffer[] = [];
      for (let at = 0; at + 2 <= data.length && at + 2 + data.readUInt16BE(at) <= data.length; ) {
        const length = data.readUInt16BE(at);
        frames.push(data.subarray(at + 2, at + 2 + length));
        at += 2 + length;
      }
      resolve({ frames, closedByServer });
    };
    // waitMs counts from the last write: a fuzzed message of 64 KB in 1-to-40-byte
    // pieces takes seconds to write, and its answers cannot come before it is.
    let timer = setTimeout(finish, 30_000);
    socket.on('data', (chunk) => (data = Buffer.concat([data, chunk])));
    socket.on('end', () => ((closedByServer = true), finish()));
    socket.on('error', finish);
    socket.on('close', finish);
    socket.on('connect', async () => {
      for (const chunk of chunks) {
        socket.write(chunk);
        await new Promise((r) => setTimeout(r, 1));
      }
      if (reset) socket.resetAndDestroy();
      else if (halfClose) socket.end();
      clearTimeout(timer);
      if (!finished) timer = setTimeout(finish, waitMs);
    });
  });
}

const frame = (message: Buffer) => Buffer.concat([Buffer.from([message.length >> 8, message.length & 0xff]), message]);

test('TCP: pipelined, split, badly framed, half-closed and reset connections', async () => {
  const random = makeRandom(SEED ^ 0x5eed);
  const findings = new Findings();
  let messages = 0;
  const check = (queries: Buffer[], run: TcpRun) => {
    const byId = new Map(queries.filter((q) => q.length >= 2).map((q) => [q.readUInt16BE(0), q]));
    for (const reply of run.frames) {
      const query = reply.length >= 2 ? byId.get(reply.readUInt16BE(0)) : undefined;
      if (!query) findings.add('TCP reply with an ID that no query had', reply);
      else {
        byId.delete(reply.readUInt16BE(0));
        const problem = replyProblem(query, reply, 'tcp');
        if (problem) findings.add(`TCP: ${problem}`, query);
      }
    }
  };
  const faulty = new Set(dns.zones.zones.flatMap((z) => z.faults.map((f) => f.name)));
  const healthy = seeds.filter((s) => !faulty.has(s.name.toLowerCase()));
  const valid = (id: number) => buildQuery({ ...random.pick(healthy), id, qtype: TYPE.MX });

  // 40 connections, each pipelining 8 messages (valid and fuzzed) in one
  // write or in random pieces, then half-closing: a client may do that and
  // still expect every answer.
  for (let c = 0; c < 40; c++) {
    const queries = Array.from({ length: 8 }, (_, i) => {
      const q = i % 2 ? fuzzPacket(random, seeds) : valid(0);
      if (q.length >= 2) q.writeUInt16BE(c * 8 + i, 0);
      return q;
    });
    messages += queries.length;
    const stream = Buffer.concat(queries.map(frame));
    const chunks: Buffer[] = [];
    if (c % 2) {
      for (let at = 0; at < stream.length; ) {
        const size = 1 + random.int(40);
        chunks.push(stream.subarray(at, at + size));
        at += size;
      }
    } else chunks.push(stream);
    const run = await tcpSession(chunks);
    check(queries, run);
    // The valid ones (even positions) must all be answered, whatever the
    // fuzzed ones between them did.
    const answered = new Set(run.frames.filter((f) => f.length >= 2).map((f) => f.readUInt16BE(0)));
    for (let i = 0; i < 8; i += 2) assert.ok(answered.has(c * 8 + i), `valid query ${i} on connection ${c} not answered`);
  }

  // Bad framing: each is followed by a valid query where the stream still allows one.
  const v = [1, 2, 3, 4, 5, 6].map(valid);
  const cases: { name: string; chunks: Buffer[]; answer?: Buffer }[] = [
    { name: 'empty message', chunks: [Buffer.from([0, 0]), frame(v[0])], answer: v[0] },
    { name: 'one-byte message', chunks: [frame(Buffer.from([7])), frame(v[1])], answer: v[1] },
    { name: 'eleven-byte message', chunks: [frame(random.bytes(11)), frame(v[2])], answer: v[2] },
    { name: 'half a length prefix', chunks: [Buffer.from([0])] },
    { name: 'length longer than the data', chunks: [Buffer.from([1, 0x2c]), v[3]] },
    { name: 'length 65535, short data', chunks: [Buffer.from([0xff, 0xff]), random.bytes(1000)] },
    { name: 'length 65535, full of noise', chunks: [frame(Buffer.concat([Buffer.from([0xff, 0xff, 0x80]), random.bytes(65532)])), frame(v[4])], answer: v[4] },
    // All but its last byte: a cut at a fixed 20 bytes kept the whole of a short query (the root's is 17).
    { name: 'length shorter than the query', chunks: [frame(v[5]).subarray(0, v[5].length + 1)] },
    { name: 'nothing at all', chunks: [] },
  ];
  for (const { name, chunks, answer } of cases) {
    const run = await tcpSession(chunks);
    messages++;
    assert.ok(run.closedByServer, `${name}: the server did not close after the client half-closed`);
    assert.equal(run.frames.length, answer ? 1 : 0, `${name}: ${run.frames.length} replies`);
    if (answer) check([answer], run);
  }

  // An idle half-open client (no FIN) must not block others, and clients
  // that reset right after asking must not upset the server.
  const idle = tcpSession([Buffer.from([0, 40])], { halfClose: false, waitMs: 1500 });
  for (let c = 0; c < 20; c++) {
    await tcpSession([frame(valid(7)), frame(valid(8))], { reset: true });
    messages += 2;
  }
  const concurrent = await Promise.all(Array.from({ length: 30 }, (_, c) => tcpSession([frame(valid(1000 + c))])));
  messages += concurrent.length;
  concurrent.forEach((run, c) => assert.deepEqual(run.frames.map((f) => f.readUInt16BE(0)), [1000 + c]));
  assert.equal((await idle).frames.length, 0);

  assert.ok(messages >= 300, `only ${messages} TCP messages`);
  assert.equal(findings.problems.size, 0, `FUZZ_SEED=${SEED}\n${findings.report()}`);
});

test('specific bad inputs get specific rcodes', async () => {
  const parse = async (packet: Buffer) => {
    const reply = await ask(packet);
    assert.ok(reply, 'no reply');
    assert.equal(reply.readUInt16BE(0), packet.readUInt16BE(0), 'reply ID');
    return Packet.parse(reply);
  };
  const q = (spec: Partial<QuerySpec>) => buildQuery({ id: 0x1234, name: 'sender.test', qtype: TYPE.A, ...spec });

  const headerOnly = Buffer.from([0x12, 0x34, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  assert.equal((await parse(headerOnly)).header.rcode, 1, 'QDCOUNT=0: FORMERR');

  const two = Buffer.concat([q({}), encodeName('receiver.test'), Buffer.from([0, 1, 0, 1])]);
  two.writeUInt16BE(2, 4);
  assert.equal((await parse(two)).header.rcode, 1, 'QDCOUNT=2: FORMERR');

  assert.equal((await parse(q({ flags: 2 << 11 }))).header.rcode, 4, 'opcode STATUS: NOTIMP');

  const badvers = await parse(q({ opt: { version: 1 } }));
  assert.equal(badvers.header.rcode, 16, 'EDNS version 1: BADVERS');
  assert.equal(badvers.additionals.filter((r) => r.type === TYPE.OPT).length, 1, 'BADVERS comes with an OPT record');

  assert.equal((await parse(q({ qclass: 3 }))).header.rcode, 5, 'class CH: REFUSED');
  assert.equal((await parse(q({ qtype: TYPE.AXFR }))).header.rcode, 5, 'AXFR: REFUSED');

  assert.equal(await ask(q({ flags: 0x8000 }), 300), undefined, 'QR=1: no answer');
  assert.ok(await ask(q({})), 'and a normal query after it is answered');
});

// A label may hold any byte, a dot too (RFC 1035 section 3.1, RFC 4343
// section 2.1): "mta\\.sender" is one label, and names no host of the lab.
test('a dot inside a label is part of that label', async () => {
  for (const label of ['mta.sender', '.sender', 'a..b', 'mta.']) {
    const query = buildQuery({ id: 0x4321, label, name: 'test', qtype: TYPE.A });
    const reply = await ask(query);
    assert.ok(reply, `${JSON.stringify(label)}: no reply`);
    assert.equal(replyProblem(query, reply, 'udp'), undefined, JSON.stringify(label));
    assert.equal(Packet.parse(reply).header.rcode, 3, `${JSON.stringify(label)}.test: NXDOMAIN`);
  }
});

test('after all that, 200 valid questions are answered correctly and promptly', async () => {
  // Names and types that the zones hold and no fault touches.
  const faulty = new Set(dns.zones.zones.flatMap((z) => z.faults.map((f) => f.name)));
  const rrsets = new Map<string, ZoneRecord[]>();
  for (const zone of dns.zones.zones) {
    for (const record of zone.records) {
      if (!['A', 'AAAA', 'MX', 'TXT'].includes(record.type) || faulty.has(record.name)) continue;
      rrsets.set(`${record.name} ${record.type}`, dns.zones.rrset(record.name, record.type));
    }
  }
  const keys = [...rrsets.keys()];
  assert.ok(keys.length > 10, 'the zones hold enough names');

  const resolver = new dnsPromises.Resolver({ timeout: 1000, tries: 1 });
  resolver.setServers([`127.0.0.1:${dns.port}`]);
  const resolveOne = async (key: string) => {
    const [name, type] = key.split(' ');
    const expected = rrsets.get(key)!;
    const sorted = (items: unknown[]) => items.map((i) => JSON.stringify(i)).sort();
    if (type === 'A') assert.deepEqual(sorted(await resolver.resolve4(name)), sorted(expected.map((r) => (r as { address: string }).address)), key);
    if (type === 'AAAA') assert.deepEqual(sorted(await resolver.resolve6(name)), sorted(expected.map((r) => (r as { address: string }).address)), key);
    if (type === 'MX') {
      const mx = expected.map((r) => ({ exchange: (r as { exchange: string }).exchange, priority: (r as { priority: number }).priority }));
      const got = (await resolver.resolveMx(name)).map(({ exchange, priority }) => ({ exchange, priority }));
      assert.deepEqual(sorted(got), sorted(mx), key);
    }
    if (type === 'TXT') {
      const txt = expected.map((r) => (r as { data: Buffer[] }).data.map((s) => s.toString()));
      assert.deepEqual(sorted(await resolver.resolveTxt(name)), sorted(txt), key);
    }
  };
  const started = Date.now();
  for (let i = 0; i < 200; i += 20) {
    await Promise.all(Array.from({ length: 20 }, (_, j) => resolveOne(keys[(i + j) % keys.length])));
  }
  const elapsed = Date.now() - started;
  assert.ok(elapsed < 3000, `200 questions took ${elapsed} ms`);
});

test('the server neither threw nor logged an error', () => {
  assert.deepEqual(uncaught, []);
  assert.deepEqual(serverErrors, []);
});
