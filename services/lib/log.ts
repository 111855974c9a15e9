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
  // Lines are gathered and written 4 KiB at a time, or every 100 ms when
  // traffic is light: logging every DNS query under load then costs one
  // write(2) per few dozen lines, made on the main thread (a write through
  // libuv's thread pool per line cost the DNS server a fifth of its rate).
  const destination = pino.destination({ dest: 1, sync: true, minLength: 4096, periodicFlush: 100 });
  // Whatever way the process ends, the last lines are written.
  process.once('exit', () => destination.flushSync());
  return pino(options, destination);
}
