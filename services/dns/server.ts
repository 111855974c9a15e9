// The lab's authoritative DNS server: UDP and TCP on one address, every zone
// of a directory, reloaded on edit, each query logged and kept for the
// control endpoint.
import { createSocket, type Socket } from 'node:dgram';
import { watch, type FSWatcher } from 'node:fs';
import { createServer, type Server, type Socket as TcpSocket } from 'node:net';
import { isIPv6 } from 'node:net';
import type { Logger } from '../lib/log.ts';
import type { Endpoint } from '../lib/config.ts';
import { labAddress } from '../lib/addressing.ts';
import { QueryLog, type LoggedQuery } from './query-log.ts';
import { Responder, type Reply } from './responder.ts';
import { loadZoneDir, ZoneSet } from './zones.ts';

const RCODE_NAMES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];
const RECENT_QUERIES = 1000;
const TCP_LIFETIME_IDLE_PERIODS = 12; // 2 minutes at the default idle timeout
// Answers a client has not read yet, per connection: past the first, no more
// of its queries are read until it reads; past the second (answers of delay
// faults pile up without stopping the reading), it is closed.
const TCP_UNSENT_PAUSE = 16 * 1024;
const TCP_UNSENT_MAX = 64 * 1024;
const RELOAD_SETTLE_MS = 100; // editors write in several steps
const KNOWN_CLIENTS = 1024;
const PORT_ATTEMPTS = 5;

export interface QueryRecord {
  time: string;
  client: string;
  transport: 'udp' | 'tcp';
  name: string;
  type: string;
  rcode: string;
  answers: number;
  truncated?: boolean;
  fault?: string;
}

// What one client can hold of the TCP side (RFC 7766 section 6.2.3; BIND's
// tcp-clients and tcp-idle-timeout).
export interface TcpLimits {
  clients: number; // connections at once, in all
  clientsPerAddress: number; // connections at once from one client address
  idleMs: number; // a connection without a complete query for this long is closed
}

export const DEFAULT_TCP_LIMITS: TcpLimits = { clients: 256, clientsPerAddress: 64, idleMs: 10_000 };

export interface DnsServerOptions {
  listen: Endpoint;
  zoneDir: string;
  logger: Logger;
  tcp?: Partial<TcpLimits>;
}

export class DnsServer {
  readonly zones = new ZoneSet();
  private responder = new Responder(this.zones);
  private udp?: Socket;
  private tcp?: Server;
  private watcher?: FSWatcher;
  private reloadTimer?: NodeJS.Timeout;
  private pending = new Set<NodeJS.Timeout>();
  private recent: LoggedQuery[] = []; // a ring of the last RECENT_QUERIES
  private recentTimes = new Float64Array(RECENT_QUERIES);
  private recentNext = 0;
  private options: DnsServerOptions;
  private log: Logger;
  private queryLog: QueryLog;
  private clients = new Map<string, string>(); // socket address -> lab address, for the log
  private tcpLimits: TcpLimits;
  private tcpOpen = new Set<TcpSocket>();
  private tcpPerAddress = new Map<string, number>();

  constructor(options: DnsServerOptions) {
    this.options = options;
    this.log = options.logger;
    this.queryLog = new QueryLog(options.logger);
    this.tcpLimits = { ...DEFAULT_TCP_LIMITS, ...options.tcp };
  }

  // Loads the zones (an error here stops the start) and opens both sockets.
  async start(): Promise<void> {
    this.zones.replaceFiles(loadZoneDir(this.options.zoneDir));
    const { host, port } = this.options.listen;
    // With port 0 the system picks a free UDP port, and TCP takes the same
    // number, which something else may hold for TCP: then another pick.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.open(host, port);
        break;
      } catch (error) {
        await this.closeSockets(); // a socket left open would keep the process alive
        if (port !== 0 || attempt === PORT_ATTEMPTS || (error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
      }
    }
    this.watcher = watch(this.options.zoneDir, () => this.scheduleReload());
    this.log.info({ listen: `${host}:${this.port}`, zones: this.zones.zones.length }, 'DNS server listening (UDP and TCP)');
  }

