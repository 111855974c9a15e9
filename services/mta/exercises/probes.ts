// Probes: the messages an exercise check sends, fresh each time, and what
// the receiver decided about them. Every probe is addressed to the student,
// so that it lands in their mailbox (or is refused) and they can open it:
//   own                the student's own mail, submitted at the sender as them
//                      (the grader's authorization identity, RFC 4616): signed
//                      with their DKIM keys, delivered through their MX
//   spoof              the attacker writes as the student: From and MAIL FROM
//   spoof-subdomain    ... as orders@shop.<domain> (a name the exercise has them publish)
//   spoof-nonexistent  ... as billing@<random>.<domain>, a name that does not exist
//   lab                alice@sender.test writes to them: mail that needs nothing of theirs but the MX
//   alias, list        their own mail to <name>@forwarder.test (an alias back
//                      to them) and <name>-list@forwarder.test (a list with them
//                      as its member: tag, footer, ARC seal)
import { randomBytes } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Student } from '../../lib/classroom.ts';
import type { QueueEntry } from '../outbound/queue.ts';
import { smtpSend } from '../outbound/smtp-client.ts';
import type { Instance } from '../instance.ts';
import type { SessionStore, Transaction } from '../store/sessions.ts';
import { rfc5322Date } from '../smtp/trace.ts';
import type { ProbeName } from './catalogue.ts';
import type { LabPeers } from './peers.ts';

// What the check saw of a probe: stored with its result.
export interface ProbeSaw {
  probe: ProbeName;
  sentBy: string; // "mta.sender.test (192.0.2.10)"
  from: string;
  mailFrom: string;
  to: string;
  subject: string;
  messageId: string;
  sentAt: string;
  session?: string; // the receiver's session: its why view
  deliveredBy?: string; // the client that handed it to the receiver, when not the sender (a forwarder)
  delivery?: { id: string; mailbox: string; folder: string };
  verdicts?: { spf: string; dkim: string; dmarc: string; arc: string; policy?: string };
  decision?: { disposition: string; reason: string; code?: string };
  undelivered?: string; // why no decision came
}

export interface Probe {
  saw: ProbeSaw;
  transaction?: Transaction; // the receiver's whole record of it, for the checks' reasons
}

const DEADLINE_MS = 15_000; // a 4xx is retried after 2 s; a forward takes two hops
const QUEUE_LOOK_MS = 1000;
// Submission sessions open at once to one instance: all come from the
// receiver's address, and an MTA takes 30 from one address (clientsPerAddress).
const SESSIONS_EACH = 16;

interface Plan {
  by: Instance;
  login: { user: string; pass: string; authzid?: string };
  from: string;
  mailFrom: string;
  rcpt: string;
  what: string; // the message's story, in its body
}

export class Probes {
  private peers: LabPeers;
  private sessions: SessionStore;
  private hostname: string;
  private ca: Buffer;
  private secureContext: SecureContext; // one for every probe: making one costs more than the handshake
  private open = new Map<string, number>(); // instance -> its sessions now
  private waiting = new Map<string, (() => void)[]>();

  constructor(peers: LabPeers, sessions: SessionStore, hostname: string, ca: Buffer) {
    this.peers = peers;
    this.sessions = sessions;
    this.hostname = hostname;
    this.ca = ca;
    this.secureContext = createSecureContext({ ca });
  }

