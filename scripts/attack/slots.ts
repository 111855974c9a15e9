// Item 9: slots anyone could hold. 100 SMTP sessions kept alive with NOOP
// locked every other MTA out; 64 slow-header HTTP clients blocked an API for
// about 35 s; 256 trickling TCP clients held the DNS's TCP side for ever;
// a TCP client that never read made the DNS buffer every answer (+300 MB).
// Each attack holds what it can from one address and checks that another
// address is still served.
import type { Socket } from 'node:net';
import type { Endpoint } from '../../services/lib/config.ts';
import type { AttackLab } from './lab.ts';
import { open, rawHttp, RawSmtp, sleep, type Reply } from './net.ts';
import { memoryText, outcome, type Attack } from './report.ts';

const ATTACKER = '127.0.2.66'; // mta.attacker.test
const OTHER = '127.0.2.10'; // mta.sender.test, another MTA
const SMTP_PER_ADDRESS = 30; // limits.clientsPerAddress in instances/receiver.yaml
const HTTP_SLOW_CLIENTS = 64;
const HTTP_PER_ADDRESS = 32; // services/lib/http.ts: half the 64 connections
const HTTP_HEADERS_TIMEOUT_MS = 3000; // checked every 0.5 s: a slow client goes 3 to 3.5 s after it came
const HTTP_DROPPED_WITHIN_MS = 5000;
const DNS_TCP_PER_ADDRESS = 64; // services/dns/server.ts, DNS_TCP_CLIENTS_PER_ADDRESS
const DNS_TCP_IDLE_MS = 10_000; // DNS_TCP_IDLE_MS
const UNREAD_QUERIES = 40_000;
const DNS_PEAK_LIMIT_MiB = 32;

const smtpSessions: Attack = {
  item: 9,
  name: `${SMTP_PER_ADDRESS + 1} SMTP sessions from one address, held with NOOP`,
  expected: `${SMTP_PER_ADDRESS} greeted 220 and answered NOOP 250; session ${SMTP_PER_ADDRESS + 1} gets 421 4.7.0 (too many connections from 192.0.2.66) in place of the greeting; another MTA (192.0.2.10) is still greeted 220`,
  async run(lab) {
    const limit = lab.service('receiver').instance!.limits.clientsPerAddress;
    if (limit !== SMTP_PER_ADDRESS) throw new Error(`instances/receiver.yaml: limits.clientsPerAddress is ${limit}, the attack expects ${SMTP_PER_ADDRESS}`);
    const mx = lab.at('receiver', 'mx');
    const held: RawSmtp[] = [];
    const greetings: Reply[] = [];
    for (let i = 0; i < SMTP_PER_ADDRESS; i++) {
      const { smtp, greeting } = await RawSmtp.open(mx, ATTACKER);
      held.push(smtp);
      greetings.push(greeting);
    }
    const noops = await Promise.all(held.map((smtp) => smtp.command('NOOP')));
    const extra = await RawSmtp.open(mx, ATTACKER);
    const other = await RawSmtp.open(mx, OTHER);
    const ehlo = await other.smtp.command('EHLO mta.sender.test');
    return outcome(
      greetings.every((g) => g.code === 220) &&
        noops.every((n) => n.code === 250) &&
        /^421 4\.7\.0 .*Too many connections from 192\.0\.2\.66/.test(extra.greeting.text) &&
        other.greeting.code === 220 &&
        ehlo.code === 250,
      `${greetings.filter((g) => g.code === 220).length} greeted, ${noops.filter((n) => n.code === 250).length} NOOP 250; session ${SMTP_PER_ADDRESS + 1}: ${extra.greeting.text}; 192.0.2.10: ${other.greeting.text.slice(0, 3)}, EHLO ${ehlo.code}`,
    );
  },
};

