// The fate of a verified message. DMARC names the policy; mailauth has
// already applied sp=, np= and t=y to it. Local policy (the instance file)
// covers what DMARC leaves open: SPF failing for a domain without a DMARC
// record, and ARC sealers trusted to vouch for forwarded mail.
import type { Instance } from './instance.ts';
import type { Verdict } from './verify.ts';

export type Disposition = 'inbox' | 'junk' | 'reject' | 'defer';

export interface Decision {
  disposition: Disposition;
  reason: string; // why, in words a student can follow
  code?: number; // for reject and defer: the SMTP reply
  enhanced?: string;
  arcOverride?: string; // set when a trusted ARC sealer turned a DMARC failure around
}

export function decide(verdict: Verdict, policy: Instance['policy']): Decision {
  const { spf, dmarc, arc } = verdict;
  const domain = dmarc.fromDomain;

  if (dmarc.result === 'temperror') {
    return defer(`DMARC check for ${domain} hit a temporary DNS failure (${dmarc.reason}); the sender should try again`);
  }
  if (dmarc.result === 'pass') {
    return { disposition: 'inbox', reason: `DMARC pass for ${domain}: ${dmarc.reason}` };
  }
  if (dmarc.result === 'fail') {
    const published = dmarc.testMode ? `p=${dmarc.published} with t=y (testing), applied as ${dmarc.policy}` : `p=${dmarc.policy}`;
    const failure = `DMARC fail for ${domain} (${published}): ${dmarc.reason}`;
    const trusted = arc.result === 'pass' && arc.sealer !== undefined && policy.trustedArcSealers.includes(arc.sealer.toLowerCase());
    if (trusted && arc.sealerSaw?.dmarc === 'pass' && dmarc.policy !== 'none') {
      const override = `${arc.sealer} is a trusted ARC sealer, its chain of ${arc.instances} validates, and it saw dmarc=pass before forwarding`;
      return { disposition: 'inbox', reason: `${failure}; accepted anyway: ${override}`, arcOverride: override };
    }
    if (dmarc.policy === 'reject') return { disposition: 'reject', code: 550, enhanced: '5.7.1', reason: failure };
    if (dmarc.policy === 'quarantine') return { disposition: 'junk', reason: failure };
    return { disposition: 'inbox', reason: `${failure}; the policy is none, so the domain only asks for reports` };
  }

  // No DMARC policy applies: local policy decides on SPF alone.
  const none = `no DMARC policy (${dmarc.reason})`;
  if (spf.result === 'temperror') return defer(`${none}, and the SPF check hit a temporary DNS failure (${spf.reason})`);
  if (spf.result === 'fail') {
    const why = `${none}; SPF fail for ${spf.domain}: ${spf.reason}`;
    switch (policy.spfFailWithoutDmarc) {
      case 'reject':
        return { disposition: 'reject', code: 550, enhanced: '5.7.23', reason: `${why}; local policy rejects SPF failures` };
      case 'junk':
        return { disposition: 'junk', reason: `${why}; local policy files SPF failures as Junk` };
      default:
        return { disposition: 'inbox', reason: `${why}; local policy delivers SPF failures` };
    }
  }
  return { disposition: 'inbox', reason: `${none}; SPF ${spf.result}` };
}

function defer(reason: string): Decision {
  return { disposition: 'defer', code: 451, enhanced: '4.7.0', reason };
}

// The reply text a client sees for a refused or deferred message.
export function replyText(decision: Decision): string {
  if (decision.disposition === 'defer') return `${decision.enhanced} Temporary failure: ${decision.reason}`;
  return `${decision.enhanced} Message rejected: ${decision.reason}`;
}
