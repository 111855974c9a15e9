// Paged lists for the console, newest first: sessions, and the messages of
// one mailbox folder, each row with what a person scans a list for (who,
// what, the verdicts, the fate). The session store keeps its summaries in
// memory; a page reads only its own records from disk, so the first page
// costs about the same with 10 sessions as with 10,000.
import { HttpError } from '../../lib/http.ts';
import type { Folder } from '../store/maildir.ts';
import type { SessionRecord, SessionStore, Transaction } from '../store/sessions.ts';
import { EVERYONE, type Scope } from '../classroom/scope.ts';

const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 200;

export interface Page<T> {
  total: number; // rows in the whole list
  items: T[];
  next?: string; // pass as ?before= for the following page; absent on the last
}

// One word per check: what a badge shows.
export interface Verdicts {
  spf: string;
  dkim: string; // pass when any signature passed, else the first one's result, none without any
  dmarc: string;
  arc: string;
}

export interface TransactionRow {
  at: string;
  mailFrom: string;
  rcptTo: string[];
  messageId?: string;
  from?: string;
  subject?: string;
  size?: number;
  disposition: string; // inbox, junk, reject, defer, refused
  code?: number; // the SMTP reply for reject, defer and refused
  enhanced?: string;
  reason: string;
  verdicts?: Verdicts; // absent when the message was refused before any check
  deliveries: Transaction['deliveries'];
  forwarded?: Transaction['forwarded']; // what an alias or list sent on
}

export interface SessionRow {
  id: string;
  startedAt: string;
  endedAt?: string;
  interrupted?: SessionRecord['interrupted']; // closed at start after a crash: why, and what endedAt rests on
  client: SessionRecord['client'];
  tls: boolean;
  transactions: TransactionRow[];
  refusal?: string; // the last 4xx or 5xx reply the client heard, e.g. at RCPT TO
}

export interface MessageRow extends Omit<TransactionRow, 'deliveries' | 'rcptTo' | 'forwarded'> {
  id: string;
  mailbox: string;
  folder: Folder;
  session: string;
  client: string;
}

export interface PageQuery {
  limit: number;
  before?: string;
}

export function pageQuery(url: URL): PageQuery {
  const text = url.searchParams.get('limit');
  const limit = text === null ? DEFAULT_LIMIT : Number(text);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) throw new HttpError(400, `limit must be a whole number from 1 to ${MAX_LIMIT}`);
  return { limit, before: url.searchParams.get('before') ?? undefined };
}

// The slice of a list (newest first) that follows `before`.
function slice<T>(list: T[], idOf: (item: T) => string, query: PageQuery): { items: T[]; total: number; next?: string } {
  let start = 0;
  if (query.before !== undefined) {
    const at = list.findIndex((item) => idOf(item) === query.before);
    if (at === -1) throw new HttpError(404, `no ${query.before} to page from (deleted, or older than what is kept)`);
    start = at + 1;
  }
  const items = list.slice(start, start + query.limit);
  const more = start + query.limit < list.length;
  return { items, total: list.length, next: more ? idOf(items.at(-1)!) : undefined };
}

// In classroom mode a student's page holds their part of their sessions (scope.ts).
export async function sessionPage(sessions: SessionStore, query: PageQuery & { disposition?: string }, scope: Scope = EVERYONE): Promise<Page<SessionRow>> {
  const page = slice(sessions.list({ disposition: query.disposition, recipients: scope.recipients }), (s) => s.id, query);
  const records = await Promise.all(page.items.map(async (s) => {
    const record = await sessions.get(s.id);
    return record && scope.narrow(record);
  }));
  return { ...page, items: records.filter((r): r is SessionRecord => r !== undefined).map(sessionRow) };
}

export async function folderPage(sessions: SessionStore, mailbox: string, folder: Folder, query: PageQuery): Promise<Page<MessageRow>> {
  const wanted = mailbox.toLowerCase();
  const messages = sessions
    .list({ recipient: wanted })
    .flatMap((s) => s.deliveries.filter((d) => d.mailbox.toLowerCase() === wanted && d.folder === folder).map((d) => ({ id: d.id, session: s.id })).reverse());
  const page = slice(messages, (m) => m.id, query);
  const ids = [...new Set(page.items.map((m) => m.session))];
  const records = new Map(ids.map((id) => [id, sessions.get(id)] as const));
  const items: MessageRow[] = [];
  for (const message of page.items) {
    const record = await records.get(message.session);
    const transaction = record?.transactions.find((t) => t.deliveries.some((d) => d.id === message.id));
    if (!record || !transaction) continue;
    const { deliveries: _deliveries, rcptTo: _rcptTo, forwarded: _forwarded, ...row } = transactionRow(transaction);
    items.push({ ...row, id: message.id, mailbox, folder, session: record.id, client: record.client.address });
  }
  return { ...page, items };
}

export function sessionRow(record: SessionRecord): SessionRow {
  const refusal = record.transcript.findLast((l) => /^S: [45]\d\d/.test(l.line));
  return {
    id: record.id,
    startedAt: record.startedAt,
    endedAt: record.endedAt,
    interrupted: record.interrupted,
    client: record.client,
    tls: Boolean(record.tls),
    transactions: record.transactions.map(transactionRow),
    refusal: refusal?.line.slice(3).split('\r\n')[0],
  };
}

function transactionRow(t: Transaction): TransactionRow {
  const decision = t.decision as { disposition: string; reason: string; code?: number; enhanced?: string };
  return {
    at: t.at,
    mailFrom: t.envelope.mailFrom,
    rcptTo: t.envelope.rcptTo,
    messageId: t.message?.messageId,
    from: t.message?.from,
    subject: t.message?.subject,
    size: t.message?.size,
    disposition: decision.disposition,
    code: decision.code || undefined,
    enhanced: decision.enhanced || undefined,
    reason: decision.reason,
    verdicts: t.checks && verdicts(t.checks),
    deliveries: t.deliveries,
    forwarded: t.forwarded,
  };
}

function verdicts(checks: NonNullable<Transaction['checks']>): Verdicts {
  const dkim = checks.dkim.find((d) => d.result === 'pass') ?? checks.dkim[0];
  return { spf: checks.spf.result, dkim: dkim?.result ?? 'none', dmarc: checks.dmarc.result, arc: checks.arc.result };
}
