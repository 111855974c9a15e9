// What one identity may see of an instance's data in classroom mode (the
// class: services/lib/classroom.ts). A student sees what is at their own
// domain: the mailboxes there and the messages in them, the sessions that
// carried mail for it (only those transactions of a session, since the
// sender's delivery pool carries several students' mail in one session),
// and the queue entries they submitted. The teacher sees everything; the
// lab's fixed domains are the teacher's. Without a class everyone is the
// teacher (EVERYONE). Anything else is a 403 whose reason says whose it is.
import { HttpError } from '../../lib/http.ts';
import type { Classroom, Identity, Student } from '../../lib/classroom.ts';
import type { QueueEntry } from '../outbound/queue.ts';
import type { SessionRecord, TranscriptLine } from '../store/sessions.ts';

const domainOf = (address: string) => address.slice(address.lastIndexOf('@') + 1).toLowerCase();

export class Scope {
  private classroom?: Classroom;
  readonly student?: Student; // undefined: the teacher, or a lab without a class

  constructor(classroom?: Classroom, identity?: Identity) {
    this.classroom = classroom;
    this.student = identity?.role === 'student' ? identity.student : undefined;
  }

  // "ana (ana.test)": how a refusal names the one asking.
  get who(): string {
    return this.student ? `${this.student.name} (${this.student.domain})` : 'the teacher';
  }

  // Whether a domain (or a name below it) is this identity's.
  ownsDomain(domain: string): boolean {
    return !this.student || this.classroom!.studentOf(domain)?.name === this.student.name;
  }

  ownsAddress(address: string): boolean {
    return this.ownsDomain(domainOf(address));
  }

  // "ben's", or "the lab's (the teacher's)": whose a domain is.
  private ownerOf(domain: string): string {
    const owner = this.classroom?.studentOf(domain);
    return owner ? `${owner.name}'s` : "the lab's (the teacher's)";
  }

  private refuse(what: string): never {
    throw new HttpError(403, `${what}; you are ${this.who}`);
  }

  checkTeacher(what: string): void {
    if (this.student) this.refuse(`${what} is the teacher's`);
  }

  checkMailbox(mailbox: string, what = mailbox): void {
    if (!this.ownsAddress(mailbox)) this.refuse(`${what} is ${this.ownerOf(domainOf(mailbox))} mailbox`);
  }

  // A student's domain, for their zone or their DKIM keys: their own; the
  // teacher names one (?domain=, "domain").
  studentDomain(asked: string | undefined, noun: 'zone' | 'domain'): string {
    if (!this.student) {
      if (!asked) throw new HttpError(400, "name the student's zone: ?domain=<the student's domain>");
      const student = this.classroom!.students.find((s) => s.domain === asked.toLowerCase());
      if (!student) throw new HttpError(400, `${asked} is no student's domain in this class (the lab's own zones are the files in dns-zone/)`);
      return student.domain;
    }
    const domain = asked?.toLowerCase() ?? this.student.domain;
    if (domain !== this.student.domain) this.refuse(`${asked} is ${this.ownerOf(domain)} ${noun}`);
    return domain;
  }

  // For the session list: which recipients count (all, for the teacher).
  get recipients(): ((address: string) => boolean) | undefined {
    return this.student ? (address) => this.ownsAddress(address) : undefined;
  }

  // The part of a session record this identity may see: the transactions
  // with a recipient at their domain, narrowed to those recipients and their
  // copies; the transcript without the other transactions' lines. Undefined
  // when none of it is theirs.
  narrow(record: SessionRecord): SessionRecord | undefined {
    if (!this.student) return record;
    const mine = (address: string) => this.ownsAddress(address);
    const transactions = record.transactions
      .filter((t) => t.envelope.rcptTo.some(mine))
      .map(({ forwarded: _forwarded, ...t }) => ({ ...t, envelope: { ...t.envelope, rcptTo: t.envelope.rcptTo.filter(mine) }, deliveries: t.deliveries.filter((d) => mine(d.mailbox)) }));
    if (transactions.length === 0) return undefined;
    return { ...record, transcript: narrowTranscript(record.transcript, mine), transactions };
  }

  checkSession(record: SessionRecord): SessionRecord {
    const narrowed = this.narrow(record);
    if (narrowed) return narrowed;
    const domains = [...new Set(record.transactions.flatMap((t) => t.envelope.rcptTo.map(domainOf)))];
    const owners = [...new Set(domains.map((d) => this.classroom!.studentOf(d)?.name ?? 'the lab'))];
    return this.refuse(`session ${record.id} is not yours: it carries ${owners.length ? `mail for ${owners.join(', ')} (${domains.join(', ')})` : `no mail for ${this.student!.domain}`}`);
  }

  // A queue entry is its submitter's; bounces and forwards are the lab's.
  ownsQueueEntry(entry: QueueEntry): boolean {
    return !this.student || entry.submittedBy?.toLowerCase() === this.student.address;
  }

  checkQueueEntry(entry: QueueEntry): void {
    if (this.ownsQueueEntry(entry)) return;
    const by = entry.submittedBy && this.classroom!.studentOf(domainOf(entry.submittedBy));
    this.refuse(`queue entry ${entry.id} ${by ? `was submitted by ${entry.submittedBy} (${by.name}'s)` : "is the lab's (the teacher's)"}`);
  }
}

// Without a class: everything, as before.
export const EVERYONE = new Scope();

// A session's transcript cut at each MAIL FROM: the part before the first
// (greeting, EHLO, STARTTLS) stays, a transaction with a recipient of theirs
// stays (with the other recipients' RCPT commands masked, and the replies to
// them cut to their codes: "550 5.1.1 No such mailbox: <address>" would name
// them), any other transaction becomes one line that says lines were left out.
function narrowTranscript(transcript: TranscriptLine[], mine: (address: string) => boolean): TranscriptLine[] {
  const parts: TranscriptLine[][] = [[]];
  for (const line of transcript) {
    if (/^C: MAIL FROM:/i.test(line.line)) parts.push([]);
    parts.at(-1)!.push(line);
  }
  const recipient = (line: string) => /^C: RCPT TO:\s*<([^>]*)>/i.exec(line)?.[1];
  return parts.flatMap((part, i) => {
    if (i === 0) return part;
    if (!part.some((l) => mine(recipient(l.line) ?? '@'))) return [{ at: part[0].at, line: `[${part.length} lines of a transaction that is not yours left out]` }];
    let masked = false; // the line before was a RCPT of another's: this is its reply
    return part.map((l) => {
      const address = recipient(l.line);
      const reply = masked && /^S: (\d{3})/.exec(l.line);
      masked = address !== undefined && !mine(address);
      if (masked) return { at: l.at, line: 'C: RCPT TO:<another recipient, not yours>' };
      return reply ? { at: l.at, line: `S: ${reply[1]} (the reply about another recipient)` } : l;
    });
  });
}