const slowHeaders: Attack = {
  item: 9,
  name: `${HTTP_SLOW_CLIENTS} slow-header HTTP clients on the receiver's API from one address`,
  expected: `${HTTP_PER_ADDRESS} held, the others closed at once; a request from another address answered 200 within 1 s; the held ones answered 408 and closed within ${HTTP_DROPPED_WITHIN_MS / 1000} s (${HTTP_HEADERS_TIMEOUT_MS / 1000} s to send a request header)`,
  async run(lab) {
    const at = lab.at('receiver', 'api');
    const started = performance.now();
    const clients = await Promise.all(Array.from({ length: HTTP_SLOW_CLIENTS }, () => watched(open(at, ATTACKER), started)));
    // The request line and a header field, and never the empty line that ends the header.
    for (const c of clients) if (!c.socket.destroyed) c.socket.write(`GET /api/health HTTP/1.1\r\nHost: ${at.host}\r\n`);
    await sleep(500);
    const atOnce = clients.filter((c) => c.closedAfter !== undefined).length;
    const asked = performance.now();
    const answer = await rawHttp(at, `GET /api/health HTTP/1.1\r\nHost: ${at.host}\r\nConnection: close\r\n\r\n`, OTHER);
    const answeredIn = Math.round(performance.now() - asked);
    await Promise.race([Promise.all(clients.map((c) => c.closed)), sleep(HTTP_DROPPED_WITHIN_MS + 1000)]);
    const held = clients.filter((c) => c.closedAfter === undefined || c.closedAfter > 500);
    const slowest = Math.max(...held.map((c) => c.closedAfter ?? Infinity));
    const timedOut = held.filter((c) => /^HTTP\/1\.1 408 /.test(c.text)).length;
    return outcome(
      atOnce === HTTP_SLOW_CLIENTS - HTTP_PER_ADDRESS && answer.status === 200 && answeredIn < 1000 && timedOut === held.length && slowest <= HTTP_DROPPED_WITHIN_MS,
      `${atOnce} closed at once, ${held.length} held; 192.0.2.10 answered ${answer.status} in ${answeredIn} ms; the held ones: ${timedOut} × 408, the last closed after ${slowest === Infinity ? 'never' : `${(slowest / 1000).toFixed(1)} s`}`,
    );
  },
};

const tricklers: Attack = {
  item: 9,
  name: `${DNS_TCP_PER_ADDRESS + 1} DNS TCP clients from one address, trickling a query a byte a second`,
  expected: `${DNS_TCP_PER_ADDRESS} held, connection ${DNS_TCP_PER_ADDRESS + 1} closed at once; another address gets its answer over TCP meanwhile; the tricklers are cut off within ${DNS_TCP_IDLE_MS / 1000 + 2} s (no complete query in ${DNS_TCP_IDLE_MS / 1000} s)`,
  timeoutMs: 30_000,
  async run(lab) {
    const at = lab.at('dns', 'dns');
    const started = performance.now();
    const clients: Watched[] = [];
    for (let i = 0; i <= DNS_TCP_PER_ADDRESS; i++) clients.push(await watched(open(at, ATTACKER), started));
    const frame = queryFrame(1, 'mx.receiver.test', 1);
    let sent = 0;
    const trickle = setInterval(() => {
      for (const c of clients) if (!c.socket.destroyed) c.socket.write(frame.subarray(sent, sent + 1));
      sent++;
    }, 1000);
    try {
      await sleep(500);
      const atOnce = clients.filter((c) => c.closedAfter !== undefined).length;
      const answer = await tcpQuery(at, OTHER, 'mx.receiver.test');
      await Promise.race([Promise.all(clients.map((c) => c.closed)), sleep(DNS_TCP_IDLE_MS + 4000)]);
      const slowest = Math.max(...clients.map((c) => c.closedAfter ?? Infinity));
      return outcome(
        atOnce === 1 && answer.rcode === 0 && answer.answers > 0 && slowest <= DNS_TCP_IDLE_MS + 2000 && clients.every((c) => c.text === ''),
        `${atOnce} closed at once, ${clients.length - atOnce} held; 192.0.2.10 over TCP: rcode ${answer.rcode}, ${answer.answers} answer(s); the tricklers cut off by ${slowest === Infinity ? 'never' : `${(slowest / 1000).toFixed(1)} s`}, ${sent} bytes of ${frame.length} sent, ${clients.filter((c) => c.text !== '').length} answered`,
      );
    } finally {
      clearInterval(trickle);
    }
  },
};

