// What a receiving MTA decided about one message, in two lines a person can
// read: the outcome and the checks, then why. From a transaction of a
// session record (GET /api/sessions/:id).
import type { Transaction } from '../../services/mta/store/sessions.ts';

export function describe(t: Transaction, recipient: string): string[] {
  const { decision } = t;
  const code = 'code' in decision && decision.code ? ` ${decision.code} ${decision.enhanced}` : '';
  const folder = t.deliveries.find((d) => d.mailbox === recipient.toLowerCase())?.folder;
  const outcome = `${decision.disposition}${code}${folder ? ` -> ${folder}` : ''}`;
  return [`${outcome}  ${checks(t)}`.trimEnd(), `why: ${decision.reason}`];
}

function checks(t: Transaction): string {
  if (!t.checks) return '';
  const { spf, dkim, dmarc, arc } = t.checks;
  // One word for DKIM: pass when any signature passed, else the first one's result.
  const dkimResult = dkim.find((d) => d.result === 'pass')?.result ?? dkim[0]?.result ?? 'none';
  const arcPart = arc.instances > 0 ? ` arc=${arc.result}` : '';
  return `spf=${spf.result} dkim=${dkimResult} dmarc=${dmarc.result}${arcPart}`;
}
