// The query log: one line per query, in the service's pino log. At tens of
// thousands of queries a second pino's general serializer (every key and
// value looked at and escaped) costs the server a fifth of its rate, so this
// line is built directly and handed to the logger's own destination: other
// lines and the query lines share one stream and one format. With
// LOG_FORMAT=json that is pino's line, the same fields in the same order as
// pino would write them; by default the readable line of log-line.ts, built
// as such (the logger's destination would otherwise parse a JSON line to make
// it). The lines of one turn of the event loop (a batch of datagrams) go out
// together, in one write: per line, the write and the destination's
// measuring of each string would cost more than the line.
import { pino } from 'pino';
import { ReadableDestination, type Logger } from '../lib/log.ts';
import { readableText, shownFields } from '../lib/log-line.ts';

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
  private stream?: { write(text: string): unknown };
  private readable?: ReadableDestination;
  private bindings: string; // the logger's own fields, as the line shows them
  private pending = '';

  constructor(log: Logger) {
    const destination = (log as never)[pino.symbols.streamSym] as { write(text: string): unknown };
    const chindings: string = (log as never)[pino.symbols.chindingsSym] ?? '';
    if (destination instanceof ReadableDestination) {
      this.readable = destination;
      this.bindings = JSON.stringify(shownFields(JSON.parse(`{${chindings.slice(1)}}`))).slice(1, -1);
      if (this.bindings !== '') this.bindings += ',';
    } else {
      this.bindings = chindings;
    }
    if (log.isLevelEnabled('info')) this.stream = this.readable?.out ?? destination;
  }

  write(q: LoggedQuery): void {
    if (!this.stream) return;
    // Only the name can hold bytes that need escaping; the rest are lab
    // addresses, type and rcode names, and numbers.
    let fields = `"qname":${JSON.stringify(q.qname)},"qtype":"${q.qtype}","client":"${q.client}","transport":"${q.transport}","rcode":"${q.rcode}","answers":${q.answers}`;
    if (q.truncated) fields += ',"truncated":true';
    if (q.fault) fields += `,"fault":"${q.fault}"`;
    if (this.pending === '') setImmediate(this.flush);
    this.pending += this.readable
      ? `${readableText(INFO, Date.now(), 'query', `{${this.bindings}${fields}}`, this.readable.colour)}\n`
      : `{"level":${INFO},"time":${Date.now()}${this.bindings},${fields},"msg":"query"}\n`;
  }

  flush = (): void => {
    if (this.pending === '') return;
    this.stream!.write(this.pending);
    this.pending = '';
  };
}