const neverReads: Attack = {
  item: 9,
  name: `a DNS TCP client that never reads: ${UNREAD_QUERIES.toLocaleString('en')} queries for a 2 KB TXT answer`,
  expected: `the DNS stops reading once the client's answers pile up: far fewer than a quarter answered; its peak RSS rises by less than ${DNS_PEAK_LIMIT_MiB} MiB (it buffered every answer before)`,
  timeoutMs: 30_000,
  async run(lab) {
    const name = 'big.attacker.test';
    const control = `http://${lab.at('dns', 'control').host}:${lab.at('dns', 'control').port}/overrides`;
    await fetch(control, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, type: 'TXT', values: ['x'.repeat(2000)] }) });
    const answered = () => lab.logs('dns').filter((l) => l.msg === 'query' && l.qname === name && l.transport === 'tcp').length;
    try {
      const { memory } = await lab.memoryDuring('dns', async () => {
        const socket = await open(lab.at('dns', 'dns'), ATTACKER);
        socket.pause();
        socket.write(Buffer.concat(Array.from({ length: UNREAD_QUERIES }, (_, i) => queryFrame(i & 0xffff, name, 16))));
        // Until the count of answers in the DNS's query log stops growing.
        for (let before = -1, deadline = Date.now() + 10_000; answered() !== before && Date.now() < deadline; ) {
          before = answered();
          await sleep(1000);
        }
      });
      const count = answered();
      return outcome(
        count < UNREAD_QUERIES / 4 && memory.peakMiB - memory.rssBeforeMiB < DNS_PEAK_LIMIT_MiB,
        `${count} of ${UNREAD_QUERIES} answered, then no more read; ${memoryText(memory)}`,
        memory,
      );
    } finally {
      await fetch(`${control}?name=${name}`, { method: 'DELETE' });
    }
  },
};

interface Watched {
  socket: Socket;
  text: string; // what the server sent
  closedAfter?: number; // ms from the attack's start
  closed: Promise<void>;
}

// A connection whose answer and closing time are kept.
async function watched(connecting: Promise<Socket>, since: number): Promise<Watched> {
  const socket = await connecting;
  const c: Watched = { socket, text: '', closed: Promise.resolve() };
  socket.on('data', (chunk: Buffer) => (c.text += chunk.toString('latin1')));
  c.closed = new Promise((resolve) =>
    socket.once('close', () => {
      c.closedAfter = Math.round(performance.now() - since);
      resolve();
    }),
  );
  return c;
}

// A query as it goes over TCP: two-byte length, header, one question of class IN.
function queryFrame(id: number, name: string, type: number): Buffer {
  const labels = name.split('.').map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label)]));
  const query = Buffer.concat([Buffer.from([id >> 8, id & 0xff, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), ...labels, Buffer.from([0, type >> 8, type & 0xff, 0, 1])]);
  return Buffer.concat([Buffer.from([query.length >> 8, query.length & 0xff]), query]);
}

// One A query over TCP from localAddress: the answer's rcode and count.
async function tcpQuery(at: Endpoint, localAddress: string, name: string): Promise<{ rcode: number; answers: number }> {
  const socket = await open(at, localAddress);
  let received = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => (received = Buffer.concat([received, chunk])));
  socket.write(queryFrame(7, name, 1));
  for (const deadline = Date.now() + 3000; received.length < 2 || received.length < 2 + received.readUInt16BE(0); await sleep(10)) {
    if (Date.now() > deadline || socket.destroyed) throw new Error(`no answer over TCP from ${localAddress} within 3 s`);
  }
  socket.destroy();
  return { rcode: received[5] & 0x0f, answers: received.readUInt16BE(8) };
}

export const attacks: Attack[] = [smtpSessions, slowHeaders, tricklers, neverReads];
