// The MX's write-ahead log: what makes an accepted message durable before
// its 250, with one fdatasync where it took three.
//
// A message is durable when its Maildir copies and its session record are.
// Syncing each of them (the copy, its new/ directory, the session file) cost
// three fsyncs a message, which on this project's virtual disk took more of
// the MX's rate than the checks do (508 messages a second; 784 without the
// fsyncs, 716 without the checks). Instead the MX writes the copies and the
// record's line as before, unsynced, and appends one entry holding all of it
// (the message once, each copy's trace header fields, the record's new
// lines) to this log, which is fdatasynced: that is the durable point, and
// sessions arriving together share one fdatasync (group commit). About once a
// second a checkpoint syncs the whole file system (syncfs) and deletes the
// log files it covers: from then on the files themselves are on disk.
//
// A crash of the machine before a checkpoint can lose the unsynced files;
// the next start restores them from the log (recover below) before anything
// reads a mailbox or a session record. A crash of the MTA alone loses
// nothing: what it wrote is in the kernel's page cache, and the log files it
// leaves are checked and deleted at the next start.
//
// Each process writing mail (the MX, each MX worker) has log files of its
// own in <dataDir>/wal/, named by start time, pid and number, so that name
// order is write order.
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { unlink } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import type { Logger } from '../../lib/log.ts';
import { FileSystemSync, SharedSync, syncDirectory, syncFileData, writeAll } from '../../lib/durable.ts';

// What one entry makes durable: paths are absolute here, relative to the
// data directory in the log.
export interface Entry {
  message?: Buffer; // the message as received, shared by its copies
  copies: { path: string; prefix: string }[]; // Maildir files in new/: trace header fields + message
  session?: { file: string; text: string }; // lines the session file must hold
}

// How often the log files written so far are made unnecessary by a syncfs.
export const CHECKPOINT_MS = 1000;

const MAGIC = 'mail-lab-wal';
const HEADER_LINE = new RegExp(`^${MAGIC} (\\d+) (\\d+) ([0-9a-f]+)$`);

interface LogFile {
  path: string;
  fd: number;
  size: number; // bytes of whole entries
  shared: SharedSync; // fdatasync of this file, shared by concurrent commits
  named: Promise<void>; // its directory entry is durable
  syncing: Set<Promise<void>>; // commits waiting for the disk: the file stays open for them
}

export class WriteAheadLog {
  private dir: string;
  private base: string; // the data directory the entries' paths are relative to
  private log: Logger;
  private current?: LogFile;
  private covered: LogFile[] = []; // written to, waiting for the next checkpoint
  private checkpointing?: Promise<void>;
  private timer?: NodeJS.Timeout;
  private fileSystem = new FileSystemSync();
  private made = 0;

  constructor(dir: string, log: Logger) {
    this.dir = dir;
    this.base = dirname(resolve(dir));
    this.log = log;
  }

  // Appends the entry and resolves once it is on disk.
  async commit(entry: Entry): Promise<void> {
    const file = (this.current ??= this.open());
    const data = frame(entry, this.base);
    try {
      writeAll(file.fd, data);
    } catch (error) {
      // A full disk: the part written is cut off again, so that it neither
      // holds the space nor stands between the entries before and after it.
      if (!this.cut(file)) this.retire();
      throw error;
    }
    file.size += data.length;
    const durable = file.named.then(() => file.shared.sync());
    file.syncing.add(durable);
    try {
      await durable;
    } catch (error) {
      // What an fdatasync that failed left on disk is unknown: later entries
      // go to a new file. This one is kept until a checkpoint.
      if (this.current === file) this.retire();
      throw error;
    } finally {
      file.syncing.delete(durable);
    }
  }

  // Makes every file written so far durable with one syncfs, then deletes
  // the log files that held them. Runs about once a second while mail comes
  // in, and at close.
  checkpoint(): Promise<void> {
    this.checkpointing ??= this.runCheckpoint().finally(() => (this.checkpointing = undefined));
    return this.checkpointing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.checkpointing;
    await this.checkpoint();
    this.fileSystem.close();
  }

  private open(): LogFile {
    mkdirSync(this.dir, { recursive: true });
    const path = join(this.dir, `${Date.now()}-${process.pid}-${++this.made}.wal`);
    const fd = openSync(path, 'a', 0o600);
    this.timer ??= setInterval(() => void this.checkpoint(), CHECKPOINT_MS).unref();
    const named = syncDirectory(this.dir);
    named.catch(() => undefined); // its failure is the commits' to report, and there may be none (a full disk)
    return { path, fd, size: 0, shared: new SharedSync(() => syncFileData(fd)), named, syncing: new Set() };
  }

  private cut(file: LogFile): boolean {
    try {
      ftruncateSync(file.fd, file.size);
      return true;
    } catch {
      return false;
    }
  }

  private retire(): void {
    if (this.current) this.covered.push(this.current);
    this.current = undefined;
  }

  private async runCheckpoint(): Promise<void> {
    this.retire();
    const files = this.covered;
    if (!files.length) return;
    this.covered = [];
    // The commits under way finish first: a file is closed only after them.
    await Promise.allSettled(files.flatMap((f) => [...f.syncing]));
    try {
      await this.fileSystem.sync(this.base);
    } catch (error) {
      this.log.error({ err: error, files: files.map((f) => f.path) }, 'checkpoint failed: the write-ahead log files are kept, and the next checkpoint tries again');
      this.covered.unshift(...files);
      return;
    }
    for (const file of files) {
      closeSync(file.fd);
      // In the thread pool: on a disk mounted with discard, unlinking a file
      // of a second's mail waits for the device (4 ms for 3 MB here).
      await unlink(file.path);
    }
  }
}

