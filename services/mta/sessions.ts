// The durable record of every SMTP session, accepted or not: transcript,
// envelope, DNS questions, check results, decision, where the mail went.
// One JSON file per session; the newest `kept` are kept. A record that
// accompanies an accepted message is fsynced before the 250 goes out.
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Question } from '../lib/resolver.ts';
import type { Decision } from './decide.ts';
import type { Delivery } from './maildir.ts';
import type { Verdict } from './verify.ts';
import type { Forwarded } from './forward.ts';
import { syncDirectory } from './maildir.ts';

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
  client: { address: string; port: number; hostname?: string; helo?: string };
  tls?: { protocol?: string; cipher?: string };
  transcript: TranscriptLine[];
  transactions: Transaction[];
}

// What the list and the filters need, kept in memory.
export interface SessionSummary {
  id: string;
  startedAt: string;
  client: string;
  messageIds: string[];
  recipients: string[];
  dispositions: string[];
  deliveries: Omit<Delivery, 'path'>[];
}

export class SessionStore {
  private dir: string;
  private kept: number;
  private index = new Map<string, SessionSummary & { file: string }>();

  constructor(dir: string, kept: number) {
    this.dir = dir;
    this.kept = kept;
    mkdirSync(dir, { recursive: true });
    // File names start with the start time, so name order is age order.
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
      try {
        const record = JSON.parse(readFileSync(join(dir, file), 'utf8')) as SessionRecord;
        this.index.set(record.id, { ...summarize(record), file });
      } catch {
        // A record cut short by a crash while it was being replaced: the
        // previous version was renamed over, so this is only a stray temp file.
      }
    }
  }

  // Writes the record; with durable, fsyncs it and its directory first.
  async save(record: SessionRecord, durable: boolean): Promise<void> {
    const file = this.index.get(record.id)?.file ?? `${record.startedAt.replace(/[:.]/g, '')}-${record.id}.json`;
    const temporary = join(this.dir, `.${file}.tmp`);
    const handle = await open(temporary, 'w', 0o600);
    try {
      await handle.writeFile(JSON.stringify(record));
      if (durable) await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, join(this.dir, file));
    if (durable) await syncDirectory(this.dir);
    this.index.set(record.id, { ...summarize(record), file });
    await this.trim();
  }

  list(filter: { messageId?: string; recipient?: string; disposition?: string } = {}): SessionSummary[] {
    const wanted = (s: SessionSummary) =>
      (!filter.messageId || s.messageIds.includes(filter.messageId)) &&
      (!filter.recipient || s.recipients.includes(filter.recipient.toLowerCase())) &&
      (!filter.disposition || s.dispositions.includes(filter.disposition));
    return [...this.index.values()].filter(wanted).map(({ file: _file, ...summary }) => summary).reverse();
  }

  async get(id: string): Promise<SessionRecord | undefined> {
    const entry = this.index.get(id);
    if (!entry) return undefined;
    return JSON.parse(await readFile(join(this.dir, entry.file), 'utf8'));
  }

  // The session a stored message came from.
  findDelivery(messageId: string): { session: string; delivery: Omit<Delivery, 'path'> } | undefined {
    for (const summary of this.index.values()) {
      const delivery = summary.deliveries.find((d) => d.id === messageId);
      if (delivery) return { session: summary.id, delivery };
    }
    return undefined;
  }

  private async trim(): Promise<void> {
    while (this.index.size > this.kept) {
      const [id, oldest] = this.index.entries().next().value!;
      this.index.delete(id);
      await unlink(join(this.dir, oldest.file)).catch(() => undefined);
    }
  }
}

function summarize(record: SessionRecord): SessionSummary {
  const t = record.transactions;
  return {
    id: record.id,
    startedAt: record.startedAt,
    client: record.client.address,
    messageIds: t.map((x) => x.message?.messageId).filter((m): m is string => Boolean(m)),
    recipients: [...new Set(t.flatMap((x) => x.envelope.rcptTo.map((r) => r.toLowerCase())))],
    dispositions: [...new Set(t.map((x) => x.decision.disposition))],
    deliveries: t.flatMap((x) => x.deliveries),
  };
}