  private async open(host: string, port: number): Promise<void> {
    this.udp = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' });
    this.udp.on('message', (packet, peer) => this.onUdp(packet, peer.address, peer.port));
    this.udp.on('error', (error) => this.log.error({ err: error }, 'UDP socket error'));
    await new Promise<void>((resolve, reject) => {
      this.udp!.once('error', reject);
      this.udp!.bind(port, host, () => resolve());
    });
    // TCP on the same port as UDP, also when port 0 let the system choose.
    this.tcp = createServer({ allowHalfOpen: false, highWaterMark: TCP_UNSENT_PAUSE }, (socket) => this.onTcp(socket));
    await new Promise<void>((resolve, reject) => {
      this.tcp!.once('error', reject);
      this.tcp!.listen(this.udp!.address().port, host, () => resolve());
    });
  }

  get port(): number {
    return this.udp!.address().port;
  }

  recentQueries(): QueryRecord[] {
    const order = [...this.recent.keys()].map((i) => (this.recentNext + i) % this.recent.length).reverse();
    return order.map((i) => {
      const { qname, qtype, ...rest } = this.recent[i];
      return { time: new Date(this.recentTimes[i]).toISOString(), name: qname, type: qtype, ...rest };
    });
  }

  // Reads the directory again; a broken file keeps the previous zones serving.
  reload(): boolean {
    try {
      this.zones.replaceFiles(loadZoneDir(this.options.zoneDir));
      this.log.info({ zones: this.zones.zones.length, generation: this.zones.generation }, 'zones reloaded');
      return true;
    } catch (error) {
      this.log.error({ error: (error as Error).message }, 'zone reload failed; still serving the previous zones');
      return false;
    }
  }

  async close(): Promise<void> {
    this.queryLog.flush();
    this.watcher?.close();
    clearTimeout(this.reloadTimer);
    for (const timer of this.pending) clearTimeout(timer);
    for (const socket of this.tcpOpen) socket.destroy();
    await this.closeSockets();
  }

  private async closeSockets(): Promise<void> {
    const { udp, tcp } = this;
    this.udp = undefined;
    this.tcp = undefined;
    await Promise.all([
      new Promise<void>((resolve) => {
        try {
          udp!.close(() => resolve());
        } catch {
          resolve(); // none, or never bound
        }
      }),
      new Promise<void>((resolve) => (tcp?.listening ? tcp.close(() => resolve()) : resolve())),
    ]);
  }

