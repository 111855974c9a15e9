// The durable record of every SMTP session, accepted or not: transcript,
// envelope, DNS questions, check results, decision, where the mail went.
// One file per session, a journal of JSON lines: each save appends only what
// is new since the last one, so that saving after each message costs that
// message, not the whole session again. A save that decides a message is
// durable before the reply goes out: its lines, and the Maildir copies of a
// message it accepts, go into one entry of the write-ahead log
// (write-ahead-log.ts). The newest `kept` are kept.
//
// Two parts: the journal writes the files, the store keeps the index that
// the API lists and searches, and the retention. In one process the store
// writes through its own journal; with MX worker processes, each worker has
// a journal and tells the store in the first process what it saved.
//
// A record without an end that the store finds when it opens was left open
// by an MTA that stopped without closing it (a crash, kill -9): the store
// closes it then, marked interrupted (see closeInterrupted).
import { closeSync, fdatasyncSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Question } from '../../lib/resolver.ts';
import type { Decision } from '../inbound/decide.ts';
import type { Delivery } from './maildir.ts';
import type { Verdict } from '../inbound/verify.ts';
import type { Forwarded } from '../outbound/forward.ts';
import { writeAll } from '../../lib/durable.ts';
import type { WriteAheadLog } from './write-ahead-log.ts';

export interface TranscriptLine {
  at: string;
  line: string; // "C: MAIL FROM:<a@b>" or "S: 250 2.1.0 Accepted"
}

export interface Transaction {
  at: string;
  envelope: { mailFrom: string; rcptTo: string[] };
  message?: { messageId?: string; from?: string; subject?: string; size: number };
  checks?: Omit<Verdict, 'headers' | 'dns' | 'arcSealInput'>;
  dns: Question[];
  decision: Decision | { disposition: 'refused'; code: number; enhanced: string; reason: string };
  deliveries: Omit<Delivery, 'path'>[];
  forwarded?: Forwarded[]; // what an alias or list sent on, through the queue
}

export interface SessionRecord {
  id: string;
  instance: string;
  startedAt: string;
  endedAt?: string;
  interrupted?: Interrupted; // closed at start, not by the session itself
  client: { address: string; port: number; hostname?: string; helo?: string };
  tls?: { protocol?: string; cipher?: string };
  transcript: TranscriptLine[];
  transactions: Transaction[]; // of a live session: those not yet saved (SessionJournal.save)
}

// A session's transcript is bounded, whatever the client sends: 600 MB of
// NOOPs made the record longer than a string can be (RangeError) and it was
// lost. The first TRANSCRIPT_HEAD lines are kept as they come, then only the
// last TRANSCRIPT_TAIL; when the session ends, a marker line says how many
// were left out between, and the last lines follow it. A line longer than
// TRANSCRIPT_LINE characters is cut, saying by how much.
export const TRANSCRIPT_HEAD = 500;
export const TRANSCRIPT_TAIL = 500;
export const TRANSCRIPT_LINE = 1000;

export class TranscriptKeeper {
  private record: SessionRecord;
  private tail: TranscriptLine[] = []; // a ring: line n of the tail is at n % TRANSCRIPT_TAIL
  private past = 0; // lines that came after the head

  constructor(record: SessionRecord) {
    this.record = record;
  }

  add(at: string, text: string): void {
    const over = text.length - TRANSCRIPT_LINE;
    const line = { at, line: over > 0 ? `${text.slice(0, TRANSCRIPT_LINE)}... (${over} more characters)` : text };
    if (this.record.transcript.length < TRANSCRIPT_HEAD && this.past === 0) this.record.transcript.push(line);
    else this.tail[this.past++ % TRANSCRIPT_TAIL] = line;
  }

  // At the session's end: the marker, then the last lines in order.
  finish(): void {
    const left = this.past - TRANSCRIPT_TAIL;
    const start = left > 0 ? this.past % TRANSCRIPT_TAIL : 0;
    const last = [...this.tail.slice(start), ...this.tail.slice(0, start)];
    if (left > 0) {
      this.record.transcript.push({ at: last[0].at, line: `[${left} lines left out: the transcript keeps the first ${TRANSCRIPT_HEAD} and the last ${TRANSCRIPT_TAIL}]` });
    }
    this.record.transcript.push(...last);
    this.tail = [];
    this.past = 0;
  }
}

// Why a session ended without its own end, and what its end time rests on.
export interface Interrupted {
  reason: string;
  foundAt: string; // when the MTA, starting, found it open
  endedAtFrom: string; // the evidence for endedAt
}

