// Mailboxes as Maildir (cur/new/tmp), Junk as the Maildir++ folder .Junk.
// A copy is written in tmp/ and renamed into new/, so that a reader never
// sees part of one. The MX makes the copies of a message it accepts durable
// through its write-ahead log (write-ahead-log.ts): one fdatasync there for
// the copies and the session record, where an fsync of each copy and of
// new/ had cost more than the checks; a checkpoint then syncs the files.
//
// Opening, writing a few kilobytes into the page cache, renaming and closing
// take microseconds, and are done here and now, as Postfix does. (Each trip
// through the thread pool cost more CPU than the call it carried: a fifth of
// the receiver's rate under load.)
import { closeSync, openSync, renameSync, unlinkSync } from 'node:fs';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { syncDirectory, writeAll } from '../../lib/durable.ts';


export type Folder = 'INBOX' | 'Junk';

export interface Delivery {
  id: string; // the file's unique name, also the message's id in the API
  mailbox: string; // local@domain
  folder: Folder;
  path: string;
}

let counter = 0;

export class Maildir {
  readonly root: string;
  private host: string;
  private made = new Set<string>();

  constructor(root: string, host = hostname()) {
    this.root = root;
    this.host = host.replace(/[/:]/g, '_');
  }

  folderPath(mailbox: string, folder: Folder): string {
    const [local, domain] = splitMailbox(mailbox);
    const base = join(this.root, domain, local);
    return folder === 'INBOX' ? base : join(base, `.${folder}`);
  }

  // A message for several recipients is stored in two steps, so that a
  // failure in between leaves nothing behind: write() puts each copy in
  // tmp/, commit() moves all of them into new/, and discard() removes them
  // wherever they are. A copy written for a message the client then hears
  // 451 about would arrive a second time when it retries. The copy is its
  // trace header fields, then the message.
  async write(mailbox: string, folder: Folder, prefix: string, message: Buffer): Promise<Delivery> {
    const dir = this.folderPath(mailbox, folder);
    await this.ensure(dir);
    // Maildir unique name: time, then what makes it unique on this host.
    const now = Date.now();
    const id = `${Math.floor(now / 1000)}.M${(now % 1000) * 1000}P${process.pid}Q${++counter}.${this.host}`;
    const temporary = join(dir, 'tmp', id);
    const fd = openSync(temporary, 'wx', 0o600);
    try {
      writeAll(fd, Buffer.from(prefix));
      writeAll(fd, message);
    } catch (error) {
      removeQuietly(temporary); // a partial copy (a full disk) is not left in tmp/
      throw error;
    } finally {
      closeSync(fd);
    }
    return { id, mailbox, folder, path: join(dir, 'new', id) };
  }

  // Into new/: from here the copies are in the mailboxes.
  commit(deliveries: Delivery[]): void {
    for (const d of deliveries) renameSync(temporaryPath(d), d.path);
  }

  // Removes copies written or committed; unlinking needs no free space.
  discard(deliveries: Delivery[]): void {
    for (const d of deliveries) {
      removeQuietly(temporaryPath(d));
      removeQuietly(d.path);
    }
  }

  // Partial copies a crash or kill left in tmp/: a Maildir writer removes
  // them (the MTA is the only one writing here, and calls this before it
  // delivers anything). Returns the files removed.
  async cleanTemporary(): Promise<string[]> {
    const removed: string[] = [];
    for (const domain of await entries(this.root)) {
      for (const local of await entries(join(this.root, domain))) {
        for (const folder of ['INBOX', 'Junk'] as Folder[]) {
          const tmp = join(this.folderPath(`${local}@${domain}`, folder), 'tmp');
          for (const name of await entries(tmp)) {
            removeQuietly(join(tmp, name));
            removed.push(join(tmp, name));
          }
        }
      }
    }
    return removed;
  }

  // The mailboxes and folders on disk, with message counts.
  async list(): Promise<{ mailbox: string; folders: { folder: Folder; messages: number; unseen: number }[] }[]> {
    const result = [];
    for (const domain of await entries(this.root)) {
      for (const local of await entries(join(this.root, domain))) {
        const mailbox = `${local}@${domain}`;
        const folders = [];
        for (const folder of ['INBOX', 'Junk'] as Folder[]) {
          const dir = this.folderPath(mailbox, folder);
          const unseen = (await entries(join(dir, 'new'))).length;
          folders.push({ folder, messages: unseen + (await entries(join(dir, 'cur'))).length, unseen });
        }
        result.push({ mailbox, folders });
      }
    }
    return result;
  }

  async read(delivery: Pick<Delivery, 'mailbox' | 'folder' | 'id'>): Promise<Buffer | undefined> {
    const dir = this.folderPath(delivery.mailbox, delivery.folder);
    // A mail client may have moved it to cur/ (and added flags after ":2,").
    for (const sub of ['new', 'cur']) {
      for (const name of await entries(join(dir, sub))) {
        if (name === delivery.id || name.startsWith(`${delivery.id}:`)) return readFile(join(dir, sub, name));
      }
    }
    return undefined;
  }

  private async ensure(dir: string): Promise<void> {
    if (this.made.has(dir)) return;
    for (const sub of ['tmp', 'new', 'cur']) await mkdir(join(dir, sub), { recursive: true, mode: 0o700 });
    // The new directories themselves must survive a crash too.
    await syncDirectory(dir);
    await syncDirectory(join(dir, '..'));
    this.made.add(dir);
  }
}

export function splitMailbox(mailbox: string): [string, string] {
  const at = mailbox.lastIndexOf('@');
  return [mailbox.slice(0, at).toLowerCase(), mailbox.slice(at + 1).toLowerCase()];
}

const temporaryPath = (d: Delivery) => join(dirname(dirname(d.path)), 'tmp', basename(d.path));

function removeQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}

async function entries(dir: string): Promise<string[]> {
  try {
    if (!(await stat(dir)).isDirectory()) return [];
    return (await readdir(dir)).filter((name) => !name.startsWith('.'));
  } catch {
    return [];
  }
}
