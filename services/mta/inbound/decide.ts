// The fate of a verified message. First the author: a From field that cannot
// be read one way is refused (or filed as Junk) on its own, whatever DMARC
// says. Then DMARC names the policy; mailauth has already applied sp=, np= and
// t=y to it. Local policy (the instance file) covers what DMARC leaves open:
// SPF failing for a domain without a DMARC record, and ARC sealers trusted
// to vouch for mail they forward. A temporary DNS failure never ends in a
// permanent refusal: when the failed lookup could have changed the outcome,
// the message is deferred with the code the check's RFC names.
import type { Instance } from '../instance.ts';
import type { Verdict } from './verify.ts';

export type Disposition = 'inbox' | 'junk' | 'reject' | 'defer';

export interface Decision {
  disposition: Disposition;
  rule?: string; // which decision path was taken (README: Verify and decide); records older than the rules lack it
  reason: string; // why, in words a student can follow
  code?: number; // for reject and defer: the SMTP reply
  enhanced?: string;
  arcOverride?: string; // set when a trusted ARC sealer turned a DMARC failure around
  arcDeclined?: string; // set when a valid ARC chain could not turn it around, and why
}

export function decide(verdict: Verdict, policy: Instance['policy']): Decision {
  const { author } = verdict;
  const byDmarc = dmarcDecision(verdict, policy);
  if (!author?.problem) return byDmarc;
  const unclear = `the author is unclear: ${author.problem}`;
  if (policy.ambiguousFrom === 'reject') {
    return { disposition: 'reject', rule: 'author-reject', code: 550, enhanced: '5.7.1', reason: `${unclear}; local policy (ambiguousFrom) refuses such messages` };
  }
  // Junk at least: a refusal or a deferral that DMARC asks for still stands.
  if (byDmarc.disposition === 'reject' || byDmarc.disposition === 'defer') return { ...byDmarc, reason: `${byDmarc.reason}; also, ${unclear}` };
  return { disposition: 'junk', rule: 'author-junk', reason: `${unclear}; local policy (ambiguousFrom) files such messages as Junk (otherwise: ${byDmarc.reason})` };
}

function dmarcDecision(verdict: Verdict, policy: Instance['policy']): Decision {
  const { spf, dkim, dmarc, arc } = verdict;
  const domain = dmarc.fromDomain;

  if (dmarc.result === 'temperror') {
    // The record is unknown, but an identifier that passed for the From
    // domain itself aligns under any aspf=/adkim=: DMARC would pass whatever
    // the record says, and without a record the message is delivered too.
    const exact = [spf.result === 'pass' && spf.domain?.toLowerCase() === domain && `SPF (${domain})`, dkim.some((d) => d.result === 'pass' && d.domain?.toLowerCase() === domain) && `DKIM (d=${domain})`].filter(Boolean);
    if (exact.length) {
      return { disposition: 'inbox', rule: 'dmarc-temperror-passed', reason: `the DMARC record of ${domain} could not be read (${dmarc.reason}), but ${exact.join(' and ')} passed for the From domain itself, which aligns under any policy: the lookup could not change the outcome` };
    }
    return defer('dmarc-temperror', '4.7.0', `DMARC check for ${domain} hit a temporary DNS failure (${dmarc.reason}); the sender should try again`);
  }
  if (dmarc.result === 'pass') {
    return { disposition: 'inbox', rule: 'dmarc-pass', reason: `DMARC pass for ${domain}: ${dmarc.reason}` };
  }
  if (dmarc.result === 'fail') {
    const published = dmarc.testMode ? `p=${dmarc.published} with t=y (testing), applied as ${dmarc.policy}` : `p=${dmarc.policy}`;
    const failure = `DMARC fail for ${domain} (${published}): ${dmarc.reason}`;
    if (dmarc.policy === 'none') {
      return { disposition: 'inbox', rule: 'dmarc-fail-none', reason: `${failure}; the policy is none, so the domain only asks for reports` };
    }
    const trust = arcTrust(verdict, policy);
    if (trust.granted) return { disposition: 'inbox', rule: 'arc-override', reason: `${failure}; accepted anyway: ${trust.why}`, arcOverride: trust.why };
    const declined = trust.why ? { arcDeclined: trust.why } : {};
    const lost = temporaryFailures(verdict);
    if (lost) return { ...defer(lost.rule, lost.enhanced, `${failure}, but ${lost.why}, which could have passed DMARC; the sender should try again`), ...declined };
    const arcNote = trust.why ? `; ARC did not help: ${trust.why}` : '';
    if (dmarc.policy === 'reject') return { disposition: 'reject', rule: 'dmarc-reject', code: 550, enhanced: '5.7.1', reason: `${failure}${arcNote}`, ...declined };
    return { disposition: 'junk', rule: 'dmarc-quarantine', reason: `${failure}${arcNote}`, ...declined };
  }

  // No DMARC policy applies: local policy decides on SPF alone.
  const none = `no DMARC policy for ${domain} (${dmarc.reason})`;
  const onFail = policy.spfFailWithoutDmarc;
  if (spf.result === 'temperror') {
    // A pass would deliver; a fail would meet the local policy.
    if (onFail !== 'inbox') return defer('spf-temperror', '4.4.3', `${none}, and the SPF check of ${spf.domain} hit a temporary DNS failure (${spf.reason}); as a fail it would meet local policy (${onFail}), so the sender should try again`);
    return { disposition: 'inbox', rule: 'no-dmarc', reason: `${none}; SPF temperror (${spf.reason}), and local policy delivers even SPF failures` };
  }
  if (spf.result === 'fail') {
    const why = `${none}; SPF fail for ${spf.domain}: ${spf.reason}`;
    switch (onFail) {
      case 'reject':
        return { disposition: 'reject', rule: 'no-dmarc-spf-fail', code: 550, enhanced: '5.7.23', reason: `${why}; local policy rejects SPF failures` };
      case 'junk':
        return { disposition: 'junk', rule: 'no-dmarc-spf-fail', reason: `${why}; local policy files SPF failures as Junk` };
      default:
        return { disposition: 'inbox', rule: 'no-dmarc-spf-fail', reason: `${why}; local policy delivers SPF failures` };
    }
  }
  return { disposition: 'inbox', rule: 'no-dmarc', reason: `${none}; SPF ${spf.result}` };
}

