// One service as a child process: started with its translated environment,
// its output read line by line, its last lines kept to show when it dies.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { root, type LabService } from './compose.ts';
import type { Stream } from './logs.ts';

const KEPT_LINES = 20;

export interface Child {
  service: LabService;
  process: ChildProcess;
  lastLines: { text: string; stream: Stream }[];
  closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>; // exited, output read to the end
}

export function startService(service: LabService, env: Record<string, string>, onLine: (child: Child, text: string, stream: Stream) => void): Child {
  const [command, ...args] = service.command;
  const proc = spawn(command, args, {
    cwd: root,
    env: { ...process.env, ...service.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group: a Ctrl-C at the terminal reaches the runner
    // alone, which then stops each service once.
    detached: true,
  });
  const child: Child = {
    service,
    process: proc,
    lastLines: [],
    closed: new Promise((resolve) => {
      proc.once('close', (code, signal) => resolve({ code, signal }));
      // A command that cannot start at all: the error says why.
      proc.once('error', (error) => {
        child.lastLines.push({ text: `cannot run ${command}: ${error.message}`, stream: 'stderr' });
        resolve({ code: null, signal: null });
      });
    }),
  };
  for (const stream of ['stdout', 'stderr'] as const) {
    createInterface({ input: proc[stream] }).on('line', (text) => {
      child.lastLines.push({ text, stream });
      if (child.lastLines.length > KEPT_LINES) child.lastLines.shift();
      onLine(child, text, stream);
    });
  }
  return child;
}

export function running(child: Child): boolean {
  return child.process.exitCode === null && child.process.signalCode === null && child.process.pid !== undefined;
}

// SIGTERM lets the service close its listeners and flush its log; one that
// is still there after the grace period is killed.
export async function stopService(child: Child, graceMs = 5000): Promise<void> {
  if (running(child)) child.process.kill('SIGTERM');
  const timer = setTimeout(() => child.process.kill('SIGKILL'), graceMs);
  await child.closed;
  clearTimeout(timer);
}
