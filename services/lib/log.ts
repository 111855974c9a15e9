// One pino logger per service, JSON lines; pretty only when a person is watching.
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function createLogger(service: string, env: Record<string, string | undefined> = process.env): Logger {
  const level = (levels as readonly string[]).includes(env.LOG_LEVEL ?? '') ? (env.LOG_LEVEL as LevelWithSilent) : 'info';
  const options = { name: service, level, base: { service } };
  if (process.stdout.isTTY && env.LOG_FORMAT !== 'json') {
    return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true, ignore: 'pid,hostname,service' } } });
  }
  // Each line is written at once, on the main thread: a service killed
  // outright leaves its last lines behind (the lab shows them). The DNS query
  // log hands over a whole batch of lines per write (query-log.ts); a write
  // through libuv's thread pool per line had cost the DNS server a fifth of
  // its rate.
  const destination = pino.destination({ dest: 1, sync: true });
  return pino(options, destination);
}
