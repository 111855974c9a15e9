// A step's expectations against what the receiving MTA recorded: one check
// per expectation, each with the expected and the actual value as text.
import type { Transaction } from '../../services/mta/store/sessions.ts';
import type { Stored } from './observe.ts';
import type { Sent } from '../../services/mta/reports/reporter.ts';
import type { DkimExpectation, Expect, ReportExpect } from './schema.ts';
import type { Reply } from './smtp.ts';

export interface Check {
  check: string;
  expected: string;
  actual: string;
  passed: boolean;
  brief?: string; // a shorter actual for the table
}

// What came out of one step: the decision, or a refusal before any.
export interface Outcome {
  transaction?: Transaction;
  stored?: Stored;
  refusal?: Reply; // refused before the receiving MTA decided (at RCPT, or by the submitting MTA)
  missing?: string; // why there is neither
}

type Signature = NonNullable<Transaction['checks']>['dkim'][number];

export function compare(expect: Expect, outcome: Outcome): Check[] {
  const { transaction: t, refusal } = outcome;
  const checks = t?.checks;
  const none = outcome.missing ?? (refusal ? `refused: ${refusal.text}` : 'no checks');
  const result: Check[] = [];
  const add = (check: string, expected: string, actual: string | undefined, passed = actual === expected) =>
    result.push({ check, expected, actual: actual ?? none, passed: actual !== undefined && passed });

  if (expect.spf) add('spf', expect.spf, checks?.spf.result);
  if (expect.dkim) {
    if (typeof expect.dkim === 'string') add('dkim', expect.dkim, checks && oneWord(checks.dkim));
    else {
      const expected = expect.dkim.map(describeExpected).join(', ');
      const actual = checks?.dkim.map(describeSignature).join(', ');
      add('dkim', expected, actual, checks !== undefined && checks.dkim.length === expect.dkim.length && expect.dkim.every((e, i) => matches(e, checks.dkim[i])));
      if (checks) result.at(-1)!.brief = checks.dkim.map((d) => d.result).join(',');
    }
  }
  if (expect.dmarc) add('dmarc', expect.dmarc, checks?.dmarc.result);
  if (expect.arc) add('arc', expect.arc, checks?.arc.result);
  if (expect.policy) add('policy', expect.policy, checks && (checks.dmarc.policy ?? 'none published'));
  const decision = t?.decision;
  if (expect.disposition) add('disposition', expect.disposition, decision?.disposition ?? (refusal && 'refused'));
  if (expect.code) {
    const code = decision && 'code' in decision && decision.code ? `${decision.code} ${decision.enhanced}` : refusal ? codeOf(refusal) : decision && 'none: accepted';
    add('code', expect.code, code);
  }
  if (expect.arcOverride !== undefined) add('arcOverride', String(expect.arcOverride), decision && String(Boolean('arcOverride' in decision && decision.arcOverride)));
  if (expect.reason) {
    add('reason', `contains "${expect.reason}"`, decision?.reason, decision?.reason.includes(expect.reason) ?? false);
    if (decision) result.at(-1)!.brief = `...${expect.reason}...`;
  }
  for (const [name, text] of Object.entries(expect.headers ?? {})) {
    const field = outcome.stored?.headers.find((h) => h.name.toLowerCase() === name.toLowerCase());
    const actual = outcome.stored ? (field?.value ?? 'no such field') : t ? 'no stored copy' : undefined;
    add(name, `contains "${text}"`, actual, field?.value.includes(text) ?? false);
    if (field && field.value !== text) result.at(-1)!.brief = `...${text}...`;
  }
  return result;
}

// DKIM in one word: pass when any signature passed, else the first one's result.
export function oneWord(signatures: Signature[]): string {
  return signatures.find((d) => d.result === 'pass')?.result ?? signatures[0]?.result ?? 'none';
}

