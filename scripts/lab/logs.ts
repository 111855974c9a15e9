// The services' logs, interleaved. Every child writes pino JSON lines (the
// runner starts it with LOG_FORMAT=json). By default each becomes the
// readable line a service writes by itself (services/lib/log-line.ts),
// behind its service's name, coloured on a terminal; with LOG_FORMAT=json the
// JSON lines go on as they are (each names its "service"), and a plain line
// (a start-up error on stderr) is wrapped into one.
import { styleText } from 'node:util';
import { readableLine, type LogStyle } from '../../services/lib/log-line.ts';

const COLOURS = ['cyan', 'magenta', 'yellow', 'green', 'blue', 'red'] as const;

export type Stream = 'stdout' | 'stderr';

export class LogFormat {
  private prefixes = new Map<string, string>();
  private style: LogStyle;

  constructor(services: string[], style: LogStyle) {
    this.style = style;
    const width = Math.max(...services.map((s) => s.length));
    services.forEach((s, i) => {
      const name = s.padEnd(width);
      this.prefixes.set(s, `${style.colour ? styleText(COLOURS[i % COLOURS.length], name, { validateStream: false }) : name} | `);
    });
  }

  line(service: string, text: string, stream: Stream): string {
    const log = parseLog(text);
    if (this.style.json) return log ? text : JSON.stringify({ level: stream === 'stderr' ? 50 : 30, time: Date.now(), service, msg: text });
    return `${this.prefixes.get(service)}${log ? readableLine(log, this.style.colour) : text}`;
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
