// The services' logs, interleaved. Every child writes pino JSON lines. On a
// terminal each line is shown pretty behind a coloured service prefix;
// otherwise JSON lines go on as they are (each names its "service"), and a
// plain line (a start-up error on stderr) is wrapped into one.
import { styleText } from 'node:util';
import { prettyFactory } from 'pino-pretty';

const COLOURS = ['cyan', 'magenta', 'yellow', 'green', 'blue', 'red'] as const;

export type Stream = 'stdout' | 'stderr';

export class LogFormat {
  private prefixes = new Map<string, string>();
  private pretty: ((log: object) => string) | undefined;

  constructor(services: string[], tty: boolean) {
    const width = Math.max(...services.map((s) => s.length));
    services.forEach((s, i) => this.prefixes.set(s, `${styleText(COLOURS[i % COLOURS.length], s.padEnd(width))} | `));
    if (tty) this.pretty = prettyFactory({ colorize: true, singleLine: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname,service' });
  }

  line(service: string, text: string, stream: Stream): string {
    const log = parseLog(text);
    if (this.pretty) {
      // pino's "name" is the service, which the prefix shows; a line's own
      // "name" (the name a DNS query asked for) stays.
      if (log && log.name === log.service) delete log.name;
      return `${this.prefixes.get(service)}${log ? this.pretty(log).trimEnd() : text}`;
    }
    return log ? text : JSON.stringify({ level: stream === 'stderr' ? 50 : 30, time: Date.now(), service, msg: text });
  }
}

// A pino line, or undefined for a message the service printed without its logger.
function parseLog(text: string): Record<string, unknown> | undefined {
  try {
    const parsed = JSON.parse(text);
    return typeof parsed === 'object' && parsed !== null ? parsed : undefined;
  } catch {
    return undefined;
  }
}
