// Forwarding, as an alias host and a mailing list do it, with each habit that
// matters for authentication switchable in the instance file:
// - an alias re-sends the message unchanged, from the forwarder's address:
//   SPF at the next hop now sees the forwarder and fails for the author;
// - a list tags the subject and adds a footer: the author's DKIM signature
//   breaks; it also takes the bounces itself (<list>-bounces@);
// - SRS puts the forwarder's domain in the envelope sender, and routes
//   bounces to such an address back to the original sender;
// - an ARC seal records what the forwarder verified before it changed things.
// In classroom mode the forwarder also has, for each student, an alias
// <name>@ and a list <name>-list@ at its domain, both to the student alone,
// so that each student can send their own mail through either.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sealMessage } from 'mailauth';
import { FORWARDING_AT, type Classroom } from '../../lib/classroom.ts';
import type { Logger } from '../../lib/log.ts';
import type { Instance, MailingList } from '../instance.ts';
import type { Enqueue, QueueEntry } from './queue.ts';
import { srsForward, srsReverse } from './srs.ts';

export interface Forwarded {
  address: string; // the alias, list or SRS address the message came to
  kind: 'alias' | 'list' | 'srs-bounce';
  to: string[];
  mailFrom: string;
  queueId: string;
  sealed: boolean;
}

// Forwarded copies in the queue, not yet delivered (Forwarder.forward).
export interface HeldForwards {
  forwarded: Forwarded[];
  release(): void;
  discard(): void;
}

type Plan = { kind: Forwarded['kind']; to: string[]; mailFrom: string; body: Buffer };

export interface ArcInput {
  authResults: unknown; // what this forwarder's own checks found, from mailauth
  cv: string; // the chain validation result so far: none, pass or fail
}

export class Forwarder {
  private instance: Instance;
  private queue: Enqueue;
  private log: Logger;
  private aliases: Map<string, string[]>;
  private lists: Map<string, MailingList>;
  private seal?: { signingDomain: string; selector: string; privateKey: Buffer };

  constructor(instance: Instance, queue: Enqueue, keyDir: string, log: Logger, classroom?: Classroom) {
    this.instance = instance;
    this.queue = queue;
    this.log = log;
    const domain = [...instance.domains.keys()][0];
    // The instance file's addresses win over the students' (later in the Map).
    const students = classroom && instance.name === FORWARDING_AT ? studentForwarding(instance, domain, classroom) : undefined;
    this.aliases = new Map([...(students?.aliases ?? []), ...instance.forwarding.aliases]);
    this.lists = new Map([...(students?.lists ?? []), ...instance.forwarding.lists]);
    const selector = instance.dkim.get(domain)?.[0];
    if (instance.forwarding.arcSeal && selector) {
      this.seal = { signingDomain: selector.domain, selector: selector.selector, privateKey: readFileSync(join(keyDir, selector.domain, `${selector.selector}.pem`)) };
    }
  }

  // Whether mail to this address is forwarded, or why it cannot be accepted.
  accepts(address: string): { ok: true } | { ok: false; reason: string } | undefined {
    const { srs, srsSecret } = this.instance.forwarding;
    const lower = address.toLowerCase();
    if (this.aliases.has(lower) || this.lists.has(lower)) return { ok: true };
    if (srs && /^srs0[=+-]/i.test(lower)) {
      const reversed = srsReverse(address, srsSecret);
      return 'sender' in reversed ? { ok: true } : { ok: false, reason: reversed.error };
    }
    return undefined;
  }

