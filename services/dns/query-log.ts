// The query log: one line per query, in the service's pino log. At tens of
// thousands of queries a second pino's general serializer (every key and
// value looked at and escaped) costs the server a fifth of its rate, so this
// line is built directly, with the same fields in the same order as pino
// would write them, and handed to the same pino destination: other lines and
// the query lines share one stream and one format. The lines of one turn of
// the event loop (a batch of datagrams) go to the destination together, in
// one write: per line, the write and the destination's measuring of each
// string would cost more than the line.
import { pino } from 'pino';
import type { Logger } from '../lib/log.ts';

export interface LoggedQuery {
  qname: string; // pino has a "name" of its own
  qtype: string;
  client: string;
  transport: 'udp' | 'tcp';
  rcode: string;
  answers: number;
  truncated?: boolean;
  fault?: string;
}

const INFO = 30;

export class QueryLog {
  private stream?: { write(line: string): void };
  private bindings: string;
  private pending = '';

  constructor(log: Logger) {
    if (log.isLevelEnabled('info')) this.stream = (log as never)[pino.symbols.streamSym];
    this.bindings = (log as never)[pino.symbols.chindingsSym] ?? '';
  }

  write(q: LoggedQuery): void {
    if (!this.stream) return;
    // Only the name can hold bytes that need escaping; the rest are lab
    // addresses, type and rcode names, and numbers.
    let line = `{"level":${INFO},"time":${Date.now()}${this.bindings},"qname":${JSON.stringify(q.qname)},"qtype":"${q.qtype}","client":"${q.client}","transport":"${q.transport}","rcode":"${q.rcode}","answers":${q.answers}`;
    if (q.truncated) line += ',"truncated":true';
    if (q.fault) line += `,"fault":"${q.fault}"`;
    if (this.pending === '') setImmediate(this.flush);
    this.pending += `${line},"msg":"query"}\n`;
  }

  flush = (): void => {
    if (this.pending === '') return;
    this.stream!.write(this.pending);
    this.pending = '';
  };
}
