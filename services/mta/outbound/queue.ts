// The outbound queue, on disk as Postfix keeps one: per message a file with
// the message (<id>.eml) and one with its envelope and delivery state
// (<id>.json). A message is in the queue once both are fsynced and the
// directory entry too; only then does the submitter hear 250. After a crash,
// everything with a state file is delivered; a message file without one was
// never acknowledged and is removed. A state file that cannot be read (empty
// or cut short by a full disk, say) is moved aside into damaged/ with its
// message, for a person to look at: one bad file never stops the MTA.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync } from 'node:fs';
import { open, readFile, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { replaceFile } from '../../lib/durable.ts';

export type RecipientStatus = 'queued' | 'delivered' | 'failed';

export interface QueueRecipient {
  address: string;
  status: RecipientStatus;
  attempts: number;
  lastReply?: string; // the last SMTP reply or error for this recipient
  remoteMta?: string;
  at?: string; // when it was delivered or failed
  attemptStartedAt?: string; // an attempt under way: saved, fsynced, before it connects
}

export interface QueueEntry {
  id: string;
  createdAt: string;
  mailFrom: string; // '' for a bounce
  recipients: QueueRecipient[];
  size: number;
  messageId?: string;
  origin: 'submission' | 'bounce' | 'forward' | 'report';
  submittedBy?: string;
  attempts: number;
  lastError?: string;
  nextAttemptAt: string;
}

export type NewEntry = Pick<QueueEntry, 'mailFrom' | 'messageId' | 'origin' | 'submittedBy'> & { recipients: string[] };

// What the MX queues (forwarding): the Queue itself, or, in an MX worker
// process, a writer that tells the first process (see mx-workers.ts). An
// entry is held, on disk, until the message it came from is stored and
// recorded, then released for delivery; a message the client hears 451
// about has its held entries discarded, never delivered.
export interface Enqueue {
  hold(message: Buffer, fields: NewEntry): Promise<QueueEntry>;
  release(entry: QueueEntry): void;
  discard(entry: QueueEntry): void;
}

// A state file found unreadable at start, and where it went.
export interface DamagedEntry {
  file: string;
  reason: string;
  movedTo: string;
}

// An entry whose delivery attempt was under way when the MTA stopped without
// finishing it (a crash, a kill): the receiver may have taken the message
// before the result was saved.
export interface InterruptedEntry {
  id: string;
  messageId?: string;
  recipients: string[];
  startedAt: string;
}

export class Queue implements Enqueue {
  private dir: string;
  private entries = new Map<string, QueueEntry>();
  readonly damaged: DamagedEntry[] = []; // the caller logs them
  readonly interrupted: InterruptedEntry[] = []; // likewise

  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
    for (const name of readdirSync(dir).filter((n) => n.endsWith('.json'))) {
      const file = join(dir, name);
      try {
        const entry = readState(file, name.slice(0, -5));
        this.resumeInterrupted(entry);
        this.entries.set(entry.id, entry);
      } catch (error) {
        this.damaged.push({ file, reason: (error as Error).message, movedTo: moveAside(dir, name.slice(0, -5)) });
      }
    }
    for (const name of readdirSync(dir)) {
      const orphan = name.endsWith('.eml') && !this.entries.has(name.slice(0, -4));
      if (orphan || name.endsWith('.tmp')) unlinkSync(join(dir, name));
    }
  }

  // The interrupted attempt counts, and its recipients are tried again: a
  // second copy is possible, a loss is not. Only what was in flight can be
  // delivered twice, once per crash.
  private resumeInterrupted(entry: QueueEntry): void {
    const recipients = entry.recipients.filter((r) => r.status === 'queued' && r.attemptStartedAt);
    if (!recipients.length) return;
    this.interrupted.push({ id: entry.id, messageId: entry.messageId, recipients: recipients.map((r) => r.address), startedAt: recipients[0].attemptStartedAt! });
    for (const r of recipients) {
      r.attempts++;
      r.lastReply = `the MTA stopped during the attempt begun at ${r.attemptStartedAt} (crash or kill): tried again, a second copy is possible`;
      delete r.attemptStartedAt;
    }
  }

  async add(message: Buffer, fields: NewEntry): Promise<QueueEntry> {
    const entry = await this.hold(message, fields);
    this.release(entry);
    return entry;
  }

  hold(message: Buffer, fields: NewEntry): Promise<QueueEntry> {
    return writeEntry(this.dir, message, fields);
  }

  release(entry: QueueEntry): void {
    this.entries.set(entry.id, entry);
  }

  discard(entry: QueueEntry): void {
    discardEntry(this.dir, entry.id);
  }

  // An entry that another process (an MX worker) wrote with writeEntry.
  adopt(id: string): void {
    if (!/^[0-9A-Z]+$/.test(id)) return;
    this.entries.set(id, JSON.parse(readFileSync(join(this.dir, `${id}.json`), 'utf8')) as QueueEntry);
  }

  async save(entry: QueueEntry): Promise<void> {
    await saveState(this.dir, entry);
    this.entries.set(entry.id, entry);
  }

  // Off the disk first, then off the list: the queue as listed is never
  // emptier than the queue on disk (the API said "empty" while a delivered
  // message's files were still being unlinked). Forgotten even if an unlink
  // fails, so that a delivered message is never attempted again.
  async remove(entry: QueueEntry): Promise<void> {
    try {
      await unlink(join(this.dir, `${entry.id}.json`));
      await unlink(join(this.dir, `${entry.id}.eml`));
    } finally {
      this.entries.delete(entry.id);
    }
  }

  message(entry: QueueEntry): Promise<Buffer> {
    return readFile(join(this.dir, `${entry.id}.eml`));
  }

  get(id: string): QueueEntry | undefined {
    return this.entries.get(id);
  }

  list(): QueueEntry[] {
    return [...this.entries.values()];
  }

  // Entries whose next attempt is due (ISO times in UTC compare as strings).
  *due(now = Date.now()): Generator<QueueEntry> {
    const time = new Date(now).toISOString();
    for (const entry of this.entries.values()) if (entry.nextAttemptAt <= time) yield entry;
  }
}

