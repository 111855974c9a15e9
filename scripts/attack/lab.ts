// The lab the attacks run against: `npm run lab` (scripts/lab.ts) in a new
// data directory, started the way the scenario runner and test/lab.test.ts
// start it. Each service is then a process of its own, whose memory /proc
// shows, and a service that dies is restarted by the runner as it would be
// for a user. It listens on the embedded lab's fixed addresses and ports, so
// no other lab may be running. Stopped at the end, however the run ends.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Endpoint } from '../../services/lib/config.ts';
import { readLab, root, type LabService } from '../lab/compose.ts';
import { LabError } from '../lab/errors.ts';

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000; // the runner gives each service 5 s, then kills it

export type LogLine = Record<string, unknown> & { service?: string; msg?: string };

// A service's resident memory around an attack, in MiB (/proc/PID/status).
export interface Memory {
  service: string;
  pid: number;
  rssBeforeMiB: number;
  peakMiB: number; // VmHWM, counted from the attack's start
  rssAfterMiB: number;
}

export class AttackLab {
  readonly services: LabService[];
  readonly dataDir: string;
  readonly killed: string[] = []; // services an attack killed on purpose, so far
  private runner: ChildProcess;
  private runnerSaid = '';
  private logLines: LogLine[] = [];
  private exited: Promise<void>;

  private constructor(dataDir: string) {
    this.dataDir = dataDir;
    this.services = readLab(dataDir).services;
    // The services' logs as JSON lines, each naming its service.
    this.runner = spawn(process.execPath, [join(root, 'scripts', 'lab.ts'), '--fresh', '--data-dir', dataDir], {
      cwd: root,
      env: { ...process.env, LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.runner.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.runnerSaid += chunk));
    createInterface({ input: this.runner.stdout! }).on('line', (text) => {
      try {
        this.logLines.push(JSON.parse(text));
      } catch {
        // not a log line: the runner wraps every line, so nothing to keep
      }
    });
    this.exited = new Promise((resolve) => this.runner.once('exit', () => resolve()));
    // However this process ends, the runner is told to stop its services.
    process.once('exit', () => this.runner.kill('SIGTERM'));
  }

  static async start(): Promise<AttackLab> {
    const lab = new AttackLab(mkdtempSync(join(tmpdir(), 'mail-lab-attack-')));
    for (const deadline = Date.now() + START_TIMEOUT_MS; !/lab ready in \d+ ms/.test(lab.runnerSaid); await sleep(20)) {
      if (lab.runner.exitCode !== null || Date.now() > deadline) {
        await lab.stop();
        throw new LabError(`the embedded lab did not start:\n${lab.runnerSaid.trim()}`);
      }
    }
    return lab;
  }

  service(name: string): LabService {
    const found = this.services.find((s) => s.name === name);
    if (!found) throw new Error(`no service ${name} in compose.yaml`);
    return found;
  }

  // Where a service's port is reached: its loopback twin and the embedded port.
  at(name: string, port: string): Endpoint {
    const s = this.service(name);
    const found = s.ports.find((p) => p.name === port);
    if (!found) throw new Error(`${name} has no port named ${port}`);
    return { host: s.address, port: found.port };
  }

  // What the runner has said on stderr (restarts, crashes), and the
  // services' log lines so far, of one service or all.
  said(): string {
    return this.runnerSaid;
  }

  logs(name?: string): LogLine[] {
    return name ? this.logLines.filter((l) => l.service === name) : this.logLines;
  }

  // The process that runs the service now: the runner's child whose
  // environment has the service's (a process just forked has the runner's).
  pid(name: string): number {
    const wanted = Object.entries(this.service(name).env).map(([key, value]) => `${key}=${value}`);
    const pid = childPids(this.runner.pid!).find((p) => {
      const environ = read(`/proc/${p}/environ`).split('\0');
      return wanted.every((w) => environ.includes(w));
    });
    if (!pid) throw new Error(`no process runs ${name}`);
    return pid;
  }

  // Whether this process still runs the service (it was not restarted).
  runs(name: string, pid: number): boolean {
    try {
      return this.pid(name) === pid;
    } catch {
      return false;
    }
  }

  kill9(name: string): number {
    const pid = this.pid(name);
    this.killed.push(name);
    process.kill(pid, 'SIGKILL');
    return pid;
  }

  // The service's memory while `attack` runs: its peak (VmHWM) is reset to
  // its resident size first, so that the peak is this attack's.
  async memoryDuring<T>(name: string, attack: () => Promise<T>): Promise<{ result: T; memory: Memory }> {
    const pid = this.pid(name);
    const rssBefore = statusMiB(pid, 'VmRSS');
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    const result = await attack();
    return { result, memory: { service: name, pid, rssBeforeMiB: rssBefore, peakMiB: statusMiB(pid, 'VmHWM'), rssAfterMiB: statusMiB(pid, 'VmRSS') } };
  }

  // SIGTERM to the runner, which stops every service; whatever is left after
  // STOP_TIMEOUT_MS is killed. The data directory goes too.
  async stop(): Promise<void> {
    const services = this.runner.pid ? childPids(this.runner.pid) : [];
    if (this.runner.exitCode === null && this.runner.signalCode === null) this.runner.kill('SIGTERM');
    const timer = setTimeout(() => this.runner.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
    // Only after a SIGKILL of the runner can one of its services be left.
    for (const pid of services) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone, as it should be
      }
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

// The processes whose parent is pid.
function childPids(pid: number): number[] {
  return read(`/proc/${pid}/task/${pid}/children`).split(' ').filter(Boolean).map(Number);
}

function statusMiB(pid: number, field: string): number {
  const kB = Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(read(`/proc/${pid}/status`))?.[1]);
  return Math.round(kB / 1024);
}

function read(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return ''; // the process has gone
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