  private scheduleReload(): void {
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => this.reload(), RELOAD_SETTLE_MS);
  }

  private onUdp(packet: Buffer, address: string, port: number): void {
    const reply = this.answer(packet, 'udp', address);
    if (reply.response) this.later(reply.delayMs, () => this.udp!.send(reply.response!, port, address));
  }

  private onTcp(socket: TcpSocket): void {
    const client = socket.remoteAddress ?? '';
    const { clients, clientsPerAddress, idleMs } = this.tcpLimits;
    const fromClient = this.tcpPerAddress.get(client) ?? 0;
    const refusal =
      this.tcpOpen.size >= clients ? `${clients} TCP connections open, the limit`
      : fromClient >= clientsPerAddress ? `${clientsPerAddress} TCP connections open from this address, the limit per address`
      : undefined;
    if (refusal) {
      this.log.warn({ client: this.clientAddress(client), reason: refusal }, 'DNS TCP connection refused');
      socket.destroy();
      return;
    }
    this.tcpOpen.add(socket);
    this.tcpPerAddress.set(client, fromClient + 1);
    const closeFor = (reason: string, level: 'warn' | 'debug' = 'warn') => {
      this.log[level]({ client: this.clientAddress(client), reason }, 'DNS TCP connection closed');
      socket.destroy();
    };
    let buffered = Buffer.alloc(0);
    // Idle means no complete query, so a byte now and then does not keep the
    // connection; a client that keeps asking is still let go after a while.
    // A client that simply stays connected is routine, hence only debug.
    const idle = setTimeout(() => {
      if (socket.writableNeedDrain) closeFor(`client has not read its answers for ${idleMs} ms (${socket.writableLength} bytes unsent)`);
      else if (buffered.length) closeFor(`no complete query for ${idleMs} ms (${buffered.length} bytes of one begun)`);
      else closeFor(`no query for ${idleMs} ms`, 'debug');
    }, idleMs);
    const lifetime = setTimeout(() => closeFor(`open for ${idleMs * TCP_LIFETIME_IDLE_PERIODS} ms, the most a connection may`), idleMs * TCP_LIFETIME_IDLE_PERIODS);
    socket.once('close', () => {
      clearTimeout(idle);
      clearTimeout(lifetime);
      this.tcpOpen.delete(socket);
      const left = this.tcpPerAddress.get(client)! - 1;
      if (left === 0) this.tcpPerAddress.delete(client);
      else this.tcpPerAddress.set(client, left);
    });
    socket.on('error', () => socket.destroy());

    let delayedBytes = 0; // answers held back by a delay fault, not yet written
    // Answers the complete queries in hand; stops when the client is not
    // reading its answers (write() said so) and goes on at 'drain', so what a
    // non-reading client asks waits in its own socket, not in our memory.
    const answerQueued = () => {
      // RFC 1035 section 4.2.2: each message has a two-byte length in front.
      while (buffered.length >= 2 && !socket.destroyed) {
        if (socket.writableNeedDrain) {
          socket.pause();
          return;
        }
        const length = buffered.readUInt16BE(0);
        if (buffered.length < 2 + length) break;
        const packet = buffered.subarray(2, 2 + length);
        buffered = buffered.subarray(2 + length);
        idle.refresh();
        const reply = this.answer(packet, 'tcp', client);
        if (!reply.response) continue;
        const frame = Buffer.allocUnsafe(2 + reply.response.length);
        frame.writeUInt16BE(reply.response.length, 0);
        reply.response.copy(frame, 2);
        // Answers written at once stop the reading (above); delayed ones do
        // not, so they are bounded here, one answer of any size always allowed.
        const unsent = socket.writableLength + delayedBytes;
        if (reply.delayMs > 0 && unsent > 0 && unsent + frame.length > TCP_UNSENT_MAX) {
          closeFor(`client does not read its answers (${unsent} bytes unsent)`);
          return;
        }
        delayedBytes += frame.length;
        this.later(reply.delayMs, () => {
          delayedBytes -= frame.length;
          if (socket.writable) socket.write(frame);
        });
      }
      socket.resume();
    };
    socket.on('drain', answerQueued);
    socket.on('data', (chunk) => {
      buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
      answerQueued();
    });
  }

  private answer(packet: Buffer, transport: 'udp' | 'tcp', address: string): Reply {
    const reply = this.responder.reply(packet, transport);
    // One object serves the log line and the recent-queries ring.
    const entry: LoggedQuery = {
      qname: reply.name,
      qtype: reply.type,
      client: this.clientAddress(address),
      transport,
      rcode: reply.response ? (RCODE_NAMES[reply.rcode] ?? `RCODE${reply.rcode}`) : 'DROPPED',
      answers: reply.answers,
    };
    if (reply.truncated) entry.truncated = true;
    if (reply.fault) entry.fault = reply.fault;
    this.recent[this.recentNext] = entry;
    this.recentTimes[this.recentNext] = Date.now();
    this.recentNext = (this.recentNext + 1) % RECENT_QUERIES;
    this.queryLog.write(entry);
    return reply;
  }

  private clientAddress(address: string): string {
    let lab = this.clients.get(address);
    if (lab === undefined) {
      if (this.clients.size >= KNOWN_CLIENTS) this.clients.clear();
      lab = labAddress(address);
      this.clients.set(address, lab);
    }
    return lab;
  }

  private later(delayMs: number, send: () => void): void {
    if (delayMs === 0) {
      send();
      return;
    }
    const timer = setTimeout(() => {
      this.pending.delete(timer);
      send();
    }, delayMs);
    this.pending.add(timer);
  }
}
