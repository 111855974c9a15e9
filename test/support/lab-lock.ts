// A lab that tests start is one per machine: the embedded lab listens on
// fixed addresses and ports (127.0.2.X with 10053, 10025, 10587, 8025, 8053),
// the Docker lab has one private daemon and namespace. node --test runs test
// files at the same time, and more than one test run may share a machine, so
// a file that starts a lab takes its lock first and they take turns. A lock
// is a file in the system's temporary directory holding the owner's pid; it
// is let go when that process exits, and a lock whose owner is gone (killed)
// is taken over.
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// The embedded lab: lab.test.ts, scenarios.test.ts and docker.test.ts.
export function lockEmbeddedLab(timeoutMs = 300_000): Promise<void> {
  return lock('embedded', timeoutMs);
}

// The Docker lab: docker.test.ts, which builds, starts and stops it in minutes.
export function lockDockerLab(timeoutMs = 1_800_000): Promise<void> {
  return lock('docker', timeoutMs);
}

async function lock(name: string, timeoutMs: number): Promise<void> {
  const file = join(tmpdir(), `mail-lab-${name}-lab.lock`);
  const holder = () => holderOf(file);
  const unlock = () => {
    if (holder() === process.pid) unlinkSync(file);
  };
  for (const deadline = Date.now() + timeoutMs; ; await new Promise((r) => setTimeout(r, 200))) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      process.once('exit', unlock);
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== 'EEXIST') throw error;
    }
    const owner = holder();
    if (owner && !alive(owner)) unlinkSync(file); // its test process was killed
    if (Date.now() > deadline) throw new Error(`the ${name} lab stayed locked by process ${owner} for ${timeoutMs / 1000} s (${file})`);
  }
}

// The pid in a lock file; 0 when there is none (yet).
function holderOf(file: string): number {
  try {
    return Number(readFileSync(file, 'utf8').trim() || 0);
  } catch {
    return 0;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === 'EPERM';
  }
}
