// The delivery worker: takes due messages from the queue, finds each
// recipient domain's MX through the lab DNS, and hands the message over with
// nodemailer, from the instance's own address to the MX's address, if that
// is a lab address (never to a host outside the lab network). Each
// recipient ends delivered, failed (5xx: a bounce to the envelope sender) or
// waits for a retry with exponential backoff (4xx, no MX reachable).
import { createTransport } from 'nodemailer';
import { isLabAddress, LAB_PREFIX } from '../../lib/addressing.ts';
import type { Logger } from '../../lib/log.ts';
import type { LabResolver, RecordShape } from '../../lib/resolver.ts';
import { bounceMessage } from './bounce.ts';
import type { Instance } from '../instance.ts';
import type { Queue, QueueEntry, QueueRecipient } from './queue.ts';

// How lab addresses are reached from where this process runs (DESIGN.md: the
// embedded lab connects to the loopback twin and the shifted port). The lab
// port is the one a lab host listens on (25 by default; the exercise checks
// also reach other instances' submission, 587, and API, 8025).
export interface Outbound {
  connect(labAddress: string, labPort?: number): { host: string; port: number };
  localAddress?: string;
}

interface Outcome {
  status: 'delivered' | 'failed' | 'deferred';
  reply: string;
  remoteMta?: string;
}

type Transport = ReturnType<typeof createTransport>;

const CONCURRENCY = 20; // messages in delivery at once
const TICK_MS = 250;
const LAB_NETWORK = `${LAB_PREFIX}0/24`;
const CONNECTION_ERRORS = new Set(['ECONNECTION', 'ETIMEDOUT', 'ESOCKET', 'EDNS', 'ECONNREFUSED', 'ECONNRESET', 'EPROTOCOL', 'EGREETING']);

export class DeliveryWorker {
  private instance: Instance;
  private queue: Queue;
  private resolver: LabResolver;
  private outbound: Outbound;
  private log: Logger;
  private transports = new Map<string, Transport>();
  private inFlight = new Set<string>();
  private timer?: NodeJS.Timeout;
  private stopped = false;

  constructor(instance: Instance, queue: Queue, resolver: LabResolver, outbound: Outbound, log: Logger) {
    this.instance = instance;
    this.queue = queue;
    this.resolver = resolver;
    this.outbound = outbound;
    this.log = log;
  }

  start(): void {
    this.timer = setInterval(() => this.kick(), TICK_MS);
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    for (const transport of this.transports.values()) transport.close();
  }

  // Starts whatever is due, up to the concurrency limit. Called after every
  // submission and attempt: when all slots are busy it returns at once, not
  // after a look at every entry of a long queue.
  kick(): void {
    if (this.stopped || this.inFlight.size >= CONCURRENCY) return;
    for (const entry of this.queue.due()) {
      if (this.inFlight.size >= CONCURRENCY) return;
      if (this.inFlight.has(entry.id)) continue;
      this.inFlight.add(entry.id);
      this.attempt(entry)
        .catch((error) => this.log.error({ err: error, queueId: entry.id }, 'delivery attempt failed'))
        .finally(() => {
          this.inFlight.delete(entry.id);
          this.kick();
        });
    }
  }

  private async attempt(entry: QueueEntry): Promise<void> {
    const message = await this.queue.message(entry);
    const pending = entry.recipients.filter((r) => r.status === 'queued');
    const byDomain = new Map<string, QueueRecipient[]>();
    for (const r of pending) {
      const domain = r.address.slice(r.address.lastIndexOf('@') + 1).toLowerCase();
      byDomain.set(domain, [...(byDomain.get(domain) ?? []), r]);
    }
    entry.attempts++;
    // On disk before any connection: after a crash the queue knows which
    // recipients may have the message already (queue.ts, resumeInterrupted).
    const startedAt = new Date().toISOString();
    for (const r of pending) r.attemptStartedAt = startedAt;
    await this.queue.save(entry);
    await Promise.all(
      [...byDomain].map(async ([domain, recipients]) => {
        const outcomes = await this.toDomain(domain, recipients, entry, message);
        recipients.forEach((r, i) => {
          r.attempts++;
          delete r.attemptStartedAt;
          r.lastReply = outcomes[i].reply;
          r.remoteMta = outcomes[i].remoteMta;
          if (outcomes[i].status !== 'deferred') {
            r.status = outcomes[i].status;
            r.at = new Date().toISOString();
          }
          this.log.info({ queueId: entry.id, to: r.address, status: outcomes[i].status, reply: r.lastReply, remoteMta: r.remoteMta }, 'delivery');
        });
      }),
    );
    await this.settle(entry, message);
  }

