// A benchmark target's processes in a cgroup of their own, so that its CPU
// counts every process it runs, short-lived ones included (Postfix starts an
// smtpd per session, a cleanup, a virtual for deliveries), and its memory can
// be read as the PSS of whatever runs in it. cgroup v1's cpuacct hierarchy or
// a plain cgroup v2 (/sys/fs/cgroup with cpu.stat); creating cgroups needs
// root. Every cgroup made here is emptied (its processes killed) and removed
// when the script ends, however it ends.
import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';

const V2 = '/sys/fs/cgroup';
const V1 = '/sys/fs/cgroup/cpuacct';

// Why cgroups cannot be used here, or undefined when they can.
export function cgroupProblem(): string | undefined {
  if (process.getuid?.() !== 0) return 'it must run as root (it puts each target in a cgroup of its own, and runs postfix and rspamd)';
  if (!existsSync(join(V2, 'cgroup.controllers')) && !existsSync(join(V1, 'cpuacct.usage'))) {
    return `neither cgroup v2 at ${V2} nor cgroup v1's cpuacct at ${V1} is mounted`;
  }
  return undefined;
}

const made = new Set<Cgroup>();
let count = 0;

export class Cgroup {
  readonly name: string;
  readonly dir: string;
  private readonly v2: boolean;

  constructor(name: string) {
    this.name = name;
    this.v2 = existsSync(join(V2, 'cgroup.controllers'));
    this.dir = join(this.v2 ? V2 : V1, `bench-mx-${process.pid}-${++count}-${name.replace(/[^a-z0-9]+/gi, '-')}`);
    mkdirSync(this.dir);
    made.add(this);
  }

  // The command line that runs `command` inside this cgroup from its first
  // instruction: a shell writes its own pid into the cgroup, then execs it
  // (so the pid start() returns is the command's own).
  wrap(command: string, args: string[]): [string, string[]] {
    return ['/bin/sh', ['-c', 'echo $$ > "$0" && exec "$@"', join(this.dir, 'cgroup.procs'), command, ...args]];
  }

  pids(): number[] {
    return read(join(this.dir, 'cgroup.procs')).split('\n').filter(Boolean).map(Number);
  }

  // CPU time used by every process that ever ran in it, in ms.
  cpuMs(): number {
    if (this.v2) return Number(/^usage_usec (\d+)$/m.exec(read(join(this.dir, 'cpu.stat')))?.[1] ?? NaN) / 1000;
    return Number(read(join(this.dir, 'cpuacct.usage'))) / 1e6;
  }

  // The summed proportional set size of its processes now, in MiB.
  pssMiB(): number {
    let kB = 0;
    for (const pid of this.pids()) kB += Number(/^Pss:\s+(\d+) kB$/m.exec(read(`/proc/${pid}/smaps_rollup`))?.[1] ?? 0);
    return kB / 1024;
  }

  // Kills whatever still runs in it (a daemon's orphans) and removes it.
  remove(): void {
    for (const deadline = Date.now() + 5000; ; ) {
      const pids = this.pids();
      if (!pids.length) break;
      if (Date.now() > deadline) throw new Error(`cgroup ${this.dir}: processes ${pids.join(' ')} did not end`);
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // it has ended meanwhile
        }
      }
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
    rmdirSync(this.dir);
    made.delete(this);
  }
}

process.once('exit', () => {
  for (const cgroup of made) {
    try {
      cgroup.remove();
    } catch (error) {
      process.stderr.write(`${(error as Error).message}\n`);
    }
  }
});

// Samples the summed PSS of the cgroups' processes once a second until
// stopped; stop() gives the highest sum seen, in MiB. Not more often: the
// kernel walks every mapping of a process to answer smaps_rollup (4 ms for
// a Node process here) holding its memory map lock: every 100 ms took a
// twentieth of a core from the stacks measured, and held up their mmaps.
export function samplePeakPss(cgroups: Cgroup[]): { stop(): number } {
  let peak = 0;
  const sample = () => {
    peak = Math.max(peak, cgroups.reduce((sum, cgroup) => sum + cgroup.pssMiB(), 0));
  };
  sample();
  const timer = setInterval(sample, 1000);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return peak;
    },
  };
}

// A file's text, or '' once it is gone (a process that ended between
// listing it and reading it).
function read(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