  // Queues the message for each forwarding address among the recipients,
  // held: the caller releases the entries once the message is stored and
  // recorded, or discards them when it is not (queue.ts, Enqueue).
  async forward(message: Buffer, mailFrom: string, addresses: string[], received: string, arc: ArcInput): Promise<HeldForwards> {
    const forwarded: Forwarded[] = [];
    const entries: QueueEntry[] = [];
    const held: HeldForwards = {
      forwarded,
      release: () => entries.forEach((entry) => this.queue.release(entry)),
      discard: () => entries.forEach((entry) => this.queue.discard(entry)),
    };
    try {
      for (const address of addresses) {
        const plan = this.plan(message, mailFrom, address);
        if (!plan) continue;
        let out = Buffer.concat([Buffer.from(received), plan.body]);
        let sealed = false;
        if (this.seal) {
          const headers = await sealMessage(out, { ...this.seal, authResults: arc.authResults, cv: arc.cv } as never);
          sealed = headers.length > 0;
          out = Buffer.concat([headers, out]);
        }
        const entry = await this.queue.hold(out, { mailFrom: plan.mailFrom, recipients: plan.to, origin: 'forward' });
        entries.push(entry);
        this.log.info({ queueId: entry.id, address, kind: plan.kind, to: plan.to, mailFrom: plan.mailFrom, sealed }, 'forwarded');
        forwarded.push({ address, kind: plan.kind, to: plan.to, mailFrom: plan.mailFrom, queueId: entry.id, sealed });
      }
    } catch (error) {
      held.discard(); // the first copies go too: all or none
      throw error;
    }
    return held;
  }

  // Where the message goes for one address, and as what.
  private plan(message: Buffer, mailFrom: string, address: string): Plan | undefined {
    const lower = address.toLowerCase();
    const list = this.lists.get(lower);
    const alias = this.aliases.get(lower);
    if (list) {
      const at = lower.lastIndexOf('@');
      return { kind: 'list', to: list.members, mailFrom: `${lower.slice(0, at)}-bounces${lower.slice(at)}`, body: rewriteForList(message, lower, list) };
    }
    if (alias) {
      const { srs, srsSecret } = this.instance.forwarding;
      const sender = srs && mailFrom !== '' ? srsForward(mailFrom, lower.slice(lower.lastIndexOf('@') + 1), srsSecret) : mailFrom;
      return { kind: 'alias', to: alias, mailFrom: sender, body: message };
    }
    const reversed = srsReverse(address, this.instance.forwarding.srsSecret);
    if (!('sender' in reversed)) return undefined;
    return { kind: 'srs-bounce', to: [reversed.sender], mailFrom: '', body: message };
  }
}

// Each student's alias and list at the forwarder's domain. A list has the
// habits of the instance file's first list: its footer, naming the student's
// list instead of that one, and a subject tag, the list's name. An address
// that is a mailbox of the domain stays one, and a student named ben-list
// keeps their alias over ben's list.
function studentForwarding(instance: Instance, domain: string, classroom: Classroom): { aliases: [string, string[]][]; lists: [string, MailingList][] } {
  const mailboxes = instance.domains.get(domain)!;
  const [model] = instance.forwarding.lists;
  const aliases: [string, string[]][] = [];
  const lists: [string, MailingList][] = [];
  for (const student of classroom.students) {
    if (!mailboxes.has(student.name)) aliases.push([`${student.name}@${domain}`, [student.address]]);
    const list = `${student.name}-list`;
    if (mailboxes.has(list) || classroom.student(list)) continue;
    const footer = model?.[1].footer?.replaceAll(model[0], `${list}@${domain}`);
    lists.push([`${list}@${domain}`, { members: [student.address], subjectTag: `[${list}]`, footer }]);
  }
  return { aliases, lists };
}

// What a list does to a message: a tag before the subject, a List-Id, a footer.
export function rewriteForList(message: Buffer, listAddress: string, list: MailingList): Buffer {
  const text = message.toString('latin1');
  const split = text.indexOf('\r\n\r\n');
  let header = split === -1 ? text : text.slice(0, split + 2);
  let body = split === -1 ? '' : text.slice(split + 4);
  if (list.subjectTag) {
    const tag = list.subjectTag;
    const subject = /^Subject:(.*)$/im.exec(header);
    if (!subject) header += `Subject: ${tag}\r\n`;
    else if (!subject[1].includes(tag)) header = header.replace(/^Subject:[ \t]*/im, (field) => `${field.trimEnd()} ${tag} `);
  }
  header += `List-Id: <${listAddress.replace('@', '.')}>\r\nList-Post: <mailto:${listAddress}>\r\n`;
  if (list.footer) body = `${body.replace(/(\r\n)*$/, '\r\n')}${list.footer.replace(/\r?\n/g, '\r\n')}\r\n`;
  return Buffer.from(`${header}\r\n${body}`, 'latin1');
}