  // After an attempt: done, or when to try again; bounces for what failed.
  private async settle(entry: QueueEntry, message: Buffer): Promise<void> {
    const { retryInitialSeconds, retryMaxSeconds, giveUpAfterSeconds } = this.instance.delivery;
    const waiting = entry.recipients.filter((r) => r.status === 'queued');
    const expired = Date.now() - Date.parse(entry.createdAt) >= giveUpAfterSeconds * 1000;
    if (waiting.length && expired) {
      for (const r of waiting) {
        r.status = 'failed';
        r.lastReply = `gave up after ${r.attempts} attempts in ${giveUpAfterSeconds} s; last: ${r.lastReply}`;
        r.at = new Date().toISOString();
      }
    }
    if (entry.recipients.some((r) => r.status === 'queued')) {
      const delay = Math.min(retryInitialSeconds * 2 ** (entry.attempts - 1), retryMaxSeconds);
      entry.nextAttemptAt = new Date(Date.now() + delay * 1000).toISOString();
      entry.lastError = waiting.map((r) => r.lastReply).find(Boolean);
      await this.queue.save(entry);
      return;
    }
    const failed = entry.recipients.filter((r) => r.status === 'failed');
    // Never bounce a bounce (RFC 5321 section 4.5.5): its sender is empty.
    if (failed.length && entry.mailFrom !== '') {
      const bounce = bounceMessage(this.instance.hostname, entry, failed, message);
      const queued = await this.queue.add(bounce, { mailFrom: '', recipients: [entry.mailFrom], origin: 'bounce', messageId: `<${entry.id}.bounce@${this.instance.hostname}>` });
      this.log.info({ queueId: entry.id, bounce: queued.id, to: entry.mailFrom, failed: failed.map((r) => r.address) }, 'bounce queued');
    }
    await this.queue.remove(entry);
  }

  private async toDomain(domain: string, recipients: QueueRecipient[], entry: QueueEntry, message: Buffer): Promise<Outcome[]> {
    const all = (outcome: Outcome) => recipients.map(() => outcome);
    const route = await this.route(domain);
    if ('outcome' in route) return all(route.outcome);
    let lastError = 'no MX host could be reached';
    // The first MX address outside the lab, refused; permanent only when
    // every MX host's every address is outside (a failed lookup or a lab
    // host that did not answer may still work on a retry).
    let outside: string | undefined;
    let retryable = false;
    for (const host of route.hosts) {
      let addresses: string[];
      try {
        addresses = (await this.resolver.resolve(host, 'A')) as string[];
      } catch (error) {
        lastError = `${host}: address lookup failed (${(error as { code?: string }).code})`;
        retryable = true;
        continue;
      }
      for (const address of addresses) {
        // DNS may name any address (a zone edit, an override); under Docker
        // it would be a real host on the internet. Never connect outside.
        if (!isLabAddress(address)) {
          outside ??= `550 5.4.4 ${host} [${address}] is outside the lab network (${LAB_NETWORK}): the lab delivers only to lab hosts`;
          continue;
        }
        retryable = true;
        try {
          const info = await this.transport(address, host).sendMail({
            envelope: { from: entry.mailFrom, to: recipients.map((r) => r.address) },
            raw: message,
          });
          const rejected = new Map(((info.rejectedErrors ?? []) as SmtpError[]).map((e) => [String(e.recipient).toLowerCase(), e]));
          return recipients.map((r) => {
            const error = rejected.get(r.address.toLowerCase());
            return error ? outcomeOf(error, host) : { status: 'delivered', reply: String(info.response), remoteMta: host };
          });
        } catch (error) {
          const e = error as SmtpError;
          if (e.responseCode === undefined && (!e.code || CONNECTION_ERRORS.has(e.code))) {
            lastError = `${host} [${address}]: ${e.message}`;
            continue; // unreachable: the next address, the next MX
          }
          if (e.rejectedErrors?.length) {
            const rejected = new Map(e.rejectedErrors.map((x) => [String(x.recipient).toLowerCase(), x]));
            return recipients.map((r) => outcomeOf(rejected.get(r.address.toLowerCase()) ?? e, host));
          }
          return all(outcomeOf(e, host));
        }
      }
    }
    if (outside && !retryable) return all({ status: 'failed', reply: outside });
    return all({ status: 'deferred', reply: lastError });
  }

