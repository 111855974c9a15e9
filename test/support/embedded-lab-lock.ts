// The embedded lab listens on fixed addresses and ports (127.0.2.X with
// 10053, 10025, 10587, 8025, 8053), and node --test runs test files at the
// same time. The files that start it (lab.test.ts, scenarios.test.ts) take
// this lock first, at the top of the file, so they take turns. The lock is
// a file in the system's temporary directory holding the owner's pid; it
// is let go when that process exits, and a lock whose owner is gone (killed)
// is taken over.
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const file = join(tmpdir(), 'mail-lab-embedded-lab.lock');

export async function lockEmbeddedLab(timeoutMs = 300_000): Promise<void> {
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
    if (Date.now() > deadline) throw new Error(`the embedded lab stayed locked by process ${owner} for ${timeoutMs / 1000} s (${file})`);
  }
}

function unlock(): void {
  if (holder() === process.pid) unlinkSync(file);
}

// The pid in the lock file; 0 when there is none (yet).
function holder(): number {
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
