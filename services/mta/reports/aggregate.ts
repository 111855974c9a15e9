// DMARC aggregate reports (RFC 9990): one report per policy domain for a
// reporting period, made from the receiver's evaluation log as it streams
// past. Identical evaluations (same source, results, identifiers and
// authentication results) are counted in one record, so memory grows with
// the number of distinct records, not with the number of messages.
import type { Evaluation, Published } from './evaluation.ts';

// Who reports which period, under which Report-ID (the same in the XML, the
// Subject, the filename and the Message-ID).
export interface ReportMeta {
  orgName: string; // org_name: the reporting organization
  email: string; // its contact address
  reportId: string; // letters and digits: the filename's unique-id allows no more
  begin: number; // seconds since the epoch, start of the period
  end: number; // seconds since the epoch, end of the period
}

export interface AggregateReport {
  policyDomain: string;
  published: Published; // the last configuration seen in the period (RFC 9990: the final one)
  rows: ReportRow[]; // RFC 9990's records
  messages: number; // the sum of the rows' counts
}

export interface ReportRow {
  sourceIp: string;
  count: number;
  disposition: Evaluation['disposition'];
  dkim: Evaluation['dkim'];
  spf: Evaluation['spf'];
  reasons: Evaluation['reasons'];
  headerFrom: string;
  envelopeFrom: string;
  envelopeTo: string;
  authDkim: Evaluation['authDkim'];
  authSpf: Evaluation['authSpf'];
}

// RFC 9990: a report SHOULD carry no more than 100 signatures per record.
const MAX_SIGNATURES = 100;

export async function aggregate(evaluations: AsyncIterable<Evaluation>): Promise<AggregateReport[]> {
  const domains = new Map<string, { published: Published; rows: Map<string, ReportRow> }>();
  for await (const e of evaluations) {
    let domain = domains.get(e.policyDomain);
    if (!domain) domains.set(e.policyDomain, (domain = { published: e.published, rows: new Map() }));
    domain.published = e.published;
    const authDkim = e.authDkim.length > 1 ? bestSignatures(e.authDkim, e.headerFrom) : e.authDkim;
    const key = JSON.stringify([e.sourceIp, e.disposition, e.dkim, e.spf, e.reasons, e.headerFrom, e.envelopeFrom, e.envelopeTo, authDkim, e.authSpf]);
    const row = domain.rows.get(key);
    if (row) row.count++;
    else {
      const { sourceIp, disposition, dkim, spf, reasons, headerFrom, envelopeFrom, envelopeTo, authSpf } = e;
      domain.rows.set(key, { sourceIp, count: 1, disposition, dkim, spf, reasons, headerFrom, envelopeFrom, envelopeTo, authDkim, authSpf });
    }
  }
  return [...domains].map(([policyDomain, { published, rows }]) => {
    const all = [...rows.values()];
    return { policyDomain, published, rows: all, messages: all.reduce((sum, r) => sum + r.count, 0) };
  });
}

// RFC 9990's order of preference: passing signatures of the From domain,
// then of its parents or subdomains (relaxed alignment, without the public
// suffix list: only the order among passing signatures depends on it), then
// other passing ones, then the rest; at most MAX_SIGNATURES of them.
function bestSignatures(signatures: Evaluation['authDkim'], headerFrom: string): Evaluation['authDkim'] {
  const from = headerFrom.toLowerCase();
  const rank = ({ domain, result }: { domain: string; result: string }) => {
    if (result !== 'pass') return 3;
    const d = domain.toLowerCase();
    if (d === from) return 0;
    return from.endsWith(`.${d}`) || d.endsWith(`.${from}`) ? 1 : 2;
  };
  return signatures
    .map((s) => ({ s, rank: rank(s) }))
    .sort((a, b) => a.rank - b.rank)
    .slice(0, MAX_SIGNATURES)
    .map(({ s }) => s);
}

