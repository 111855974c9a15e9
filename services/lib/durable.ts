// Making writes durable: what an MTA acknowledges (mail, session records,
// the queue) and what the lab keeps (students' zones and keys, results,
// report state) must survive a crash whole, or be found as it was before.
import { closeSync, fdatasync, fsync, openSync, writeSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { promisify } from 'node:util';

export const syncFile = promisify(fsync);
export const syncFileData = promisify(fdatasync);

export function writeAll(fd: number, data: Buffer): void {
  for (let written = 0; written < data.length; ) written += writeSync(fd, data, written);
}

// Makes the entries of a directory durable: resolves once an fsync of it
// that started after the call has finished. Callers that come while one runs
// share the next, so concurrent deliveries into one folder cost one
// directory fsync between them, not one each.
const nextSync = new Map<string, Promise<void>>(); // not started yet: whoever comes now joins it
const runningSync = new Map<string, Promise<void>>();

export function syncDirectory(dir: string): Promise<void> {
  let sync = nextSync.get(dir);
  if (sync) return sync;
  const running = runningSync.get(dir) ?? Promise.resolve();
  sync = running
    .catch(() => undefined)
    .then(() => {
      nextSync.delete(dir);
      runningSync.set(dir, sync!);
      return fsyncDirectory(dir);
    })
    .finally(() => {
      if (runningSync.get(dir) === sync) runningSync.delete(dir);
    });
  nextSync.set(dir, sync);
  return sync;
}

async function fsyncDirectory(dir: string): Promise<void> {
  const fd = openSync(dir, 'r');
  try {
    await syncFile(fd);
  } finally {
    closeSync(fd);
  }
}

// Replaces a file whole: written beside it, fsynced, renamed over it, its
// directory fsynced. A crash leaves the old file or the new one, never a part.
export async function replaceFile(file: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const temporary = `${file}.tmp`;
  const handle = await open(temporary, 'w', mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, file);
  await syncDirectory(dirname(file));
}
