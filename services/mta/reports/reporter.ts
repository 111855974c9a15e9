// The reporter: each period, the evaluations not yet reported
// (evaluation-log.ts) become one aggregate report per policy domain
// (aggregate.ts), sent as mail (report-message.ts) to the rua= addresses the
// domain may have (destinations.ts): DKIM-signed as this instance's domain
// and queued like any other message, so that it is delivered, recorded and
// shown like any other. `send()` does it now (`npm run lab -- reports --send`).
//
// What was reported is kept in reports/state.json: per log file, the bytes
// read and the time reported until, so that a report sent early is not sent
// twice, and the rest of its period goes in the next one.
import { createReadStream, existsSync, readdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { replaceFile } from '../../lib/durable.ts';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../../lib/log.ts';
import type { LabResolver } from '../../lib/resolver.ts';
import type { Instance, Reports } from '../instance.ts';
import type { Queue } from '../outbound/queue.ts';
import type { Signer } from '../outbound/sign.ts';
import { aggregate } from './aggregate.ts';
import { destinations } from './destinations.ts';
import { loggedPeriod } from './evaluation-log.ts';
import type { Evaluation } from './evaluation.ts';
import { reportMessage } from './report-message.ts';

export interface Sent {
  policyDomain: string;
  reportId: string;
  begin: string;
  end: string;
  messages: number;
  rows: number;
  records: { sourceIp: string; count: number; disposition: string; dkim: string; spf: string }[]; // what the rows say, in short
  to: string[];
  refused: { uri: string; reason: string }[];
  queueId?: string;
}

interface State {
  [file: string]: { offset: number; until: number };
}

export interface ReporterContext {
  instance: Instance;
  reports: Reports;
  dir: string; // <dataDir>/reports
  resolver: LabResolver;
  signer: Signer;
  queue: Queue;
  queued: () => void;
  log: Logger;
}

export class Reporter {
  private ctx: ReporterContext;
  private timer?: NodeJS.Timeout;
  private running: Promise<Sent[]> = Promise.resolve([]);

  constructor(ctx: ReporterContext) {
    this.ctx = ctx;
  }

  // Each period from the instance's start: a lab that runs for less (a
  // test, a short demonstration) sends none unless asked.
  start(): void {
    this.timer = setInterval(() => void this.send().catch((error: Error) => this.ctx.log.error({ err: error }, 'DMARC reports not sent')), this.ctx.reports.periodSeconds * 1000);
    this.timer.unref();
  }

  stop(): Promise<unknown> {
    clearInterval(this.timer);
    return this.running;
  }

  // Everything not yet reported, now. One run at a time: two would read the same lines.
  send(): Promise<Sent[]> {
    this.running = this.running.catch(() => []).then(() => this.report());
    return this.running;
  }

  // The log files are by period of the clock; a file whose period is over
  // and is read to its end is removed.
  private async report(): Promise<Sent[]> {
    const { dir, reports } = this.ctx;
    const periodMs = reports.periodSeconds * 1000;
    const state = this.readState();
    const sent: Sent[] = [];
    const files = existsSync(dir) ? readdirSync(dir).filter((f) => loggedPeriod(f) !== undefined).sort() : [];
    for (const file of files) {
      const start = loggedPeriod(file)!;
      const now = Date.now();
      const over = start + periodMs <= now;
      const path = join(dir, file);
      const size = statSync(path).size;
      const done = state[file] ?? { offset: 0, until: start };
      const until = Math.min(start + periodMs, now);
      if (size > done.offset) sent.push(...(await this.reportFile(path, done.offset, size - 1, done.until, until)));
      if (over) {
        unlinkSync(path);
        delete state[file];
      } else state[file] = { offset: size, until };
      await this.writeState(state);
    }
    return sent;
  }

  // One report per policy domain from these bytes of a log file.
  private async reportFile(path: string, from: number, to: number, begin: number, end: number): Promise<Sent[]> {
    const { instance, reports, resolver, signer, queue, log } = this.ctx;
    const reportsByDomain = await aggregate(evaluationsIn(path, from, to));
    const sent: Sent[] = [];
    for (const report of reportsByDomain) {
      const reportId = randomBytes(8).toString('hex');
      const meta = { orgName: reports.orgName, email: reports.from, reportId, begin: Math.floor(begin / 1000), end: Math.floor(end / 1000) };
      const where = await destinations(report.published.domain, report.published.rua, resolver);
      const one: Sent = { policyDomain: report.published.domain, reportId, begin: new Date(begin).toISOString(), end: new Date(end).toISOString(), messages: report.messages, rows: report.rows.length, records: report.rows.map(({ sourceIp, count, disposition, dkim, spf }) => ({ sourceIp, count, disposition, dkim, spf })), to: where.to, refused: where.refused };
      for (const r of where.refused) log.warn({ policyDomain: one.policyDomain, uri: r.uri, reason: r.reason }, 'DMARC report destination refused');
      if (where.to.length) {
        let message: ReturnType<typeof reportMessage>;
        try {
          message = reportMessage({ report, meta, from: reports.from, to: where.to, hostname: instance.hostname });
        } catch (error) {
          // A name from mail that cannot go into a header (reportMessage says which): this report only.
          one.refused.push(...one.to.map((to) => ({ uri: `mailto:${to}`, reason: (error as Error).message })));
          one.to = [];
          log.error({ policyDomain: one.policyDomain, err: error }, 'DMARC report not made');
          sent.push(one);
          continue;
        }
        const signed = Buffer.concat([Buffer.from(await signer.sign(message.raw, reports.from.slice(reports.from.indexOf('@') + 1))), message.raw]);
        const entry = await queue.add(signed, { mailFrom: reports.from, recipients: where.to, messageId: message.messageId, origin: 'report' });
        one.queueId = entry.id;
        this.ctx.queued();
      }
      log.info(one, `DMARC aggregate report for ${one.policyDomain}: ${one.messages} messages in ${one.rows} rows${where.to.length ? `, to ${where.to.join(', ')}` : ', sent nowhere'}`);
      sent.push(one);
    }
    return sent;
  }

  private readState(): State {
    try {
      return JSON.parse(readFileSync(join(this.ctx.dir, 'state.json'), 'utf8')) as State;
    } catch {
      return {};
    }
  }

  // Durable: after a crash, what was sent is not sent again.
  private writeState(state: State): Promise<void> {
    return replaceFile(join(this.ctx.dir, 'state.json'), JSON.stringify(state));
  }
}

// The evaluations in bytes from..to of a log file (whole lines: the writers
// append whole lines, and `to` is the file's size when the run began).
async function* evaluationsIn(path: string, from: number, to: number): AsyncIterable<Evaluation> {
  const lines = createInterface({ input: createReadStream(path, { start: from, end: to }), crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line) continue;
    try {
      yield JSON.parse(line) as Evaluation;
    } catch {
      // a line cut by a crash: it counts for nothing
    }
  }
}
