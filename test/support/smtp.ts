// A raw SMTP conversation over a socket, as a person with telnet would have
// it: send a line, read the reply (all its lines), look at the code.
import { connect, type Socket } from 'node:net';

export interface Reply {
  code: number;
  text: string; // all lines, joined with \n
}

// What a read gets once the server has closed the connection.
const CLOSED: Reply = { code: 0, text: 'connection closed' };

export class RawSmtp {
  private socket: Socket;
  private buffer = '';
  private waiting: ((reply: Reply) => void)[] = [];
  private replies: Reply[] = [];
  private ended = false;
  closed: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      // A reply ends with a line "NNN text" (a space after the code).
      for (let match; (match = /^((?:\d{3}-[^\r\n]*\r?\n)*\d{3}(?: [^\r\n]*)?)\r?\n/.exec(this.buffer)); ) {
        this.buffer = this.buffer.slice(match[0].length);
        const lines = match[1].split(/\r?\n/);
        const reply = { code: Number(lines.at(-1)!.slice(0, 3)), text: lines.join('\n') };
        const waiter = this.waiting.shift();
        if (waiter) waiter(reply);
        else this.replies.push(reply);
      }
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.ended = true;
        for (const waiter of this.waiting.splice(0)) waiter(CLOSED);
        resolve();
      }),
    );
  }

  static async open(host: string, port: number, localAddress: string): Promise<{ smtp: RawSmtp; greeting: Reply }> {
    const socket = connect({ host, port, localAddress });
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const smtp = new RawSmtp(socket);
    return { smtp, greeting: await smtp.read() };
  }

  read(timeoutMs = 10_000): Promise<Reply> {
    const ready = this.replies.shift() ?? (this.ended ? CLOSED : undefined);
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply within ${timeoutMs} ms`)), timeoutMs);
      this.waiting.push((reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
    });
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  // Resolves once everything written so far is handed to the system.
  drained(): Promise<void> {
    return this.socket.writableLength === 0 ? Promise.resolve() : new Promise((resolve) => this.socket.once('drain', () => resolve()));
  }

  async command(line: string): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.read();
  }

  end(): void {
    this.socket.end();
  }
}
