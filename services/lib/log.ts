// One pino logger per service. By default lines a person reads, one per event
// (log-line.ts), coloured only on a terminal: `docker compose logs` shows
// them as they are. LOG_FORMAT=json writes pino's JSON lines instead, for
// programs (the lab runner asks its services for them and formats them itself).
import { pino, type Logger, type LevelWithSilent } from 'pino';
import { exitOnConfigError } from './config.ts';
import { logStyle, readableLine, type LogStyle } from './log-line.ts';

export type { Logger };

const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function createLogger(service: string, env: Record<string, string | undefined> = process.env): Logger {
  const level = (levels as readonly string[]).includes(env.LOG_LEVEL ?? '') ? (env.LOG_LEVEL as LevelWithSilent) : 'info';
  let style: LogStyle;
  try {
    style = logStyle(env);
  } catch (error) {
    exitOnConfigError(error);
  }
  // Each line is written at once, on the main thread, in both forms: a
  // service killed outright leaves its last lines behind (the lab shows
  // them). The DNS query log hands over a whole batch of lines per write
  // (query-log.ts); a write through libuv's thread pool per line had cost
  // the DNS server a fifth of its rate.
  const out = pino.destination({ dest: 1, sync: true });
  return pino({ name: service, level, base: { service } }, style.json ? out : new ReadableDestination(out, style.colour));
}

// pino's JSON lines made readable on their way out. A chunk can hold several
// lines: the DNS query log writes one turn's lines at once (and, to save
// itself the detour through JSON, readable ones straight to out).
export class ReadableDestination {
  readonly out: { write(text: string): unknown };
  readonly colour: boolean;

  constructor(out: { write(text: string): unknown }, colour: boolean) {
    this.out = out;
    this.colour = colour;
  }

  write(chunk: string): void {
    let text = '';
    for (const line of chunk.split('\n')) if (line !== '') text += `${readableLine(JSON.parse(line), this.colour)}\n`;
    this.out.write(text);
  }
}
