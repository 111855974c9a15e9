// Sockets for the attacks: raw TCP, since an attack sends what a client
// library will not (a malformed request line, a bare CR, a gigabyte without
// SIZE=). Every socket and listener an attack opens is tracked and closed
// when the attack ends, however it ends, so that a failed or timed-out
// attack leaves nothing behind to disturb the next.
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Endpoint } from '../../services/lib/config.ts';

const opened = new Set<Socket | Server>();

export function closeAll(): void {
  for (const each of opened) {
    if ('destroy' in each) each.destroy();
    else each.close();
  }
  opened.clear();
}

// A connection from localAddress (a lab host's loopback twin, say), once connected.
export function open(to: Endpoint, localAddress?: string): Promise<Socket> {
  const socket = connect({ host: to.host, port: to.port, localAddress });
  opened.add(socket);
  socket.on('error', () => undefined); // a reset is what some attacks expect; 'close' follows
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

// A listener that only counts who connects.
export function listen(at: Endpoint): Promise<{ connections: () => number }> {
  let count = 0;
  const server = createServer((socket) => {
    count++;
    socket.destroy();
  });
  opened.add(server);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => resolve({ connections: () => count }));
  });
}

// An HTTP request as bytes, which should ask the server to close the
// connection after its answer; the answer's status and body once it has.
// (Not end(): Node's HTTP server drops the answer to a client that has
// closed its side before the answer is ready.)
export async function rawHttp(to: Endpoint, request: string, localAddress?: string): Promise<{ status: number; body: string }> {
  const socket = await open(to, localAddress);
  let text = '';
  socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
  socket.write(request);
  await new Promise((resolve) => socket.once('close', resolve));
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), body: text.slice(text.indexOf('\r\n\r\n') + 4).trim() };
}

export interface Reply {
  code: number; // 0 once the server has closed the connection
  text: string; // all its lines, joined with \n
  at: number; // when it came (performance.now())
}

// A server that answers far more than an attack reads (one that answers
// every one of a million NOOPs, say) is cut off there: the attack's own
// process stays small whatever the server does.
const MAX_UNREAD_REPLIES = 10_000;

const closedReply = (): Reply => ({ code: 0, text: 'connection closed', at: performance.now() });

// An SMTP conversation as telnet has it: write lines, read replies.
export class RawSmtp {
  readonly socket: Socket;
  readonly closed: Promise<void>;
  private buffer = '';
  private replies: Reply[] = [];
  private waiting: ((reply: Reply) => void)[] = [];
  private ended = false;
  private closedHere = false;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding('utf8').on('data', (chunk: string) => {
      this.buffer += chunk;
      // A reply ends with its line "NNN text" (a space after the code).
      for (let match; (match = /^((?:\d{3}-[^\r\n]*\r?\n)*\d{3}(?: [^\r\n]*)?)\r?\n/.exec(this.buffer)); ) {
        this.buffer = this.buffer.slice(match[0].length);
        const lines = match[1].split(/\r?\n/);
        const reply = { code: Number(lines.at(-1)!.slice(0, 3)), text: lines.join('\n'), at: performance.now() };
        const waiter = this.waiting.shift();
        if (waiter) waiter(reply);
        else if (this.replies.push(reply) > MAX_UNREAD_REPLIES) return this.close();
      }
    });
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.ended = true;
        for (const waiter of this.waiting.splice(0)) waiter(closedReply());
        resolve();
      }),
    );
  }

  // A session whose greeting has come (a client that talks before it is
  // refused by smtp-server as an early talker).
  static async open(to: Endpoint, localAddress: string): Promise<{ smtp: RawSmtp; greeting: Reply }> {
    const smtp = new RawSmtp(await open(to, localAddress));
    return { smtp, greeting: await smtp.read() };
  }

  read(timeoutMs = 10_000): Promise<Reply> {
    const ready = this.replies.shift() ?? (this.ended ? closedReply() : undefined);
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no SMTP reply within ${timeoutMs / 1000} s`)), timeoutMs);
      this.waiting.push((reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
    });
  }

  // The replies until the server closes the connection, `max` have come,
  // or none comes for idleMs (a server that neither answers nor closes).
  async readAll(max = Infinity, idleMs = 5000): Promise<Reply[]> {
    const all: Reply[] = [];
    while (all.length < max) {
      const reply = await this.read(idleMs).catch(() => undefined);
      if (!reply || reply.code === 0) break;
      all.push(reply);
    }
    return all;
  }

  // The server closed the connection (this side did not).
  get closedByServer(): boolean {
    return this.ended && !this.closedHere;
  }

  write(data: string | Buffer): void {
    if (!this.ended) this.socket.write(data);
  }

  // Writes, then waits until the socket can take more: false once the
  // server has closed the connection.
  async send(data: string | Buffer): Promise<boolean> {
    if (this.ended) return false;
    if (!this.socket.write(data)) await Promise.race([new Promise((resolve) => this.socket.once('drain', resolve)), this.closed]);
    return !this.ended;
  }

  command(line: string, timeoutMs?: number): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.read(timeoutMs);
  }

  end(): void {
    this.socket.end();
  }

  close(): void {
    this.closedHere = true;
    this.socket.destroy();
  }
}

// Replies shown briefly: the same reply n times is said once, with ×n.
export function summary(replies: Reply[]): string {
  const runs: [string, number][] = [];
  for (const { text } of replies) {
    const last = runs.at(-1);
    if (last?.[0] === text) last[1]++;
    else runs.push([text, 1]);
  }
  return runs.map(([text, n]) => (n > 1 ? `${n} × ${text}` : text)).join(', ');
}

// Polls until `check` returns a value (not undefined), at most timeoutMs.
export async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  for (const deadline = Date.now() + timeoutMs; ; await sleep(50)) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
