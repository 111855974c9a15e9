// A DMARC aggregate report as mail (RFC 9990, transport by email): a few
// lines for people and the report's XML gzipped as application/gzip, under
// the Subject and the filename the RFC prescribes, so that any report
// consumer finds it. The caller DKIM-signs and queues it.
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { rfc5322Date } from '../smtp/trace.ts';
import { type AggregateReport, type ReportMeta, reportXml } from './aggregate.ts';

export interface ReportMail {
  report: AggregateReport;
  meta: ReportMeta;
  from: string; // our address; its domain is the report's Submitter
  to: string[]; // the rua= addresses the report may go to
  hostname: string; // ours, for the Message-ID
}

export function reportMessage({ report, meta, from, to, hostname }: ReportMail, now = new Date()): { raw: Buffer; messageId: string; filename: string } {
  // Everything below goes into header fields: a name from DNS or mail that is
  // not a plain domain or address must not add lines to them.
  const submitter = from.slice(from.lastIndexOf('@') + 1);
  for (const address of [from, ...to]) if (!ADDRESS.test(address)) throw new Error(`DMARC report for ${JSON.stringify(report.policyDomain)}: ${JSON.stringify(address)} is not a plain address`);
  for (const domain of [report.policyDomain, hostname]) if (!DOMAIN.test(domain)) throw new Error(`DMARC report: ${JSON.stringify(domain)} is not a domain name`);
  if (!/^[A-Za-z0-9]+$/.test(meta.reportId)) throw new Error(`DMARC report: Report-ID ${JSON.stringify(meta.reportId)} must be letters and digits (the filename's unique-id)`);

  const filename = `${submitter}!${report.policyDomain}!${meta.begin}!${meta.end}!${meta.reportId}.xml.gz`;
  const messageId = `<${meta.reportId}@${hostname}>`;
  const boundary = `=_report_${randomBytes(8).toString('hex')}`;
  const passed = report.rows.reduce((sum, r) => sum + (r.dkim === 'pass' || r.spf === 'pass' ? r.count : 0), 0);
  const sources = new Set(report.rows.map((r) => r.sourceIp)).size;
  const text = [
    `This is a DMARC aggregate report (RFC 9990) from ${meta.orgName} (${submitter})`,
    `for ${report.policyDomain}, from ${isoTime(meta.begin)} to ${isoTime(meta.end)}:`,
    `${report.messages} messages from ${sources} source addresses, ${passed} passed DMARC, ${report.messages - passed} failed.`,
    '',
    `The report is attached as ${filename}.`,
    '',
  ].join('\r\n');
  const ascii = /^[\x20-\x7e\r\n]*$/.test(text);
  return {
    messageId,
    filename,
    raw: Buffer.from(
      [
        `From: ${from}`,
        `To: ${to.join(', ')}`,
        `Subject: Report Domain: ${report.policyDomain} Submitter: ${submitter} Report-ID: ${meta.reportId}`,
        `Date: ${rfc5322Date(now)}`,
        `Message-ID: ${messageId}`,
        'Auto-Submitted: auto-generated',
        'MIME-Version: 1.0',
        `Content-Type: multipart/mixed; boundary="${boundary}"`,
        '',
        `--${boundary}`,
        'Content-Type: text/plain; charset=utf-8',
        `Content-Transfer-Encoding: ${ascii ? '7bit' : 'base64'}`,
        '',
        ascii ? text : base64Lines(Buffer.from(text)),
        `--${boundary}`,
        `Content-Type: application/gzip; name="${filename}"`,
        'Content-Transfer-Encoding: base64',
        `Content-Disposition: attachment; filename="${filename}"`,
        '',
        base64Lines(gzipSync(reportXml(report, meta))),
        `--${boundary}--`,
        '',
      ].join('\r\n'),
    ),
  };
}

// RFC 6376's domain-name (letters, digits, hyphens; the filename's grammar),
// and an address whose local part is a dot-atom.
const DOMAIN = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const ADDRESS = new RegExp(`^[A-Za-z0-9!#$%&'*+/=?^_\`{|}~-]+(?:\\.[A-Za-z0-9!#$%&'*+/=?^_\`{|}~-]+)*@${DOMAIN.source.slice(1)}`);

const isoTime = (seconds: number) => new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');

function base64Lines(data: Buffer): string {
  return data.toString('base64').replace(/.{1,76}/g, '$&\r\n').trimEnd();
}
