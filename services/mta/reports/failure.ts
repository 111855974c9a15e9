// DMARC failure reports (RFC 9991): when a message's DMARC check fails in the
// way the record's fo= asks about, and the record has ruf=, one report of that
// message goes to each ruf= address that may have it (destinations.ts, as for
// aggregate reports), DKIM-signed as this instance's domain and queued like
// any other mail. Off unless the instance file says reports.failure: true.
//
// Privacy (RFC 9991 section 7, RFC 6590): a report carries the message's
// header, never its body; every envelope recipient is redacted, in the
// report's fields and in the header, to a keyed hash of its local part (the
// same address gives the same string, so reports can be told apart, but the
// address cannot be read back). Nothing is reported about a report (no loops),
// and at most PER_DOMAIN reports go out per policy domain and period, so that
// spoofed mail cannot make this MTA flood a domain's owner.
import { createHmac, randomBytes } from 'node:crypto';
import type { Logger } from '../../lib/log.ts';
import type { LabResolver } from '../../lib/resolver.ts';
import type { Instance, Reports } from '../instance.ts';
import type { Decision } from '../inbound/decide.ts';
import type { Verdict } from '../inbound/verify.ts';
import type { Enqueue } from '../outbound/queue.ts';
import type { Signer } from '../outbound/sign.ts';
import { headerValue, parseHeaders } from '../smtp/headers.ts';
import { destinations } from './destinations.ts';
import { parsePublished } from './evaluation.ts';
import { failureMessage } from './failure-message.ts';

// Reports per policy domain in a reporting period (reports.periodSeconds, from
// the first report), per MX process.
export const PER_DOMAIN = 10;
// A header longer than this is cut at a field boundary: a report is not a copy of a huge message.
const HEADER_BYTES = 64 * 1024;

export interface FailedMessage {
  at: string; // ISO time of the decision
  sourceIp: string;
  envelope: { mailFrom: string; rcptTo: string[] };
  checks: Omit<Verdict, 'headers' | 'dns' | 'arcSealInput'>;
  added: string; // the Received-SPF and Authentication-Results fields the MX added
  decision: Decision;
  message: Buffer;
}

export interface FailureContext {
  instance: Instance;
  reports: Reports;
  resolver: LabResolver;
  signer: Signer;
  queue: Enqueue;
  queued: () => void;
  log: Logger;
}

export class FailureReporter {
  private ctx: FailureContext;
  private secret = randomBytes(32); // for redaction; never written anywhere
  private sending = new Set<Promise<void>>();
  private sent = new Map<string, { since: number; count: number }>(); // by policy domain: reports in the period since the first
  // On as the instance file says (reports.failure); a lesson turns it on for a while (POST /api/reports/failure).
  enabled: boolean;

  constructor(ctx: FailureContext) {
    this.ctx = ctx;
    this.enabled = ctx.reports.failure;
  }

