// Making writes durable: what an MTA acknowledges (mail, session records,
// the queue) and what the lab keeps (students' zones and keys, results,
// report state) must survive a crash whole, or be found as it was before.
import { execFile } from 'node:child_process';
import { closeSync, fdatasync, fsync, openSync, writeSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { promisify } from 'node:util';

export const syncFile = promisify(fsync);
export const syncFileData = promisify(fdatasync);

export function writeAll(fd: number, data: Buffer): void {
  for (let written = 0; written < data.length; ) written += writeSync(fd, data, written);
}

// One fsync shared by whoever asks while another is under way: each caller
// is told once an fsync that started after its call has finished, so that
// concurrent callers cost one fsync between them, not one each (group commit).
export class SharedSync {
  private run: () => Promise<void>;
  private next?: Promise<void>; // not started yet: whoever comes now joins it
  private running: Promise<void> = Promise.resolve();

  constructor(run: () => Promise<void>) {
    this.run = run;
  }

  sync(): Promise<void> {
    if (this.next) return this.next;
    const sync = this.running
      .catch(() => undefined)
      .then(() => {
        this.next = undefined;
        return this.run();
      });
    this.next = sync;
    this.running = sync;
    return sync;
  }
}

// Makes the entries of a directory durable, with one fsync for the callers
// that come while one runs (concurrent deliveries into one folder).
const directories = new Map<string, SharedSync>();

export function syncDirectory(dir: string): Promise<void> {
  let shared = directories.get(dir);
  if (!shared) directories.set(dir, (shared = new SharedSync(() => fsyncDirectory(dir))));
  return shared.sync();
}

async function fsyncDirectory(dir: string): Promise<void> {
  const fd = openSync(dir, 'r');
  try {
    await syncFile(fd);
  } finally {
    closeSync(fd);
  }
}

// Writes out everything written to the file system that holds `path` and
// waits for the disk (syncfs(2), through coreutils' sync --file-system: Node
// has no call for it). One syncfs makes the files of thousands of messages
// durable for about the price of one fsync.
export function syncFileSystem(path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('sync', ['--file-system', path], (error, _stdout, stderr) => {
      if (error) reject(new Error(`sync --file-system ${path} failed: ${stderr.trim() || error.message}`));
      else resolve();
    });
  });
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
