// A DMARC failure report as mail (RFC 9991, in the format of RFC 6591 and
// RFC 5965): multipart/report; report-type=feedback-report with a few lines
// for people, the machine-readable message/feedback-report, and the failed
// message's header section as text/rfc822-headers. Never its body. The
// caller redacts the header and the recipients, DKIM-signs and queues it.
import { randomBytes } from 'node:crypto';
import { rfc5322Date } from '../smtp/trace.ts';

export interface FailureReport {
  from: string; // our address
  to: string[]; // the ruf= addresses the report may go to
  hostname: string; // ours: the Message-ID, the human part
  reportedDomain: string; // the From domain of the failed message
  sourceIp: string;
  arrival: Date;
  mailFrom: string; // the envelope sender ('' for the null sender)
  recipients: string[]; // the envelope recipients, already redacted
  authenticationResults: string; // our Authentication-Results field, as added to the message (folded)
  identityAlignment: ('dkim' | 'spf')[]; // the mechanisms that gave no aligned pass
  deliveryResult: 'delivered' | 'spam' | 'reject';
  dkim?: { domain: string; selector: string }; // an aligned signature that failed
  spfDns?: { domain: string; record: string }; // the SPF record of an aligned identity that failed
  header: Buffer; // the failed message's header section (redacted), CRLF line ends, no blank line
  headerCut: boolean; // the header was longer than a report carries: its last fields are left out
}

export function failureMessage(report: FailureReport, now = new Date()): { raw: Buffer; messageId: string } {
  // Names from DNS or mail go into header fields: nothing that could add a line.
  for (const address of [report.from, ...report.to]) if (!ADDRESS.test(address)) throw new Error(`DMARC failure report: ${JSON.stringify(address)} is not a plain address`);
  for (const domain of [report.reportedDomain, report.hostname]) if (!DOMAIN.test(domain)) throw new Error(`DMARC failure report: ${JSON.stringify(domain)} is not a domain name`);
  for (const text of [report.mailFrom, ...report.recipients, report.dkim?.selector ?? '', report.spfDns?.record ?? '']) {
    if (/[\r\n]/.test(text)) throw new Error(`DMARC failure report: ${JSON.stringify(text)} would break a header line`);
  }
  const messageId = `<${randomBytes(12).toString('hex')}@${report.hostname}>`;
  const boundary = `=_failure_${randomBytes(8).toString('hex')}`;
  const aligned = (m: 'dkim' | 'spf') => (report.identityAlignment.includes(m) ? 'no aligned pass' : 'aligned pass');
  const human = [
    `This is a DMARC failure report (RFC 9991) from ${report.hostname}`,
    `for a message with a From address in ${report.reportedDomain}, received from`,
    `${report.sourceIp} on ${rfc5322Date(report.arrival)}.`,
    `DKIM: ${aligned('dkim')}; SPF: ${aligned('spf')}. What ${report.hostname} did: ${report.deliveryResult}.`,
    '',
    `Its header is attached${report.headerCut ? ' (cut short: it was too long)' : ''}, with the recipients' addresses`,
    'redacted (RFC 6590). Its body is never sent.',
    '',
  ].join('\r\n');
  const fields = [
    'Feedback-Type: auth-failure',
    'User-Agent: mail-lab',
    'Version: 1',
    'Auth-Failure: dmarc',
    report.authenticationResults,
    `Identity-Alignment: ${report.identityAlignment.length ? report.identityAlignment.join(', ') : 'none'}`,
    `Delivery-Result: ${report.deliveryResult}`,
    `Original-Mail-From: <${report.mailFrom}>`,
    ...report.recipients.map((r) => `Original-Rcpt-To: <${r}>`),
    `Arrival-Date: ${rfc5322Date(report.arrival)}`,
    `Source-IP: ${report.sourceIp}`,
    `Reported-Domain: ${report.reportedDomain}`,
    ...(report.dkim ? [`DKIM-Domain: ${report.dkim.domain}`, `DKIM-Identity: @${report.dkim.domain}`, `DKIM-Selector: ${report.dkim.selector}`] : []),
    ...(report.spfDns ? [`SPF-DNS: txt : ${report.spfDns.domain} : ${report.spfDns.record}`] : []),
    '',
  ].join('\r\n');
  const ascii = (data: Buffer | string) => !/[^\x00-\x7f]/.test(typeof data === 'string' ? data : data.toString('latin1'));
  return {
    messageId,
    raw: Buffer.concat([
      Buffer.from(
        [
          `From: ${report.from}`,
          `To: ${report.to.join(', ')}`,
          `Subject: DMARC failure report for ${report.reportedDomain}: a message from ${report.sourceIp}`,
          `Date: ${rfc5322Date(now)}`,
          `Message-ID: ${messageId}`,
          'Auto-Submitted: auto-generated',
          'MIME-Version: 1.0',
          `Content-Type: multipart/report; report-type=feedback-report; boundary="${boundary}"`,
          '',
          `--${boundary}`,
          'Content-Type: text/plain; charset=us-ascii',
          'Content-Transfer-Encoding: 7bit',
          '',
          human,
          `--${boundary}`,
          'Content-Type: message/feedback-report',
          `Content-Transfer-Encoding: ${ascii(fields) ? '7bit' : '8bit'}`,
          '',
          fields,
          `--${boundary}`,
          'Content-Type: text/rfc822-headers',
          `Content-Transfer-Encoding: ${ascii(report.header) ? '7bit' : '8bit'}`,
          '',
          '',
        ].join('\r\n'),
        'utf8',
      ),
      report.header,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]),
  };
}

// As report-message.ts: RFC 6376's domain-name, and an address whose local part is a dot-atom.
const DOMAIN = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const ADDRESS = new RegExp(`^[A-Za-z0-9!#$%&'*+/=?^_\`{|}~-]+(?:\\.[A-Za-z0-9!#$%&'*+/=?^_\`{|}~-]+)*@${DOMAIN.source.slice(1)}`);