// RFC 8617 section 7.2: a receiver may let a sealer it trusts vouch for a
// message that failed DMARC on the way. Only the sealer's own delivery
// counts: anyone can re-send a sealed copy (ARC replay).
function arcTrust({ arc }: Verdict, policy: Instance['policy']): { granted: boolean; why?: string } {
  if (arc.result === 'none') return { granted: false };
  if (arc.result !== 'pass' || !arc.sealer) return { granted: false, why: `the ARC chain does not validate (arc=${arc.result}: ${arc.reason})` };
  const sealer = arc.sealer.toLowerCase();
  if (!policy.trustedArcSealers.includes(sealer)) return { granted: false, why: `${sealer} sealed it, but is not a trusted ARC sealer here (policy.trustedArcSealers)` };
  if (arc.sealerSaw?.dmarc !== 'pass') return { granted: false, why: `${sealer} is trusted, but it saw dmarc=${arc.sealerSaw?.dmarc ?? 'nothing'} itself` };
  if (!arc.delivery?.bySealer) return { granted: false, why: `${sealer} is trusted and saw dmarc=pass, but it did not deliver this copy: ${arc.delivery?.reason ?? 'unknown client'}` };
  return { granted: true, why: `${sealer} is a trusted ARC sealer, its chain of ${arc.instances} validates, it saw dmarc=pass before forwarding, and it delivered this copy (${arc.delivery.reason})` };
}

// A check that failed for a temporary reason, on an identifier that could
// have aligned with the From domain: had the lookup answered, DMARC might
// have passed. SPF: RFC 7208 section 8.6 (451 4.4.3); DKIM: the key was not
// available, RFC 3463's X.7.5 (cryptographic failure).
function temporaryFailures({ spf, dkim, dmarc }: Verdict): { rule: string; enhanced: string; why: string } | undefined {
  const from = dmarc.fromDomain!;
  const org = dmarc.orgDomain ?? from;
  const alignable = (domain: string | undefined, mode: 'strict' | 'relaxed' = 'relaxed') => {
    const d = domain?.toLowerCase();
    if (!d) return false;
    return mode === 'strict' ? d === from : d === org || d.endsWith(`.${org}`);
  };
  if (spf.result === 'temperror' && alignable(spf.domain, dmarc.alignment?.spf)) {
    return { rule: 'spf-temperror', enhanced: '4.4.3', why: `the SPF check of ${spf.domain} hit a temporary DNS failure (${spf.reason})` };
  }
  const key = dkim.find((d) => d.result === 'temperror' && alignable(d.domain, dmarc.alignment?.dkim));
  if (key) return { rule: 'dkim-temperror', enhanced: '4.7.5', why: `the key of the DKIM signature d=${key.domain} s=${key.selector} could not be read (${key.reason})` };
  return undefined;
}

function defer(rule: string, enhanced: string, reason: string): Decision {
  return { disposition: 'defer', rule, code: 451, enhanced, reason };
}

// The reply text a client sees for a refused or deferred message.
export function replyText(decision: Decision): string {
  if (decision.disposition === 'defer') return `${decision.enhanced} Temporary failure: ${decision.reason}`;
  return `${decision.enhanced} Message rejected: ${decision.reason}`;
}