  private plan(name: ProbeName, student: Student): Plan {
    const { sender, attacker } = this.peers;
    const asStudent = { user: 'grader', pass: this.peers.grader, authzid: student.address };
    const mallory = [...attacker.submission.passwords][0];
    const asAttacker = { user: `${mallory[0]}@${[...attacker.domains.keys()][0]}`, pass: mallory[1] };
    const you = student.address;
    switch (name) {
      case 'own':
        return { by: sender, login: asStudent, from: you, mailFrom: you, rcpt: you, what: `Your own mail: submitted at ${sender.hostname} as ${you}, signed with your DKIM key, delivered through your MX.` };
      case 'spoof':
        return { by: attacker, login: asAttacker, from: you, mailFrom: you, rcpt: you, what: `A spoof: ${attacker.hostname} writes as ${you}, with your address in MAIL FROM and From. It holds none of your keys.` };
      case 'spoof-subdomain':
        return { by: attacker, login: asAttacker, from: `orders@shop.${student.domain}`, mailFrom: `orders@shop.${student.domain}`, rcpt: you, what: `A spoof from shop.${student.domain}, a name below your domain that exists.` };
      case 'spoof-nonexistent': {
        const name = `billing@x${randomBytes(4).toString('hex')}.${student.domain}`;
        return { by: attacker, login: asAttacker, from: name, mailFrom: name, rcpt: you, what: `A spoof from a made-up name below your domain, one that does not exist in DNS.` };
      }
      case 'lab': {
        const [user, pass] = [...sender.submission.passwords][0];
        const alice = `${user}@${[...sender.domains.keys()][0]}`;
        return { by: sender, login: { user: alice, pass }, from: alice, mailFrom: alice, rcpt: you, what: `${alice} writes to you: this mail needs nothing of yours but an MX that leads to the lab's receiver.` };
      }
      case 'alias':
        return { by: sender, login: asStudent, from: you, mailFrom: you, rcpt: `${student.name}@${[...this.peers.forwarder.domains.keys()][0]}`, what: `Your own mail to your alias at ${this.peers.forwarder.hostname}, which sends it on to you unchanged, from its own address.` };
      case 'list':
        return { by: sender, login: asStudent, from: you, mailFrom: you, rcpt: `${student.name}-list@${[...this.peers.forwarder.domains.keys()][0]}`, what: `Your own mail to your mailing list at ${this.peers.forwarder.hostname}: it tags the subject, adds a footer and ARC-seals what it verified.` };
    }
  }

  // Sends the probe and waits for the receiver's decision about it.
  async send(name: ProbeName, student: Student, run: string, exercises: string): Promise<Probe> {
    const plan = this.plan(name, student);
    const messageId = `<${run}.${name}@${this.hostname}>`;
    const subject = `Lab check ${run}: ${name} (${exercises})`;
    const sentAt = new Date().toISOString();
    const saw: ProbeSaw = { probe: name, sentBy: `${plan.by.hostname} (${plan.by.address})`, from: plan.from, mailFrom: plan.mailFrom, to: plan.rcpt, subject, messageId, sentAt };
    const raw = Buffer.from(
      [`From: ${plan.from}`, `To: ${plan.rcpt}`, `Subject: ${subject}`, `Date: ${rfc5322Date(new Date())}`, `Message-ID: ${messageId}`, 'MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8', '', `The lab sent this message to check your work (${exercises}).`, '', plan.what, ''].join('\r\n'),
    );
    // Watched before it is sent: the decision may be saved before the 250 comes back.
    const decided = Promise.withResolvers<Probe>();
    const stop = this.sessions.watch(messageId, (id) => {
      void this.decision(id, saw, student.address).then((found) => found && decided.resolve(found));
    });
    try {
      const { host, port } = this.peers.submission(plan.by);
      let reply;
      await this.slot(plan.by.name);
      try {
        reply = await smtpSend({ host, port, localAddress: this.peers.localAddress, name: this.hostname, servername: plan.by.hostname, ca: this.ca, secureContext: this.secureContext, auth: plan.login, envelope: { from: plan.mailFrom, to: [plan.rcpt] }, raw });
      } catch (error) {
        return { saw: { ...saw, undelivered: `${plan.by.hostname}'s submission could not be reached: ${(error as Error).message}` } };
      } finally {
        this.release(plan.by.name);
      }
      if (reply.code >= 400) return { saw: { ...saw, undelivered: `${plan.by.hostname} refused to send it: ${reply.text}` } };
      const queueId = /queued as (\S+)/.exec(reply.text)?.[1];
      return await this.observe(saw, decided.promise, plan.by, queueId);
    } finally {
      stop();
    }
  }

