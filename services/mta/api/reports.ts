// GET /api/reports: the DMARC aggregate reports in the mailboxes the caller
// may read, newest first, each read from its stored message
// (reports/read-report.ts). A report is a message whose Subject is RFC 9990's
// ("Report Domain: ..."); one that cannot be read is listed with the reason.
// Each source address gets the name the lab DNS gives it (PTR), so that a
// person sees mta.sender.test beside 192.0.2.10.
import { open, readdir, readFile } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import { join } from 'node:path';
import type { LabResolver } from '../../lib/resolver.ts';
import type { Scope } from '../classroom/scope.ts';
import { parseHeaders } from '../smtp/headers.ts';
import type { Folder, Maildir } from '../store/maildir.ts';
import { type ReadReport, ReportError, readReportMessage } from '../reports/read-report.ts';

export type ListedReport = { id: string; mailbox: string; receivedAt: string } & (ReadReport | { subject: string; error: string });

const HEAD = 16 * 1024; // enough of a message for its Subject
const MAX_NAMES = 200; // PTR lookups per answer: a report may list thousands of strangers
const AT_ONCE = 32; // files opened at once

// A stored message never changes (a new file, a new name), so what was found
// in one is kept: whether it is a report (its Subject, or null), and the
// report read from it, up to a number of rows: a report may have 10,000.
const subjects = new Map<string, string | null>();
const reads = new Map<string, ReadReport | { subject: string; error: string }>();
let rowsKept = 0;
const MAX_FILES = 100_000;
const MAX_ROWS = 100_000;

export async function listReports(maildir: Maildir, scope: Scope, resolver?: LabResolver): Promise<ListedReport[]> {
  const found: { id: string; mailbox: string; receivedAt: string; file: string; subject: string }[] = [];
  for (const { mailbox, folders } of await maildir.list()) {
    if (!scope.ownsAddress(mailbox)) continue;
    for (const { folder } of folders) found.push(...(await reportsIn(maildir, mailbox, folder)));
  }
  found.sort((a, b) => b.receivedAt.localeCompare(a.receivedAt) || b.id.localeCompare(a.id));
  const reports: ListedReport[] = [];
  for (const { file, subject, ...where } of found) {
    const report = reads.get(file) ?? (await read(file, subject));
    if (report) reports.push({ ...where, ...report });
  }
  return nameSources(reports, resolver);
}

// Undefined when the file has gone (a mail client moved it since).
async function read(file: string, subject: string) {
  const raw = await readFile(file).catch(() => undefined);
  if (!raw) return undefined;
  let report: ReadReport | { subject: string; error: string };
  try {
    report = await readReportMessage(raw);
  } catch (error) {
    // Whatever a message does to the reader, the list goes on without it.
    report = { subject, error: error instanceof ReportError ? error.message : `the message cannot be read (${(error as Error).message})` };
  }
  const rows = 'rows' in report ? report.rows.length : 0;
  if (rowsKept + rows > MAX_ROWS || reads.size >= MAX_FILES) {
    reads.clear();
    rowsKept = 0;
  }
  reads.set(file, report);
  rowsKept += rows;
  return report;
}

// The messages of a folder whose Subject is a report's, by their heads alone.
async function reportsIn(maildir: Maildir, mailbox: string, folder: Folder) {
  const dir = maildir.folderPath(mailbox, folder);
  const files = [];
  for (const sub of ['new', 'cur']) for (const name of await readdir(join(dir, sub)).catch(() => [])) files.push({ name, file: join(dir, sub, name) });
  const found = [];
  for (let i = 0; i < files.length; i += AT_ONCE) {
    const subjectsHere = await Promise.all(files.slice(i, i + AT_ONCE).map(({ file }) => reportSubject(file)));
    for (const [j, subject] of subjectsHere.entries()) {
      if (subject === null) continue;
      const { name, file } = files[i + j];
      const id = name.replace(/:2,.*$/, ''); // a mail client's flags after the id
      found.push({ id, mailbox, receivedAt: deliveredAt(id), file, subject });
    }
  }
  return found;
}

// RFC 9990's Subject, or null: another message, or one gone since.
async function reportSubject(file: string): Promise<string | null> {
  const known = subjects.get(file);
  if (known !== undefined) return known;
  const head = await readHead(file).catch(() => undefined);
  if (!head) return null;
  const subject = parseHeaders(head).find((f) => f.name.toLowerCase() === 'subject')?.value ?? '';
  const found = /^Report Domain:/i.test(subject) ? subject : null;
  if (subjects.size >= MAX_FILES) subjects.clear();
  subjects.set(file, found);
  return found;
}

async function readHead(file: string): Promise<Buffer> {
  const handle = await open(file);
  try {
    const buffer = Buffer.alloc(HEAD);
    const { bytesRead } = await handle.read(buffer, 0, HEAD, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

// The Maildir name starts with the time of delivery: "<seconds>.M<microseconds>...".
function deliveredAt(id: string): string {
  const match = /^(\d+)\.M(\d+)/.exec(id);
  return match ? new Date(Number(match[1]) * 1000 + Math.floor(Number(match[2]) / 1000)).toISOString() : new Date(0).toISOString();
}

// sourceName: the PTR name of each IPv4 source (the lab's addresses are), in
// copies of the rows (the kept reads stay as read).
async function nameSources(reports: ListedReport[], resolver?: LabResolver): Promise<ListedReport[]> {
  if (!resolver) return reports;
  const rows = reports.flatMap((r) => ('rows' in r ? r.rows : []));
  const addresses = [...new Set(rows.map((r) => r.sourceIp).filter((a) => isIPv4(a)))].slice(0, MAX_NAMES);
  const names = new Map(
    await Promise.all(
      addresses.map(async (address) => {
        const reverse = `${address.split('.').reverse().join('.')}.in-addr.arpa`;
        const [name] = (await resolver.resolve(reverse, 'PTR').catch(() => [])) as string[];
        return [address, name?.replace(/\.$/, '')] as const;
      }),
    ),
  );
  return reports.map((r) => ('rows' in r ? { ...r, rows: r.rows.map((row) => (names.get(row.sourceIp) ? { ...row, sourceName: names.get(row.sourceIp) } : row)) } : r));
}