function readState(file: string, id: string): QueueEntry {
  const entry = JSON.parse(readFileSync(file, 'utf8')) as QueueEntry;
  if (entry?.id !== id || !Array.isArray(entry.recipients)) throw new Error(`not the state of queue entry ${id}`);
  return entry;
}

// <id>.json and <id>.eml into damaged/; returns that directory.
function moveAside(dir: string, id: string): string {
  const damaged = join(dir, 'damaged');
  mkdirSync(damaged, { recursive: true });
  for (const name of [`${id}.json`, `${id}.eml`]) {
    if (existsSync(join(dir, name))) renameSync(join(dir, name), join(damaged, name));
  }
  return damaged;
}

// A new message, durably in the queue directory once this returns.
export async function writeEntry(dir: string, message: Buffer, fields: NewEntry): Promise<QueueEntry> {
  const now = new Date().toISOString();
  const entry: QueueEntry = {
    ...fields,
    id: `${Date.now().toString(36)}${randomBytes(5).toString('hex')}`.toUpperCase(),
    createdAt: now,
    recipients: fields.recipients.map((address) => ({ address, status: 'queued', attempts: 0 })),
    size: message.length,
    attempts: 0,
    nextAttemptAt: now,
  };
  try {
    await writeFile(join(dir, `${entry.id}.eml`), message);
    await saveState(dir, entry);
  } catch (error) {
    discardEntry(dir, entry.id); // what a full disk let through is not left behind
    throw error;
  }
  return entry;
}

// Removes an entry's files, written whole or in part. Entries are removed
// this way only before anything delivers them (held, or never written).
export function discardEntry(dir: string, id: string): void {
  for (const name of [`${id}.json`, `${id}.json.tmp`, `${id}.eml`]) {
    try {
      unlinkSync(join(dir, name));
    } catch {
      // not written
    }
  }
}

// The state file is replaced whole (write, fsync, rename, fsync of the
// directory), after every attempt as at the first save: a file the rename
// made visible before its data reached the disk is empty after a crash.
function saveState(dir: string, entry: QueueEntry): Promise<void> {
  return replaceFile(join(dir, `${entry.id}.json`), JSON.stringify(entry));
}

async function writeFile(file: string, data: Buffer): Promise<void> {
  const handle = await open(file, 'w', 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}
