// A probe's outcome against what an exercise expects of it, and the reason
// in a student's words: what the receiver saw (each result with mailauth's
// own reason), what that means, and what to change.
import type { Student } from '../../lib/classroom.ts';
import type { ProbeExpect } from './catalogue.ts';
import type { Outcome } from './lookups.ts';
import type { Probe } from './probes.ts';

export function judge(probe: Probe, expect: ProbeExpect, student: Student): Outcome {
  const { saw, transaction } = probe;
  if (!transaction) {
    // Nothing of the student's can stop a submission or leave no word at all:
    // that is the lab's fault, not theirs. A queue's word is about their domain.
    const labFault = /could not be reached|refused to send it|within \d+ s$/.test(saw.undelivered ?? '');
    return { status: labFault ? 'error' : 'fail', reason: `the message from ${saw.sentBy} did not reach a decision: ${saw.undelivered}` };
  }
  const decision = transaction.decision as typeof transaction.decision & { arcOverride?: string; arcDeclined?: string };
  const checks = transaction.checks;
  if (!checks) return { status: 'fail', reason: `the receiver refused it before reading it: ${decision.reason}` };
  // The signatures of the author's domain (an unsigned message has one
  // entry, result none, without a domain).
  const author = saw.from.slice(saw.from.lastIndexOf('@') + 1);
  const mine = checks.dkim.filter((d) => d.domain !== undefined && (d.domain === author || d.domain === student.domain || d.domain.endsWith(`.${student.domain}`)));
  const dkim = mine.find((d) => d.result === 'pass') ?? mine[0];
  const wrong: string[] = [];

  if (expect.spf && checks.spf.result !== expect.spf) {
    let why = '';
    if (expect.spf === 'fail' && checks.spf.result === 'softfail') why = ': your record ends in ~all ("probably not"); -all says "no"';
    else if (expect.spf === 'fail' && checks.spf.result === 'pass') why = `: your record authorises ${saw.sentBy}, which is not yours`;
    else if (expect.spf === 'pass' && checks.spf.result === 'fail') why = `: your record does not name ${saw.sentBy}, where your mail leaves the lab`;
    else if (checks.spf.result === 'none') why = ': there is no SPF record for the MAIL FROM domain';
    wrong.push(`SPF for ${saw.mailFrom} from ${saw.sentBy} was ${checks.spf.result}, not ${expect.spf}${why} (${checks.spf.reason}${checks.spf.record ? `; record "${checks.spf.record}"` : ''})`);
  }
  if (expect.dkim) {
    const got = dkim?.result ?? 'none';
    if (got !== expect.dkim) {
      const why = !dkim
        ? checks.dkim.some((d) => d.domain)
          ? `: it carried signatures of ${checks.dkim.flatMap((d) => d.domain ?? []).join(', ')}, none of ${author}`
          : `: it carried no DKIM signature: the sender signs your mail only once it holds a key of yours`
        : `: ${dkim.reason} (d=${dkim.domain}, s=${dkim.selector})`;
      wrong.push(`DKIM for ${author} was ${got}, not ${expect.dkim}${why}`);
    }
  }
  if (expect.dmarc && checks.dmarc.result !== expect.dmarc) {
    wrong.push(`DMARC was ${checks.dmarc.result}, not ${expect.dmarc}: ${checks.dmarc.reason}${checks.dmarc.record ? ` (record "${checks.dmarc.record}")` : ''}`);
  }
  if (expect.policy && !expect.policy.includes(checks.dmarc.policy ?? 'none')) {
    wrong.push(`the receiver applied policy ${checks.dmarc.policy ?? 'none'}${checks.dmarc.published && checks.dmarc.published !== checks.dmarc.policy ? ` (your record says p=${checks.dmarc.published})` : ''}; this exercise needs ${expect.policy.join(' or ')}`);
  }
  if (expect.alignment === 'strict') {
    const a = checks.dmarc.alignment;
    if (a?.spf !== 'strict' || a?.dkim !== 'strict') wrong.push(`the receiver read your alignment as aspf=${a?.spf?.[0] ?? 'r'}, adkim=${a?.dkim?.[0] ?? 'r'}: both should be strict (s)`);
    else if (!(checks.dmarc.alignedBy ?? []).includes('spf') || !(checks.dmarc.alignedBy ?? []).includes('dkim')) {
      wrong.push(`under strict alignment only ${(checks.dmarc.alignedBy ?? []).join(' and ') || 'nothing'} aligned: both SPF (MAIL FROM ${saw.mailFrom}) and DKIM (d=) must name exactly ${student.domain}`);
    }
  }
  const disposition = decision.disposition === 'reject' || decision.disposition === 'refused' ? 'reject' : decision.disposition;
  if (expect.disposition && disposition !== expect.disposition) {
    const where = { inbox: 'the inbox', junk: 'Junk', reject: 'refused' }[expect.disposition];
    const code = 'code' in decision && decision.code ? `${decision.code} ${decision.enhanced ?? ''}`.trim() : '';
    const got = { reject: `refused (${code})`, defer: `deferred (${code}): the sender will try again`, inbox: 'put in the inbox', junk: 'put in Junk' }[disposition] ?? disposition;
    wrong.push(`it was ${got}, not ${where}: ${decision.reason}`);
  }
  if (expect.arcOverride !== undefined && Boolean(decision.arcOverride) !== expect.arcOverride) {
    wrong.push(expect.arcOverride ? `the receiver did not accept it on the list's ARC seal${decision.arcDeclined ? `: ${decision.arcDeclined}` : ''}` : `the receiver accepted it on an ARC seal: ${decision.arcOverride}`);
  }
  const hop = saw.deliveredBy ? `, ${saw.deliveredBy} handed it to the receiver` : '';
  const outcome = `${saw.sentBy} sent it${hop}; SPF ${checks.spf.result}, DKIM ${dkim?.result ?? 'none'}, DMARC ${checks.dmarc.result}${checks.dmarc.policy ? ` (policy ${checks.dmarc.policy})` : ''}: ${decision.disposition}`;
  if (wrong.length) return { status: 'fail', reason: `${wrong.join('; ')}. (${outcome})` };
  return { status: 'pass', reason: `${outcome}. ${decision.reason}` };
}