  // The MX hosts of a domain in preference order (RFC 5321 section 5.1), or
  // why there are none.
  private async route(domain: string): Promise<{ hosts: string[] } | { outcome: Outcome }> {
    let records: RecordShape[];
    try {
      records = await this.resolver.resolve(domain, 'MX');
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === 'ENOTFOUND') return { outcome: { status: 'failed', reply: `550 5.1.2 ${domain}: no such domain (NXDOMAIN)` } };
      // No MX record: the domain's own address is its implicit MX; without
      // one either, the domain takes no mail (RFC 5321 section 5.1).
      if (code === 'ENODATA') {
        const address = await this.resolver.resolve(domain, 'A').then(() => 'found', (e: { code?: string }) => e.code);
        if (address === 'ENODATA' || address === 'ENOTFOUND') {
          return { outcome: { status: 'failed', reply: `550 5.4.4 ${domain}: no MX and no address record (RFC 5321 section 5.1)` } };
        }
        return { hosts: [domain] };
      }
      return { outcome: { status: 'deferred', reply: `451 4.4.3 ${domain}: MX lookup failed (${code})` } };
    }
    const mx = (records as { exchange: string; priority: number }[]).sort((a, b) => a.priority - b.priority);
    // RFC 7505: a single MX of "." says the domain accepts no mail.
    if (mx.length === 1 && (mx[0].exchange === '' || mx[0].exchange === '.')) {
      return { outcome: { status: 'failed', reply: `556 5.1.10 ${domain} does not accept mail (null MX, RFC 7505)` } };
    }
    return { hosts: mx.map((m) => m.exchange) };
  }

  // One pooled SMTP connection set per MX address, reused across messages.
  private transport(address: string, hostname: string): Transport {
    const { host, port } = this.outbound.connect(address);
    const key = `${host}:${port}`;
    let transport = this.transports.get(key);
    if (!transport) {
      transport = createTransport({
        pool: true,
        // Enough sessions per MX to keep up with submission (with 5 the queue
        // backed up: p50 ~2 s from 250 to Maildir in bench:submit, 0.05-0.2 s
        // with 10); Postfix allows 20 per destination.
        maxConnections: 10,
        maxMessages: Infinity,
        host,
        port,
        name: this.instance.hostname,
        localAddress: this.outbound.localAddress,
        secure: false,
        // Opportunistic STARTTLS: encrypt when offered, without insisting on a certificate.
        tls: { servername: hostname, rejectUnauthorized: false },
        connectionTimeout: 10_000,
        greetingTimeout: 10_000,
        socketTimeout: 60_000,
      });
      this.transports.set(key, transport);
    }
    return transport;
  }
}

interface SmtpError extends Error {
  code?: string;
  responseCode?: number;
  response?: string;
  recipient?: string;
  rejectedErrors?: SmtpError[];
}

function outcomeOf(error: SmtpError, remoteMta: string): Outcome {
  const reply = error.response ?? error.message;
  const code = error.responseCode ?? 0;
  return { status: code >= 500 ? 'failed' : 'deferred', reply, remoteMta };
}
