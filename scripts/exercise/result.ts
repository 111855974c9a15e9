// One check of an exercise as a person reads it: each check pass, FAIL or
// error with its reason, then what it saw: the DNS answers the receiver's
// resolver gave, and the probe message with its verdicts, the decision and
// where its why view is in the receiver's console.
import type { RecordShape } from '../../services/lib/resolver.ts';
import type { ExerciseResult, ExerciseView, ProbeSaw } from './api.ts';

export const mark = (status: string) => (status === 'fail' ? 'FAIL' : status);

const INDENT = ' '.repeat(9);
const shorten = (text: string) => (text.length > 90 ? `${text.slice(0, 70)}...(${text.length} characters)` : text); // DKIM keys are long
// As scripts/scenario/explain.ts shows answers: TXT quoted, MX as preference and host.
const record = (a: RecordShape) => (typeof a === 'string' ? a : Array.isArray(a) ? `"${shorten(a.join(''))}"` : `${a.priority} ${a.exchange}`);

export function heading(exercise: Pick<ExerciseView, 'number' | 'id' | 'title'>): string {
  return `${exercise.number} ${exercise.id}: ${exercise.title}`;
}

export function describeResult(result: ExerciseResult, sessionLink: (id: string) => string): string {
  const lines: string[] = [];
  for (const check of result.checks) {
    lines.push(`  ${mark(check.status).padEnd(5)}  ${check.title}`, `${INDENT}${check.reason}`);
    // A question asked twice with the same answer (a lookup, then the SPF evaluation) is shown once.
    const dns = (check.saw.dns ?? []).map((d) => `dns: ${d.name} ${d.type} -> ${d.error ?? (d.answer.length > 0 ? d.answer.map((a) => record(a as RecordShape)).join(' | ') : 'no records')}`);
    lines.push(...[...new Set(dns)].map((l) => `${INDENT}${l}`));
    if (check.saw.message) lines.push(...probe(check.saw.message, sessionLink).map((l) => `${INDENT}${l}`));
  }
  const passed = result.checks.filter((c) => c.status === 'pass').length;
  lines.push(`${mark(result.status)}: ${passed} of ${result.checks.length} checks passed, in ${(result.ms / 1000).toFixed(1)} s (checked ${result.checkedAt} by ${result.by})`);
  return lines.join('\n');
}

function probe(m: ProbeSaw, sessionLink: (id: string) => string): string[] {
  const lines = [
    `message (${m.probe}): sent by ${m.sentBy} at ${m.sentAt}`,
    `  From ${m.from}, MAIL FROM <${m.mailFrom}>, to ${m.to}, Message-ID ${m.messageId}`,
  ];
  if (m.verdicts) {
    const { spf, dkim, dmarc, arc, policy } = m.verdicts;
    lines.push(`  spf=${spf} dkim=${dkim} dmarc=${dmarc} arc=${arc}${policy ? ` policy=${policy}` : ''}`);
  }
  if (m.deliveredBy) lines.push(`  handed to the receiver by ${m.deliveredBy}`);
  if (m.decision) lines.push(`  decision: ${m.decision.disposition}${m.decision.code ? ` ${m.decision.code}` : ''}: ${m.decision.reason}`);
  if (m.delivery) lines.push(`  stored in ${m.delivery.mailbox} ${m.delivery.folder} (message ${m.delivery.id})`);
  if (m.undelivered) lines.push(`  no decision: ${m.undelivered}`);
  if (m.session) lines.push(`  why: ${sessionLink(m.session)}`);
  return lines;
}
