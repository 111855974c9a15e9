// The form of the services' log lines. With LOG_FORMAT=json, pino's JSON
// lines, for programs. By default lines a person reads, coloured only on a
// terminal: time, level word, message and the other fields as one JSON
// object, in pino-pretty's single-line form:
//   [14:02:07.512] INFO: query {"qname":"sender.test","qtype":"MX",...}
// Made here rather than by pino-pretty, which takes 15 to 20 µs a line (the
// DNS query log writes tens of thousands of lines a second) and spreads an
// error's stack over several lines: here every event stays one line, a
// message's line breaks and control characters escaped.
import { styleText } from 'node:util';
import { readChoice } from './config.ts';

type Style = Parameters<typeof styleText>[0];

const LEVELS: Record<number, [string, Style]> = {
  10: ['TRACE', 'gray'],
  20: ['DEBUG', 'blue'],
  30: ['INFO', 'green'],
  40: ['WARN', 'yellow'],
  50: ['ERROR', 'red'],
  60: ['FATAL', 'bgRed'],
};

export interface LogStyle {
  json: boolean;
  colour: boolean;
}

// Throws a ConfigError for a LOG_FORMAT that is neither text nor json.
export function logStyle(env: Record<string, string | undefined>): LogStyle {
  return {
    json: readChoice(env, 'LOG_FORMAT', 'text', ['text', 'json']) === 'json',
    // A terminal that can show colours, as Node judges it (NO_COLOR, FORCE_COLOR, TERM=dumb and CI count).
    colour: Boolean(process.stdout.isTTY) && process.stdout.hasColors(),
  };
}

export function readableLine(record: Record<string, unknown>, colour: boolean): string {
  const { level, time, msg } = record;
  const text = typeof msg === 'string' ? msg : msg === undefined ? '' : String(msg);
  return readableText(level as number, time as number, text, JSON.stringify(shownFields(record)), colour);
}

// What a line shows besides its time, level and message. name and service
// say which service wrote it: compose and the lab runner put that in front
// of every line. pid and hostname likewise say nothing a person looks for.
export function shownFields(record: Record<string, unknown>): Record<string, unknown> {
  const { level, time, msg, name, service, pid, hostname, ...fields } = record;
  return fields;
}

// The line of a record already taken apart; fields is a JSON object. The DNS
// query log (services/dns/query-log.ts) builds its lines with it directly.
export function readableText(level: number, time: number, msg: string, fields: string, colour: boolean): string {
  const paint = (style: Style, text: string) => (colour ? styleText(style, text, { validateStream: false }) : text);
  const [word, style] = LEVELS[level] ?? [`LEVEL${level}`, 'white'];
  const text = /[\x00-\x1f]/.test(msg) ? JSON.stringify(msg) : msg;
  const line = `[${clock(time)}] ${paint(style, word)}: ${paint('cyan', text)}`;
  return fields === '{}' ? line : `${line} ${paint('gray', fields)}`;
}

// HH:MM:ss.mmm, local time; the part up to the second is worked out once a second.
let second = NaN;
let upToSecond = '';
function clock(time: number): string {
  const ms = time % 1000;
  if (time - ms !== second) {
    second = time - ms;
    const d = new Date(time);
    upToSecond = `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  }
  return `${upToSecond}.${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}`;
}

const two = (n: number) => (n < 10 ? `0${n}` : `${n}`);
