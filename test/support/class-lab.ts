// The embedded lab as the class tests start it: `npm run lab` for a class
// directory (LAB_CLASS), one at a time on this machine (lab-lock.ts), on the
// lab's fixed ports, which must be free.
import { spawn, type ChildProcess } from 'node:child_process';
import { readLab, root } from '../../scripts/lab/compose.ts';
import { findPortProblems } from '../../scripts/lab/preflight.ts';
import { lockEmbeddedLab } from './lab-lock.ts';

// Takes the lock; then why the tests must be skipped (ports taken by a lab
// someone runs), or false. Under CI taken ports are a failure.
export async function claimEmbeddedLab(): Promise<string | false> {
  await lockEmbeddedLab();
  const busy = (await findPortProblems(readLab().services)).busy;
  if (busy.length > 0 && process.env.CI === 'true') throw new Error(`the embedded lab's ports are taken: ${busy.join(', ')}`);
  return busy.length > 0 && `the embedded lab's ports are taken (is a lab running?): ${busy.join(', ')}`;
}

// Resolves when the lab says it is ready. fresh: its data directory emptied
// first. env: more environment for every service (MTA_MX_WORKERS).
export async function startClassLab(classDir: string, dataDir: string, fresh = true, env: Record<string, string> = {}): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['scripts/lab.ts', ...(fresh ? ['--fresh'] : []), '--data-dir', dataDir], { cwd: root, env: { ...process.env, ...env, LAB_CLASS: classDir }, stdio: ['ignore', 'ignore', 'pipe'] });
  let said = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (said += chunk));
  for (const deadline = Date.now() + 40_000; !/lab ready in \d+ ms/.test(said); await new Promise((r) => setTimeout(r, 50))) {
    if (child.exitCode !== null) throw new Error(`the lab exited (${child.exitCode}):\n${said}`);
    if (Date.now() > deadline) throw new Error(`the lab was not ready within 40 s:\n${said}`);
  }
  return child;
}

export async function stopClassLab(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}