// What the list and the filters need, kept in memory.
export interface SessionSummary {
  id: string;
  startedAt: string;
  endedAt?: string;
  interrupted?: Interrupted;
  client: string;
  messageIds: string[];
  recipients: string[];
  dispositions: string[];
  deliveries: Omit<Delivery, 'path'>[];
}

// One line of a session's file: the record's own fields as they are now,
// and the transcript lines and transactions from the given positions on.
type Update = Omit<SessionRecord, 'transcript' | 'transactions'> & {
  transcriptFrom: number;
  transcript: TranscriptLine[];
  transactionsFrom: number;
  transactions: Transaction[];
};

interface TransactionSummary {
  messageId?: string;
  recipients: string[];
  disposition: string;
  deliveries: Omit<Delivery, 'path'>[];
}

interface Entry {
  id: string;
  startedAt: string;
  endedAt?: string;
  interrupted?: Interrupted;
  client: string;
  file: string;
  transactions: TransactionSummary[];
}

// What one save added, for the index.
export interface SessionNote {
  id: string;
  startedAt: string;
  endedAt?: string;
  client: string;
  file: string;
  transactionsFrom: number;
  transactions: TransactionSummary[];
}

// How much of a live session's record its file holds.
interface Written {
  fd?: number; // open while the session lasts
  transcript: number;
  transactions: number;
  unsynced: string; // lines appended since the last durable save: the next one carries them
  torn: boolean; // the last append failed, maybe halfway through a line
}

// A message a durable save accepts: its Maildir copies (written, not synced)
// are made durable with the save's lines.
export interface Accepted {
  message: Buffer;
  copies: { path: string; prefix: string }[]; // each file: its trace header fields, then the message
}

// What the MX needs: SessionJournal or SessionStore.
export type SessionWriter = Pick<SessionJournal, 'save'>;

export class SessionJournal {
  private dir: string;
  private written = new Map<string, Written>();
  private saved: (note: SessionNote) => void | Promise<void>;
  private wal: WriteAheadLog;

  // saved: told of each save once it is written (and awaited, if it returns a promise).
  constructor(dir: string, saved: (note: SessionNote) => void | Promise<void>, wal: WriteAheadLog) {
    this.dir = dir;
    this.saved = saved;
    this.wal = wal;
    mkdirSync(dir, { recursive: true });
  }

  // Appends the transcript lines and the transactions added since the last
  // save; a transaction is written for good by the first save that succeeds
  // after it is added, so it must be complete by then, and the live record
  // then lets go of it: a session of thousands of messages (another MTA's
  // pooled connection) holds only the transaction under way, not every one
  // it carried, without bound. Saves of one record must not overlap. With
  // durable, this returns once the write-ahead log holds the lines (and the
  // copies of an accepted message).
  async save(record: SessionRecord, durable: boolean, accepted?: Accepted): Promise<void> {
    // File names start with the start time, so name order is age order.
    const file = `${record.startedAt.replace(/[:.]/g, '')}-${record.id}.jsonl`;
    const path = join(this.dir, file);
    const done = this.written.get(record.id) ?? { transcript: 0, transactions: 0, unsynced: '', torn: false };
    const { transcript, transactions, ...fields } = record;
    const update: Update = {
      ...fields,
      transcriptFrom: done.transcript,
      transcript: transcript.slice(done.transcript),
      transactionsFrom: done.transactions,
      transactions: [...transactions],
    };
    this.written.set(record.id, done);
    try {
      done.fd ??= openSync(path, 'a', 0o600);
      // After a failed append, a new line: the torn one is skipped on reading.
      const line = `${done.torn ? '\n' : ''}${JSON.stringify(update)}\n`;
      writeAll(done.fd, Buffer.from(line));
      done.unsynced += line;
      if (durable) {
        await this.wal.commit({ message: accepted?.message, copies: accepted?.copies ?? [], session: { file: path, text: done.unsynced } });
        done.unsynced = '';
      }
      done.torn = false;
    } catch (error) {
      done.torn = true;
      throw error;
    } finally {
      // Open for the session's life; closed when it ends, or reopened after a failure.
      if (record.endedAt || done.torn) this.close(done);
    }
    done.transcript = transcript.length;
    transactions.splice(0, update.transactions.length);
    done.transactions += update.transactions.length;
    if (record.endedAt) this.written.delete(record.id);
    const { id, startedAt, endedAt, client } = record;
    await this.saved({ id, startedAt, endedAt, client: client.address, file, transactionsFrom: update.transactionsFrom, transactions: update.transactions.map(summarize) });
  }

  private close(done: Written): void {
    if (done.fd === undefined) return;
    try {
      closeSync(done.fd);
    } catch {
      // closing is all that is left to do with it
    }
    done.fd = undefined;
  }
}