function matches(e: DkimExpectation, s: Signature): boolean {
  return (
    (e.result === undefined || e.result === s.result) &&
    (e.domain === undefined || e.domain === s.domain) &&
    (e.selector === undefined || e.selector === s.selector) &&
    (e.algorithm === undefined || e.algorithm === s.algorithm) &&
    (e.aligned === undefined || e.aligned === s.aligned)
  );
}

function describeExpected(e: DkimExpectation): string {
  const key = e.domain || e.selector ? ` ${e.domain ?? '*'}/${e.selector ?? '*'}` : '';
  return `${e.result ?? 'any'}${key}${e.algorithm ? ` ${e.algorithm}` : ''}${e.aligned === undefined ? '' : e.aligned ? ' aligned' : ' unaligned'}`;
}

function describeSignature(s: Signature): string {
  return s.domain ? `${s.result} ${s.domain}/${s.selector} ${s.algorithm} ${s.aligned ? 'aligned' : 'unaligned'}` : s.result;
}

const codeOf = (reply: Reply) => /^\d{3}( [245]\.\d+\.\d+)?/.exec(reply.text)?.[0] ?? String(reply.code);

// A report: step's expectations against the reports the lab sent for its
// domain (one per log file read: their rows together).
export function compareReport(expect: ReportExpect, reports: Sent[]): Check[] {
  const result: Check[] = [];
  const add = (check: string, expected: string, actual: string, passed = actual === expected) => result.push({ check, expected, actual, passed });
  const to = [...new Set(reports.flatMap((r) => r.to))].sort();
  const refused = reports.flatMap((r) => r.refused.map((x) => `${x.uri}: ${x.reason}`));
  if (expect.sent !== undefined) add('report sent', String(expect.sent), reports.length === 0 ? 'no report: no message counted' : String(to.length > 0));
  if (expect.to) add('report to', expect.to.toSorted().join(', '), to.join(', ') || 'nowhere');
  if (expect.refused) {
    add('report refused', `contains "${expect.refused}"`, refused.join('; ') || 'none refused', refused.some((r) => r.includes(expect.refused!)));
    result.at(-1)!.brief = `...${expect.refused}...`;
  }
  const records = reports.flatMap((r) => r.records);
  for (const row of expect.rows ?? []) {
    const dmarc = (r: Sent['records'][number]) => (r.dkim === 'pass' || r.spf === 'pass' ? 'pass' : 'fail');
    const matching = records.filter((r) => r.sourceIp === row.source && (!row.dmarc || dmarc(r) === row.dmarc) && (!row.disposition || r.disposition === row.disposition));
    const count = matching.reduce((sum, r) => sum + r.count, 0);
    const what = `${row.source}${row.dmarc ? ` dmarc=${row.dmarc}` : ''}${row.disposition ? ` ${row.disposition}` : ''}`;
    const seen = records.filter((r) => r.sourceIp === row.source).map((r) => `${r.count} × dmarc=${dmarc(r)} ${r.disposition}`).join(', ') || 'no row from it';
    if (row.count !== undefined) add(`report row ${what}`, `${row.count} messages`, `${count} messages (${seen})`, count === row.count);
    else add(`report row ${what}`, 'present', count > 0 ? `${count} messages` : seen, count > 0);
    result.at(-1)!.brief = `${count}`;
  }
  return result;
}

// A step's failureReport: expectation against the feedback fields of the
// report found (undefined: none came).
export function compareFailureReport(expect: { to: string; fields: Record<string, string> }, fields: Record<string, string> | undefined): Check[] {
  const result: Check[] = [{ check: 'failure report', expected: `one reaches ${expect.to}`, actual: fields ? `one reached ${expect.to}` : `none reached ${expect.to}`, passed: fields !== undefined, brief: fields ? 'arrived' : undefined }];
  for (const [name, text] of Object.entries(expect.fields)) {
    const value = fields?.[name.toLowerCase()];
    result.push({ check: `failure report ${name}`, expected: `contains "${text}"`, actual: value ?? (fields ? 'no such field' : 'no report'), passed: value?.includes(text) ?? false, brief: value });
  }
  return result;
}