  // Called for every decided message; the report, if any, is made and queued
  // in the background (the client's reply does not wait for it).
  consider(failed: FailedMessage): void {
    if (!this.enabled) return;
    const { dmarc } = failed.checks;
    if (!dmarc.record || !dmarc.fromDomain) return;
    const published = parsePublished(dmarc.record, dmarc.orgDomain ?? dmarc.fromDomain);
    if (published.ruf.length === 0 || /(^|;)\s*psd\s*=\s*y\s*(;|$)/i.test(dmarc.record)) return; // RFC 9991 section 2: never a PSD's ruf=
    const why = failureCondition(published.fo, failed.checks);
    if (!why) return;
    const end = failed.message.indexOf('\r\n\r\n');
    const header = Buffer.from(failed.message.subarray(0, end === -1 ? failed.message.length : end)); // a copy: the message's memory is released after the reply
    if (/^multipart\/report\s*;.*report-type\s*=\s*"?feedback-report/i.test(headerValue(parseHeaders(header), 'Content-Type') ?? '')) return; // a report about a report
    const at = Date.parse(failed.at);
    const sent = this.sent.get(published.domain);
    const current = sent && at - sent.since < this.ctx.reports.periodSeconds * 1000 ? sent : { since: at, count: 0 };
    if (current.count >= PER_DOMAIN) {
      this.ctx.log.info({ policyDomain: published.domain }, `DMARC failure report not sent: already ${PER_DOMAIN} for ${published.domain} in this period`);
      return;
    }
    this.sent.set(published.domain, { since: current.since, count: current.count + 1 });
    const sending = this.send(failed, published.domain, published.ruf, header, why).catch((error: Error) => this.ctx.log.error({ err: error, policyDomain: published.domain }, 'DMARC failure report not sent'));
    this.sending.add(sending);
    void sending.finally(() => this.sending.delete(sending));
  }

  // Once the reports under way are queued (on disk: delivered after a restart).
  stop(): Promise<unknown> {
    return Promise.all(this.sending);
  }

  private async send(failed: FailedMessage, policyDomain: string, ruf: string[], header: Buffer, why: string): Promise<void> {
    const { instance, reports, resolver, signer, queue, queued, log } = this.ctx;
    const { checks, envelope } = failed;
    const where = await destinations(policyDomain, ruf, resolver);
    for (const r of where.refused) log.warn({ policyDomain, uri: r.uri, reason: r.reason }, 'DMARC failure report destination refused');
    if (where.to.length === 0) return;
    const fromDomain = checks.dmarc.fromDomain!;
    const alignedBy = checks.dmarc.alignedBy ?? [];
    const spfAligned = checks.spf.domain !== undefined && aligns(checks.spf.domain, fromDomain, checks.dmarc.alignment?.spf);
    const failedDkim = checks.dkim.find((d) => d.aligned && d.result !== 'pass');
    const cut = cutHeader(header);
    const message = failureMessage({
      from: reports.from,
      to: where.to,
      hostname: instance.hostname,
      reportedDomain: fromDomain,
      sourceIp: failed.sourceIp,
      arrival: new Date(failed.at),
      mailFrom: envelope.mailFrom,
      recipients: envelope.rcptTo.map((r) => this.redact(r)),
      authenticationResults: /^Authentication-Results:.*(\r\n[ \t].*)*/im.exec(failed.added)?.[0] ?? `Authentication-Results: ${instance.hostname}; dmarc=${checks.dmarc.result} header.from=${fromDomain}`,
      identityAlignment: (['dkim', 'spf'] as const).filter((m) => !alignedBy.includes(m)),
      deliveryResult: failed.decision.disposition === 'reject' ? 'reject' : failed.decision.disposition === 'junk' ? 'spam' : 'delivered',
      ...(failedDkim && { dkim: { domain: failedDkim.domain, selector: failedDkim.selector } }),
      ...(spfAligned && checks.spf.result !== 'pass' && checks.spf.record && { spfDns: { domain: checks.spf.domain!, record: checks.spf.record } }),
      header: this.redactHeader(cut.header, envelope.rcptTo),
      headerCut: cut.cut,
    });
    const signed = Buffer.concat([Buffer.from(await signer.sign(message.raw, reports.from.slice(reports.from.indexOf('@') + 1))), message.raw]);
    const entry = await queue.hold(signed, { mailFrom: reports.from, recipients: where.to, messageId: message.messageId, origin: 'report' });
    queue.release(entry);
    queued();
    log.info({ policyDomain, queueId: entry.id, to: where.to, sourceIp: failed.sourceIp }, `DMARC failure report for ${fromDomain} (${why}), to ${where.to.join(', ')}`);
  }

  // RFC 6590 section 4: the local part becomes a keyed hash; the domain stays.
  private redact(address: string): string {
    const at = address.lastIndexOf('@');
    return `${createHmac('sha256', this.secret).update(address.slice(0, at).toLowerCase()).digest('hex').slice(0, 16)}@${address.slice(at + 1)}`;
  }

  // Every envelope recipient, wherever it shows in the header (To:, Cc:,
  // Received: ... for <...>), in any case.
  private redactHeader(header: Buffer, recipients: string[]): Buffer {
    let text = header.toString('latin1');
    for (const r of recipients) {
      const latin1 = Buffer.from(r, 'utf8').toString('latin1').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      text = text.replace(new RegExp(latin1, 'gi'), Buffer.from(this.redact(r), 'utf8').toString('latin1'));
    }
    return Buffer.from(text, 'latin1');
  }
}

// Why the record's fo= asks for a report of this message, or undefined
// (RFC 9989 section 4.7; several options separated by colons).
function failureCondition(fo: string | undefined, checks: FailedMessage['checks']): string | undefined {
  const alignedBy = checks.dmarc.alignedBy ?? [];
  const dkimFailed = checks.dkim.some((d) => d.result !== 'pass' && d.result !== 'none');
  const spfFailed = ['fail', 'softfail', 'temperror', 'permerror'].includes(checks.spf.result);
  for (const option of (fo ?? '0').split(':').map((o) => o.trim().toLowerCase())) {
    if (option === '0' && alignedBy.length === 0) return 'fo=0: no aligned pass';
    if (option === '1' && alignedBy.length < 2) return `fo=1: no aligned ${['dkim', 'spf'].filter((m) => !alignedBy.includes(m)).join(' or ')} pass`;
    if (option === 'd' && dkimFailed) return 'fo=d: a DKIM signature failed';
    if (option === 's' && spfFailed) return `fo=s: SPF ${checks.spf.result}`;
  }
  return undefined;
}

// As the lab's aggregate reports: .test is a one-label public suffix, so an
// organizational domain is the last two labels.
function aligns(domain: string, fromDomain: string, mode: 'strict' | 'relaxed' = 'relaxed'): boolean {
  const org = (d: string) => d.toLowerCase().split('.').slice(-2).join('.');
  return mode === 'strict' ? domain.toLowerCase() === fromDomain.toLowerCase() : org(domain) === org(fromDomain);
}

// The header's first fields up to HEADER_BYTES.
function cutHeader(header: Buffer): { header: Buffer; cut: boolean } {
  if (header.length <= HEADER_BYTES) return { header, cut: false };
  let end = header.lastIndexOf('\r\n', HEADER_BYTES);
  while (end > 0 && (header[end + 2] === 0x20 || header[end + 2] === 0x09)) end = header.lastIndexOf('\r\n', end - 1);
  return { header: header.subarray(0, Math.max(end, 0)), cut: true };
}
