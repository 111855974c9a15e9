// A delivery status notification (RFC 3464) for recipients that failed: a
// multipart/report with an explanation for people, the machine-readable
// status per recipient, and the original message's header.
import { randomBytes } from 'node:crypto';
import type { QueueEntry, QueueRecipient } from './queue.ts';
import { rfc5322Date } from '../smtp/trace.ts';

export function bounceMessage(hostname: string, entry: QueueEntry, failed: QueueRecipient[], original: Buffer, now = new Date()): Buffer {
  const boundary = `=_bounce_${randomBytes(8).toString('hex')}`;
  const end = original.indexOf('\r\n\r\n');
  const originalHeader = original.subarray(0, end === -1 ? original.length : end + 2).toString('utf8');
  const people = failed.map((r) => `<${r.address}>: ${r.lastReply ?? 'failed'}`).join('\r\n');
  const perRecipient = failed
    .map((r) =>
      [
        `Final-Recipient: rfc822; ${r.address}`,
        'Action: failed',
        `Status: ${statusOf(r.lastReply)}`,
        ...(r.remoteMta ? [`Remote-MTA: dns; ${r.remoteMta}`] : []),
        `Diagnostic-Code: smtp; ${(r.lastReply ?? 'failed').replace(/\r?\n/g, ' ')}`,
        `Last-Attempt-Date: ${rfc5322Date(now)}`,
      ].join('\r\n'),
    )
    .join('\r\n\r\n');
  return Buffer.from(
    [
      `From: Mail Delivery System <MAILER-DAEMON@${hostname}>`,
      `To: <${entry.mailFrom}>`,
      'Subject: Undelivered Mail Returned to Sender',
      `Date: ${rfc5322Date(now)}`,
      `Message-ID: <${entry.id}.bounce@${hostname}>`,
      'Auto-Submitted: auto-replied',
      'MIME-Version: 1.0',
      `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
      '',
      `--${boundary}`,
      'Content-Type: text/plain; charset=utf-8',
      '',
      `This is the mail system at host ${hostname}.`,
      '',
      `Your message${entry.messageId ? ` ${entry.messageId}` : ''} could not be delivered to`,
      'one or more recipients. The reasons the receiving systems gave:',
      '',
      people,
      '',
      `--${boundary}`,
      'Content-Type: message/delivery-status',
      '',
      `Reporting-MTA: dns; ${hostname}`,
      `X-Queue-ID: ${entry.id}`,
      `Arrival-Date: ${rfc5322Date(new Date(entry.createdAt))}`,
      '',
      perRecipient,
      '',
      `--${boundary}`,
      'Content-Type: text/rfc822-headers',
      '',
      originalHeader.trimEnd(),
      '',
      `--${boundary}--`,
      '',
    ].join('\r\n'),
  );
}

// The enhanced status code in the last reply ("550 5.7.1 ..."; a 4.x.x one
// when the queue gave up on temporary failures), or a general failure.
function statusOf(reply: string | undefined): string {
  return /\b[45]\.\d{1,3}\.\d{1,3}\b/.exec(reply ?? '')?.[0] ?? '5.0.0';
}