  private async slot(instance: string): Promise<void> {
    const open = this.open.get(instance) ?? 0;
    if (open < SESSIONS_EACH) {
      this.open.set(instance, open + 1);
      return;
    }
    await new Promise<void>((resolve) => this.waiting.set(instance, [...(this.waiting.get(instance) ?? []), resolve]));
  }

  // The slot goes to the next in line, or back.
  private release(instance: string): void {
    const next = this.waiting.get(instance)?.shift();
    if (next) next();
    else this.open.set(instance, (this.open.get(instance) ?? 1) - 1);
  }

  // The receiver's first decision about this message for the student, or
  // why none came: the sending queue's word for it, asked each second.
  private async observe(saw: ProbeSaw, decided: Promise<Probe>, by: Instance, queueId: string | undefined): Promise<Probe> {
    const deadline = Date.now() + DEADLINE_MS;
    let queueSaid: string | undefined;
    while (Date.now() < deadline) {
      const found = await Promise.race([decided, new Promise<undefined>((resolve) => setTimeout(resolve, Math.min(QUEUE_LOOK_MS, deadline - Date.now())))]);
      if (found) return found;
      if (!queueId) continue;
      const entry = await this.peers.api<QueueEntry>(by, `/api/queue/${encodeURIComponent(queueId)}`).catch(() => undefined);
      const r = entry?.recipients.find((x) => x.status !== 'delivered');
      if (r?.lastReply) queueSaid = `${by.hostname}'s queue: ${r.lastReply}`;
      if (r?.status !== 'failed') continue;
      // An MX that answered has recorded its decision, though under load it
      // may be saved after the sender heard the reply: wait for it. Without
      // an answer (no MX, no connection) none will come.
      if (r.remoteMta) queueId = undefined;
      else return Promise.race([decided, new Promise<Probe>((resolve) => setTimeout(() => resolve({ saw: { ...saw, undelivered: `not delivered: ${queueSaid}` } }), 200))]);
    }
    return { saw: { ...saw, undelivered: `no decision at the receiver within ${DEADLINE_MS / 1000} s${queueSaid ? `; ${queueSaid}` : ''}` } };
  }

  // The session's decision about this probe for the student, if it has one yet.
  private async decision(id: string, saw: ProbeSaw, recipient: string): Promise<Probe | undefined> {
    const found = await this.sessions.findTransaction(id, saw.messageId, (t) => t.message?.messageId === saw.messageId && t.envelope.rcptTo.includes(recipient) && t.at >= saw.sentAt);
    if (!found) return undefined;
    const { session, transaction } = found;
    const checks = transaction.checks;
    const delivery = transaction.deliveries.find((d) => d.mailbox === recipient);
    const decision = transaction.decision;
    return {
      transaction,
      saw: {
        ...saw,
        session: session.id,
        ...(session.client.address !== saw.sentBy.slice(saw.sentBy.indexOf('(') + 1, -1) && { deliveredBy: `${session.client.hostname ?? session.client.helo ?? 'a client'} (${session.client.address})` }),
        ...(delivery && { delivery: { id: delivery.id, mailbox: delivery.mailbox, folder: delivery.folder } }),
        ...(checks && {
          verdicts: {
            spf: checks.spf.result,
            dkim: checks.dkim.some((d) => d.domain) ? checks.dkim.filter((d) => d.domain).map((d) => `${d.result} (d=${d.domain})`).join(', ') : 'none',
            dmarc: checks.dmarc.result,
            arc: checks.arc.result,
            ...(checks.dmarc.policy && { policy: checks.dmarc.policy }),
          },
        }),
        decision: { disposition: decision.disposition, reason: decision.reason, ...('code' in decision && decision.code && { code: `${decision.code} ${decision.enhanced ?? ''}`.trim() }) },
      },
    };
  }
}
