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
  // Asynchronous writes: lines that arrive while a write is under way go out
  // together, so logging every DNS query under load costs few write(2) calls.
  return pino(options, pino.destination({ dest: 1, sync: false }));
}