export class SessionStore {
  private dir: string;
  private kept: number;
  private index = new Map<string, Entry>(); // oldest first
  private journal: SessionJournal;
  private watchers = new Map<string, Set<(id: string) => void>>(); // Message-ID -> who waits for it

  constructor(dir: string, kept: number, wal: WriteAheadLog) {
    this.dir = dir;
    this.kept = kept;
    this.journal = new SessionJournal(dir, (note) => this.note(note), wal);
    // One pass over the files: the index, and the ends a crash left out.
    const foundAt = new Date().toISOString();
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort()) {
      const text = readFileSync(join(dir, file), 'utf8');
      const record = replay(text);
      if (!record) continue;
      if (!record.endedAt) closeInterrupted(join(dir, file), text, record, foundAt);
      this.index.set(record.id, entry(record, file));
    }
  }

  // Written by this process's own journal (see SessionJournal.save).
  save(record: SessionRecord, durable: boolean, accepted?: Accepted): Promise<void> {
    return this.journal.save(record, durable, accepted);
  }

  // A save, made here or by an MX worker's journal; done once the retention is applied.
  async note(note: SessionNote): Promise<void> {
    const known = this.index.get(note.id) ?? { id: note.id, startedAt: note.startedAt, client: note.client, file: note.file, transactions: [] };
    place(known.transactions, note.transactionsFrom, note.transactions);
    known.endedAt = note.endedAt;
    this.index.set(note.id, known);
    for (const t of note.transactions) for (const seen of (t.messageId && this.watchers.get(t.messageId)) || []) seen(note.id);
    await this.trim();
  }

  // Calls `seen` with the session's id whenever a save records a transaction
  // of this Message-ID (an exercise check waits so for its messages, where a
  // look through every session would cost more the more there are). Returns
  // the function that stops it.
  watch(messageId: string, seen: (id: string) => void): () => void {
    const set = this.watchers.get(messageId) ?? new Set();
    set.add(seen);
    this.watchers.set(messageId, set);
    return () => {
      set.delete(seen);
      if (set.size === 0) this.watchers.delete(messageId);
    };
  }

  // recipients: only the transactions with a recipient it takes, and in them
  // only those recipients and their copies (a student's part, in classroom
  // mode); a session with none is left out.
  list(filter: { messageId?: string; recipient?: string; disposition?: string; recipients?: (address: string) => boolean } = {}): SessionSummary[] {
    const wanted = (s: SessionSummary) =>
      (!filter.recipients || s.recipients.length > 0) &&
      (!filter.messageId || s.messageIds.includes(filter.messageId)) &&
      (!filter.recipient || s.recipients.includes(filter.recipient.toLowerCase())) &&
      (!filter.disposition || s.dispositions.includes(filter.disposition));
    // A Message-ID or a recipient asked for rules out most sessions before any summary is made.
    const recipient = filter.recipient?.toLowerCase();
    const maybe = (known: Entry) =>
      (!filter.messageId || known.transactions.some((t) => t.messageId === filter.messageId)) && (!recipient || known.transactions.some((t) => t.recipients.includes(recipient)));
    return [...this.index.values()].filter(maybe).map((known) => sessionSummary(known, filter.recipients)).filter(wanted).reverse();
  }

  async get(id: string): Promise<SessionRecord | undefined> {
    const known = this.index.get(id);
    if (!known) return undefined;
    return replay(await readFile(join(this.dir, known.file), 'utf8'));
  }

  // One transaction of a session, found without replaying the whole record:
  // another MTA's pooled connection carries thousands of messages in one
  // session, and an exercise check asks for one of them at a time. Each
  // transaction is in one line of the file (the save that first held it
  // complete), and every line repeats the record's own fields; `text` is
  // something that line must contain (a Message-ID), so that only it is parsed.
  async findTransaction(id: string, text: string, wanted: (t: Transaction) => boolean): Promise<{ session: Omit<SessionRecord, 'transcript' | 'transactions'>; transaction: Transaction } | undefined> {
    const known = this.index.get(id);
    if (!known) return undefined;
    const lines = (await readFile(join(this.dir, known.file), 'utf8')).split('\n');
    for (let i = lines.length - 1; i >= 0; i--) {
      if (!lines[i].includes(text)) continue;
      let update: Update;
      try {
        update = JSON.parse(lines[i]);
      } catch {
        continue; // torn by a crash: not acknowledged
      }
      const { transcriptFrom: _a, transcript: _b, transactionsFrom: _c, transactions, ...session } = update;
      const transaction = transactions.find(wanted);
      if (transaction) return { session, transaction };
    }
    return undefined;
  }

  // The session a stored message came from.
  findDelivery(messageId: string): { session: string; delivery: Omit<Delivery, 'path'> } | undefined {
    for (const known of this.index.values()) {
      for (const t of known.transactions) {
        const delivery = t.deliveries.find((d) => d.id === messageId);
        if (delivery) return { session: known.id, delivery };
      }
    }
    return undefined;
  }

  // A session still going on keeps writing to its file after the unlink
  // (its journal has it open); it just is not listed any more.
  private async trim(): Promise<void> {
    while (this.index.size > this.kept) {
      const [id, oldest] = this.index.entries().next().value!;
      this.index.delete(id);
      await unlink(join(this.dir, oldest.file)).catch(() => undefined);
    }
  }
}

