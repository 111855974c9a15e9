// A step's expectations against what the receiving MTA recorded: one check
// per expectation, each with the expected and the actual value as text.
import type { Transaction } from '../../services/mta/store/sessions.ts';
import type { Stored } from './observe.ts';
import type { DkimExpectation, Expect } from './schema.ts';
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
