// node scripts/measure-lab.ts [RUNS]: the figures of the embedded lab.
// Starts `npm run lab` RUNS times (default 3) on one new data directory (the
// first run with a cold compile cache) and prints, for each: the time from
// the command to "lab ready", and the memory of the five services after a
// message has gone through them: their peak RSS summed (each counts the
// pages of the node binary that all share) and their PSS summed (each
// process charged its share of shared pages: what the lab takes).
// Linux only (/proc). The lab's ports are fixed: no other lab may be running.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const root = resolve(import.meta.dirname, '..');
const runs = Number(process.argv[2] ?? 3);
const work = mkdtempSync(join(tmpdir(), 'measure-lab-'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const read = (file: string) => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return ''; // the process has gone
  }
};
const kiB = (text: string, field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
const children = (pid: number) =>
  readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d) && Number(read(`/proc/${d}/stat`).split(')').at(-1)!.trim().split(' ')[1]) === pid)
    .map(Number);
const descendants = (pid: number): number[] => children(pid).flatMap((c) => [c, ...descendants(c)]);

try {
  for (let run = 1; run <= runs; run++) {
    const started = performance.now();
    const npm = spawn('npm', ['run', '--silent', 'lab', '--', '--data-dir', work], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
    let output = '';
    npm.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    for (const deadline = Date.now() + 30_000; !/lab ready in \d+ ms/.test(output); await sleep(10)) {
      if (npm.exitCode !== null || Date.now() > deadline) throw new Error(`the lab did not start:\n${output}`);
    }
    const readyMs = Math.round(performance.now() - started);
    await promisify(execFile)(process.execPath, ['scripts/lab.ts', 'send', '--from', 'alice@sender.test', '--to', 'bob@receiver.test', '--wait'], { cwd: root });

    const runner = descendants(npm.pid!).find((pid) => read(`/proc/${pid}/cmdline`).split('\0').includes('scripts/lab.ts'))!;
    const services = children(runner);
    const sum = (file: string, field: string) => Math.round(services.reduce((total, pid) => total + kiB(read(`/proc/${pid}/${file}`), field), 0) / 1024);
    const runnerMiB = Math.round(kiB(read(`/proc/${runner}/status`), 'VmHWM') / 1024);
    console.log(
      `run ${run}: ready ${readyMs} ms after npm run lab (the runner says ${/lab ready in (\d+) ms/.exec(output)![1]} ms); ` +
        `${services.length} services: peak RSS ${sum('status', 'VmHWM')} MiB summed, PSS ${sum('smaps_rollup', 'Pss')} MiB; the runner ${runnerMiB} MiB`,
    );
    process.kill(runner, 'SIGTERM');
    await new Promise((r) => npm.once('close', r));
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
