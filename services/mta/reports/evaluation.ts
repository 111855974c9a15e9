// One DMARC evaluation, as an aggregate report counts it (RFC 9990): the
// receiver writes one for every message whose From domain has a DMARC policy,
// when it decides the message's fate (accepted, Junk or refused; a deferred
// message is evaluated again when it comes back).
import type { Decision } from '../inbound/decide.ts';
import type { Verdict } from '../inbound/verify.ts';
export interface Evaluation {
  at: string; // ISO time of the decision
  sourceIp: string; // the SMTP client's lab address
  headerFrom: string; // the From domain
  envelopeFrom: string; // the MAIL FROM domain ('' for the null sender)
  envelopeTo: string; // the first recipient's domain
  policyDomain: string; // where the DMARC record was found (the From domain or its organizational domain)
  published: Published; // the record as found
  disposition: 'none' | 'quarantine' | 'reject'; // the policy applied (RFC 9990: what the receiver did as to the policy)
  dkim: 'pass' | 'fail'; // aligned DKIM
  spf: 'pass' | 'fail'; // aligned SPF
  reasons: { type: 'local_policy' | 'mailing_list' | 'other' | 'policy_test_mode' | 'trusted_forwarder'; comment?: string }[]; // why the disposition differs from the policy, if it does
  authDkim: { domain: string; selector: string; result: string }[]; // every signature checked
  authSpf: { domain: string; scope: 'mfrom' | 'helo'; result: string };
}

export interface Published {
  domain: string;
  p: string;
  sp?: string;
  np?: string;
  adkim: 'r' | 's';
  aspf: 'r' | 's';
  testing: 'n' | 'y'; // t=
  fo?: string;
  rua: string[]; // mailto: URIs as written
  ruf: string[];
}

// The evaluation of a decided message, or undefined when its From domain has
// no DMARC record asking for aggregate reports (nothing to report to).
export function evaluationOf(at: string, sourceIp: string, envelope: { mailFrom: string; rcptTo: string[] }, checks: Omit<Verdict, 'headers' | 'dns' | 'arcSealInput'>, decision: Decision): Evaluation | undefined {
  const { dmarc } = checks;
  if (!dmarc.record || !dmarc.fromDomain) return undefined;
  const published = parsePublished(dmarc.record, dmarc.orgDomain ?? dmarc.fromDomain);
  if (published.rua.length === 0) return undefined;
  const disposition = decision.disposition === 'reject' ? 'reject' : decision.disposition === 'junk' ? 'quarantine' : 'none';
  const reasons: Evaluation['reasons'] = [];
  if (decision.arcOverride) reasons.push({ type: 'trusted_forwarder', comment: decision.arcOverride });
  else if (dmarc.testMode) reasons.push({ type: 'policy_test_mode', comment: 't=y: the policy is only being tested' });
  else if (dmarc.result === 'fail' && disposition !== dmarc.policy) reasons.push({ type: 'local_policy', comment: decision.reason });
  const domainOf = (address: string) => address.slice(address.lastIndexOf('@') + 1).toLowerCase();
  return {
    at,
    sourceIp,
    headerFrom: dmarc.fromDomain,
    envelopeFrom: envelope.mailFrom ? domainOf(envelope.mailFrom) : '',
    envelopeTo: domainOf(envelope.rcptTo[0] ?? ''),
    policyDomain: published.domain,
    published,
    disposition,
    dkim: dmarc.alignedBy?.includes('dkim') ? 'pass' : 'fail',
    spf: dmarc.alignedBy?.includes('spf') ? 'pass' : 'fail',
    reasons,
    authDkim: checks.dkim.filter((d) => d.domain).map((d) => ({ domain: d.domain, selector: d.selector, result: d.result })),
    authSpf: { domain: checks.spf.domain ?? (envelope.mailFrom ? domainOf(envelope.mailFrom) : ''), scope: envelope.mailFrom ? 'mfrom' : 'helo', result: checks.spf.result },
  };
}

// The DMARC record's tags, as a report repeats them (policy_published).
export function parsePublished(record: string, domain: string): Published {
  const tags = new Map<string, string>();
  for (const part of record.split(';')) {
    const at = part.indexOf('=');
    if (at > 0) tags.set(part.slice(0, at).trim().toLowerCase(), part.slice(at + 1).trim());
  }
  const uris = (tag: string) => (tags.get(tag) ?? '').split(',').map((u) => u.trim()).filter(Boolean);
  const alignment = (tag: string) => (tags.get(tag)?.toLowerCase() === 's' ? 's' : 'r');
  return {
    domain: domain.toLowerCase(),
    p: tags.get('p')?.toLowerCase() ?? 'none',
    ...(tags.has('sp') && { sp: tags.get('sp')!.toLowerCase() }),
    ...(tags.has('np') && { np: tags.get('np')!.toLowerCase() }),
    adkim: alignment('adkim'),
    aspf: alignment('aspf'),
    testing: tags.get('t')?.toLowerCase() === 'y' ? 'y' : 'n',
    ...(tags.has('fo') && { fo: tags.get('fo') }),
    rua: uris('rua'),
    ruf: uris('ruf'),
  };
}
