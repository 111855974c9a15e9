// The evaluations of each reporting period, one JSON line per message, in
// <dataDir>/reports/evaluations-<period start, ms>.jsonl. Whichever process
// decides (the MX, or an MX worker) appends to the file of the period now:
// one small write per line, so lines from several processes do not mix.
// Not fsynced: a report is a summary sent later, not mail accepted; the
// reporter (reporter.ts) reads a file once its period is over.
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Evaluation } from './evaluation.ts';

const logFile = (dir: string, periodStart: number) => join(dir, `evaluations-${periodStart}.jsonl`);
const periodOf = (time: number, periodMs: number) => Math.floor(time / periodMs) * periodMs;

// The start of the period a file of the log holds (ms), or undefined for any other file.
export function loggedPeriod(file: string): number | undefined {
  const match = /^evaluations-(\d+)\.jsonl$/.exec(file);
  return match ? Number(match[1]) : undefined;
}

export class EvaluationLog {
  private dir: string;
  private periodMs: number;
  private open?: { start: number; fd: number };

  constructor(dir: string, periodSeconds: number) {
    this.dir = dir;
    this.periodMs = periodSeconds * 1000;
    mkdirSync(dir, { recursive: true });
  }

  add(evaluation: Evaluation): void {
    const start = periodOf(Date.parse(evaluation.at), this.periodMs);
    if (this.open?.start !== start) {
      this.close();
      this.open = { start, fd: openSync(logFile(this.dir, start), 'a', 0o600) };
    }
    writeSync(this.open.fd, `${JSON.stringify(evaluation)}\n`);
  }

  close(): void {
    if (this.open) closeSync(this.open.fd);
    this.open = undefined;
  }
}