// The report as RFC 9990's XML. Everything in it that came from mail or DNS
// is escaped, and characters XML cannot carry at all become U+FFFD.
export function reportXml(report: AggregateReport, meta: ReportMeta): string {
  const { published } = report;
  const errors: string[] = [];
  const policy = (tag: string, value: string | undefined) => {
    if (value === undefined) return '';
    if (POLICIES.has(value)) return element(tag, value);
    errors.push(`${tag}=${value} is not none, quarantine or reject`);
    return tag === 'p' ? element(tag, 'none') : ''; // DMARCbis: a record with a valid rua and a wrong p counts as p=none
  };
  const policyPublished = [
    element('domain', report.policyDomain),
    element('discovery_method', 'treewalk'),
    policy('p', published.p),
    policy('sp', published.sp),
    policy('np', published.np),
    published.fo === undefined ? '' : element('fo', published.fo),
    element('adkim', published.adkim),
    element('aspf', published.aspf),
    element('testing', published.testing),
  ];
  const metadata = [
    element('org_name', meta.orgName),
    element('email', meta.email),
    element('report_id', meta.reportId),
    `<date_range>${element('begin', String(meta.begin))}${element('end', String(meta.end))}</date_range>`,
    errors.length ? element('error', errors.join('; ')) : '',
    element('generator', 'mail-lab'),
  ];
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<feedback xmlns="${NAMESPACE}">`,
    '  <version>1.0</version>',
    '  <report_metadata>',
    ...lines(metadata, 4),
    '  </report_metadata>',
    '  <policy_published>',
    ...lines(policyPublished, 4),
    '  </policy_published>',
    ...report.rows.map(rowXml),
    '</feedback>',
    '',
  ].join('\n');
}

const NAMESPACE = 'urn:ietf:params:xml:ns:dmarc-2.0';
const POLICIES = new Set(['none', 'quarantine', 'reject']);
// RFC 8601 sections 2.7.1 and 2.7.2: the results the schema allows.
const DKIM_RESULTS = new Set(['none', 'pass', 'fail', 'policy', 'neutral', 'temperror', 'permerror']);
const SPF_RESULTS = new Set(['none', 'pass', 'fail', 'softfail', 'policy', 'neutral', 'temperror', 'permerror']);

function rowXml(r: ReportRow): string {
  const reasons = r.reasons.map((reason) => `<reason>${element('type', reason.type)}${reason.comment === undefined ? '' : element('comment', reason.comment)}</reason>`);
  const dkim = r.authDkim.map((s) => `<dkim>${element('domain', s.domain)}${element('selector', s.selector)}${result(s.result, DKIM_RESULTS)}</dkim>`);
  // The schema knows only the mfrom scope; an SPF result for HELO (the null
  // sender's) is given without one.
  const spf = `<spf>${element('domain', r.authSpf.domain)}${r.authSpf.scope === 'mfrom' ? element('scope', 'mfrom') : ''}${result(r.authSpf.result, SPF_RESULTS)}</spf>`;
  return [
    '  <record>',
    '    <row>',
    `      ${element('source_ip', r.sourceIp)}`,
    `      ${element('count', String(r.count))}`,
    `      <policy_evaluated>${element('disposition', r.disposition)}${element('dkim', r.dkim)}${element('spf', r.spf)}${reasons.join('')}</policy_evaluated>`,
    '    </row>',
    `    <identifiers>${element('header_from', r.headerFrom)}${element('envelope_from', r.envelopeFrom)}${element('envelope_to', r.envelopeTo)}</identifiers>`,
    `    <auth_results>${dkim.join('')}${spf}</auth_results>`,
    '  </record>',
  ].join('\n');
}

// A result outside RFC 8601's list would break the schema: it is reported as
// permerror, with the verifier's word in human_result.
function result(value: string, allowed: Set<string>): string {
  return allowed.has(value) ? element('result', value) : element('result', 'permerror') + element('human_result', `the verifier said: ${value}`);
}

function lines(elements: string[], indent: number): string[] {
  return elements.filter(Boolean).map((e) => ' '.repeat(indent) + e);
}

function element(tag: string, text: string): string {
  return `<${tag}>${escapeXml(text)}</${tag}>`;
}

function escapeXml(text: string): string {
  return text
    .replace(/[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, '\uFFFD')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/\r/g, '&#13;');
}