// The record a session's file describes, line by line; a later line
// replaces the transcript lines and transactions it repeats.
function replay(text: string): SessionRecord | undefined {
  let record: SessionRecord | undefined;
  for (const line of text.split('\n')) {
    let update: Update;
    try {
      update = JSON.parse(line);
    } catch {
      continue; // empty, or torn by a crash while it was written: nothing acknowledged was in it
    }
    const { transcriptFrom, transcript, transactionsFrom, transactions, ...fields } = update;
    record = { ...record, ...fields, transcript: record?.transcript ?? [], transactions: record?.transactions ?? [] };
    place(record.transcript, transcriptFrom, transcript);
    place(record.transactions, transactionsFrom, transactions);
  }
  return record;
}

// Closes a record that a stopped MTA left open. The store opens before
// anything writes sessions (the MX, and MX workers, start after it; workers
// that start later never open a store), so no live process has this record
// open: its writer is gone. Its end time is the best evidence there is, the
// last write to its file (never before its last transcript line); the close
// is a line like any save, fsynced, so the next start finds it closed.
// An accepted message in it stays as it was: its 250 came after its save.
function closeInterrupted(path: string, text: string, record: SessionRecord, foundAt: string): void {
  const fd = openSync(path, 'a');
  try {
    const lastWrite = fstatSync(fd).mtime.toISOString();
    const lastLine = record.transcript.at(-1)?.at ?? record.startedAt;
    record.endedAt = lastWrite >= lastLine ? lastWrite : lastLine;
    record.interrupted = {
      reason: `the MTA stopped without closing the session (crash or kill); found open at start at ${foundAt}`,
      foundAt,
      endedAtFrom: lastWrite >= lastLine ? "the last write to its record (the file's modification time)" : 'its last transcript line',
    };
    const { transcript, transactions, ...fields } = record;
    const update: Update = { ...fields, transcriptFrom: transcript.length, transcript: [], transactionsFrom: transactions.length, transactions: [] };
    // After a line torn by the crash, a new line.
    writeAll(fd, Buffer.from(`${text === '' || text.endsWith('\n') ? '' : '\n'}${JSON.stringify(update)}\n`));
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

// Puts items into a list from a position on, over what is there.
function place<T>(list: T[], from: number, items: T[]): void {
  for (const [i, item] of items.entries()) list[from + i] = item;
}

function entry(record: SessionRecord, file: string): Entry {
  const { id, startedAt, endedAt, interrupted } = record;
  return { id, startedAt, endedAt, interrupted, client: record.client.address, file, transactions: record.transactions.map(summarize) };
}

function summarize(t: Transaction): TransactionSummary {
  return {
    // A copy: the Message-ID the MX read is a slice of the header section's
    // text, and V8 keeps all of that text alive for a slice. The index lasts
    // as long as the records it lists, so each message listed held its whole
    // header section (up to the size limit) in memory.
    messageId: t.message?.messageId === undefined ? undefined : structuredClone(t.message.messageId),
    recipients: t.envelope.rcptTo.map((r) => r.toLowerCase()),
    disposition: t.decision.disposition,
    deliveries: t.deliveries,
  };
}

function sessionSummary(known: Entry, recipients?: (address: string) => boolean): SessionSummary {
  const t = recipients
    ? known.transactions
        .filter((x) => x.recipients.some(recipients))
        .map((x) => ({ ...x, recipients: x.recipients.filter(recipients), deliveries: x.deliveries.filter((d) => recipients(d.mailbox)) }))
    : known.transactions;
  return {
    id: known.id,
    startedAt: known.startedAt,
    endedAt: known.endedAt,
    interrupted: known.interrupted,
    client: known.client,
    messageIds: t.map((x) => x.messageId).filter((m): m is string => Boolean(m)),
    recipients: [...new Set(t.flatMap((x) => x.recipients))],
    dispositions: [...new Set(t.map((x) => x.disposition))],
    deliveries: t.flatMap((x) => x.deliveries),
  };
}
