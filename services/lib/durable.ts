// Making writes durable: what an MTA acknowledges (mail, session records,
// the queue) and what the lab keeps (students' zones and keys, results,
// report state) must survive a crash whole, or be found as it was before.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fdatasync, fsync, openSync, writeSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
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

// Writes out everything written to the file system that holds a path and
// waits for the disk: syncfs(2), which Node has no call for, run by
// coreutils' sync --file-system. One syncfs makes the files of thousands of
// messages durable for about the price of one fsync.
//
// A helper shell started once runs it: forking the MTA itself each time cost
// more than the syncfs (7 to 14 ms with the event loop stopped for a process
// of 400 MB, and a fork write-protects every page of the heap, so that the
// next write to each page faults).
const HELPER = 'while IFS= read -r path; do if out=$(sync --file-system -- "$path" 2>&1); then echo ok; else echo "failed: $(printf %s "$out" | tr "\\n" " ")"; fi; done';

export class FileSystemSync {
  private helper?: { child: ChildProcess; waiting: { resolve(): void; reject(error: Error): void }[] };

  sync(path: string): Promise<void> {
    if (path.includes('\n')) return Promise.reject(new Error(`cannot sync ${JSON.stringify(path)}: a path with a newline`));
    const helper = (this.helper ??= this.start());
    return new Promise((resolve, reject) => {
      // An answer awaited keeps this process alive; an idle helper does not.
      if (helper.waiting.push({ resolve, reject }) === 1) reffed(helper.child.stdout!, true);
      helper.child.stdin!.write(`${path}\n`);
    });
  }

  // The helper ends when its input does (and when this process does).
  close(): void {
    this.helper?.child.stdin!.end();
    this.helper = undefined;
  }

  private start(): NonNullable<FileSystemSync['helper']> {
    const child = spawn('/bin/sh', ['-c', HELPER], { stdio: ['pipe', 'pipe', 'ignore'] });
    const helper = { child, waiting: [] as { resolve(): void; reject(error: Error): void }[] };
    child.unref();
    reffed(child.stdin!, false);
    reffed(child.stdout!, false);
    child.stdin!.on('error', () => undefined); // it exited: told below
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const waiting = helper.waiting.shift();
      if (!helper.waiting.length) reffed(child.stdout!, false);
      if (line === 'ok') waiting?.resolve();
      else waiting?.reject(new Error(`sync --file-system ${line}`));
    });
    const gone = (why: string) => {
      if (this.helper === helper) this.helper = undefined;
      for (const { reject } of helper.waiting.splice(0)) reject(new Error(`the sync helper ${why}`));
    };
    child.on('error', (error) => gone(`could not run: ${error.message}`));
    child.on('exit', (code, signal) => gone(`exited (${signal ?? `code ${code}`})`));
    return helper;
  }
}

// A pipe's socket keeps the event loop alive, or not.
const reffed = (pipe: object, on: boolean) => (pipe as { ref(): void; unref(): void })[on ? 'ref' : 'unref']();

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