// One entry on disk: a header line, then the bytes its header counts, then
// their CRC-32. A crash can tear only entries written after the last
// fdatasync, none of which was acknowledged: reading stops at the first
// entry that is not whole.
//   mail-lab-wal <JSON length> <bytes length> <crc32 hex>\n<JSON><bytes>
interface Header {
  messageSize: number;
  copies: { path: string; prefixSize: number }[];
  session?: { file: string; textSize: number };
}

function frame(entry: Entry, base: string): Buffer {
  const prefixes = entry.copies.map((c) => Buffer.from(c.prefix));
  const text = entry.session && Buffer.from(entry.session.text);
  const message = entry.message ?? Buffer.alloc(0);
  const header: Header = {
    messageSize: message.length,
    copies: entry.copies.map((c, i) => ({ path: relative(base, c.path), prefixSize: prefixes[i].length })),
    session: entry.session && { file: relative(base, entry.session.file), textSize: text!.length },
  };
  const json = Buffer.from(JSON.stringify(header));
  const body = Buffer.concat([json, message, ...prefixes, ...(text ? [text] : [])]);
  return Buffer.concat([Buffer.from(`${MAGIC} ${json.length} ${body.length - json.length} ${crc32(body).toString(16)}\n`), body]);
}

// The whole entries of one log file, in order.
export function readEntries(data: Buffer, base: string): Entry[] {
  const entries: Entry[] = [];
  for (let at = 0; at < data.length; ) {
    const end = data.indexOf(10, at);
    const match = end !== -1 && HEADER_LINE.exec(data.toString('latin1', at, end));
    if (!match) break;
    const [json, bytes] = [Number(match[1]), Number(match[2])];
    const body = data.subarray(end + 1, end + 1 + json + bytes);
    if (body.length !== json + bytes || crc32(body).toString(16) !== match[3]) break;
    const header = JSON.parse(body.toString('utf8', 0, json)) as Header;
    let offset = json;
    const take = (size: number) => body.subarray(offset, (offset += size));
    const message = take(header.messageSize);
    const copies = header.copies.map((c) => ({ path: resolve(base, c.path), prefix: take(c.prefixSize).toString() }));
    const session = header.session && { file: resolve(base, header.session.file), text: take(header.session.textSize).toString() };
    // Only files of the data directory: an entry naming another is not the MX's.
    if (![...copies.map((c) => c.path), ...(session ? [session.file] : [])].every((p) => p.startsWith(`${base}${sep}`))) break;
    entries.push({ message, copies, session });
    at = end + 1 + json + bytes;
  }
  return entries;
}

export interface Recovered {
  logs: number; // log files read
  copies: string[]; // Maildir files written again
  sessions: string[]; // session files whose lines were appended again
}

// At start, before anything reads or writes mail or session records: every
// acknowledged message and record line in the log files that no checkpoint
// removed is made sure of on disk, then the files are deleted. A copy already
// there whole (in new/, or in cur/ where a mail client moved it) and lines a
// session file already holds are left as they are; the rest is written
// again, and one syncfs makes it durable before the logs go.
export async function recover(dir: string): Promise<Recovered> {
  const recovered: Recovered = { logs: 0, copies: [], sessions: [] };
  if (!existsSync(dir)) return recovered;
  const base = dirname(resolve(dir));
  const logs = readdirSync(dir).filter((name) => name.endsWith('.wal')).sort();
  const sessions = new Map<string, string>(); // session file -> its text, read once
  for (const name of logs) {
    for (const entry of readEntries(readFileSync(join(dir, name)), base)) {
      for (const copy of entry.copies) {
        if (restoreCopy(copy.path, Buffer.concat([Buffer.from(copy.prefix), entry.message!]))) recovered.copies.push(copy.path);
      }
      const file = entry.session?.file;
      if (file && restoreLines(file, entry.session!.text, sessions) && !recovered.sessions.includes(file)) recovered.sessions.push(file);
    }
    recovered.logs++;
  }
  if (!logs.length) return recovered;
  const fileSystem = new FileSystemSync();
  try {
    await fileSystem.sync(base);
  } finally {
    fileSystem.close();
  }
  for (const name of logs) unlinkSync(join(dir, name));
  await syncDirectory(dir);
  return recovered;
}

// A Maildir copy, whole, in new/ or cur/ (where its name gains ":2,flags").
function restoreCopy(path: string, data: Buffer): boolean {
  const folder = dirname(dirname(path));
  const id = basename(path);
  const cur = join(folder, 'cur');
  const moved = existsSync(cur) ? readdirSync(cur).filter((n) => n === id || n.startsWith(`${id}:`)).map((n) => join(cur, n)) : [];
  const found = [path, ...moved].filter((p) => existsSync(p));
  if (found.some((p) => readFileSync(p).equals(data))) return false;
  for (const sub of ['tmp', 'new', 'cur']) mkdirSync(join(folder, sub), { recursive: true, mode: 0o700 });
  const temporary = join(folder, 'tmp', id);
  writeFileSync(temporary, data, { mode: 0o600 });
  renameSync(temporary, found.at(-1) ?? path);
  return true;
}

// A session file holding the lines; appended when it does not.
function restoreLines(file: string, text: string, read: Map<string, string>): boolean {
  if (!read.has(file)) read.set(file, existsSync(file) ? readFileSync(file, 'utf8') : '');
  const existing = read.get(file)!;
  if (existing.includes(text)) return false;
  mkdirSync(dirname(file), { recursive: true });
  // After a line torn by the crash, a new line.
  const added = `${existing && !existing.endsWith('\n') ? '\n' : ''}${text}`;
  writeFileSync(file, added, { flag: 'a', mode: 0o600 });
  read.set(file, existing + added);
  return true;
}
