// Child processes for benchmarks: start, wait until they serve, time a run,
// stop. Every wait is bounded, and every child is killed when the script
// ends, however it ends (normally, on an error, on Ctrl-C).
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => process.exit(signal === 'SIGINT' ? 130 : 143));
}

// A child whose stdout is ignored and whose stderr is shown.
export function start(command: string, args: string[], options: SpawnOptions = {}): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'inherit'], ...options });
  children.add(child);
  child.once('exit', () => children.delete(child));
  child.on('error', (error) => {
    process.stderr.write(`${command}: ${error.message}\n`);
  });
  return child;
}

// The command line that runs a program on one CPU (taskset), or on any.
export function onCpu(cpu: number | undefined, command: string, args: string[]): [string, string[]] {
  return cpu === undefined ? [command, args] : ['taskset', ['-c', String(cpu), command, ...args]];
}

// A port nobody listens on right now.
export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

// Waits until `ready` resolves true; fails once the child exits or the time is up.
async function waitUntil(what: string, child: ChildProcess, ready: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ready())) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited while starting`);
    if (Date.now() > deadline) throw new Error(`${what} did not start within ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export function waitForPort(what: string, child: ChildProcess, host: string, port: number, timeoutMs?: number): Promise<void> {
  const accepts = () =>
    new Promise<boolean>((resolve) => {
      const socket = connect({ host, port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
  return waitUntil(what, child, accepts, timeoutMs);
}

export function waitForHttp(what: string, child: ChildProcess, url: string): Promise<void> {
  return waitUntil(what, child, () => fetch(url).then((r) => r.ok, () => false));
}

// Runs a command to its end, at most timeoutMs; returns its exit status, stderr and seconds taken.
export function timed(command: string, args: string[], timeoutMs: number): Promise<{ status: number | null; stderr: string; seconds: number }> {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    const child = start(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => {
      stderr += `killed after ${timeoutMs / 1000} s\n`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stderr, seconds: Number(process.hrtime.bigint() - started) / 1e9 });
    });
  });
}

// SIGTERM, then SIGKILL if it has not gone within 5 s.
export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

// The process's peak resident set size (VmHWM), in MiB.
export function peakRssMiB(pid: number): number {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) / 1024 : NaN;
}
