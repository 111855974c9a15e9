// SPF, DKIM, DMARC and ARC of one message, checked by mailauth against the lab
// DNS. Returns what each check concluded and why, in a form a person can read
// in the session record, plus the header fields mailauth wrote.
// Before mailauth: its verifiers must see the key cache.
import './mailauth-keys.ts';
import { authenticate } from 'mailauth';
import type { LabResolver, Question } from '../lib/resolver.ts';

export interface CheckResult {
  result: string; // pass, fail, softfail, neutral, none, temperror, permerror, policy
  reason: string;
}

export interface Verdict {
  spf: CheckResult & { domain?: string; record?: string };
  dkim: (CheckResult & { domain: string; selector: string; algorithm: string; aligned: boolean })[];
  dmarc: CheckResult & {
    fromDomain?: string;
    policy?: string; // effective: after sp=, np= and t=y
    published?: string; // the p= as written
    testMode?: boolean;
    record?: string;
    alignedBy?: string[]; // "spf", "dkim": which aligned identifier passed
  };
  arc: CheckResult & { instances: number; sealer?: string; sealerSaw?: { dmarc?: string; spf?: string; dkim?: string } };
  headers: string; // Received-SPF and Authentication-Results, ready to prepend
  dns: Question[]; // every DNS question the checks asked, in order
  arcSealInput: { authResults: unknown; cv: string }; // what an ARC seal of this hop must say
}

export interface Envelope {
  clientAddress: string; // lab address of the SMTP client
  helo: string;
  mailFrom: string; // '' for the null sender
}

type AnyResult = Record<string, any>;

export async function verify(message: Buffer, envelope: Envelope, resolver: LabResolver, hostname: string): Promise<Verdict> {
  const dns: Question[] = [];
  const result: AnyResult = await authenticate(message, {
    ip: envelope.clientAddress,
    helo: envelope.helo,
    sender: envelope.mailFrom,
    mta: hostname,
    resolver: resolver.recording(dns) as never,
    disableBimi: true,
  });
  const { spf, dkim, dmarc, arc } = result;
  const fromDomain = dmarc ? dmarc.status?.header?.from : undefined;
  return {
    spf: {
      result: spf?.status?.result ?? 'none',
      reason: spf?.status?.comment ?? 'no SPF check',
      domain: spf?.domain,
      record: spf?.rr,
    },
    dkim: (dkim?.results ?? []).map((r: AnyResult) => ({
      result: r.status?.result ?? 'none',
      reason: r.status?.comment ?? (r.status?.result === 'pass' ? 'signature verified with the published key' : r.info ?? ''),
      domain: r.signingDomain,
      selector: r.selector,
      algorithm: r.algo,
      aligned: Boolean(r.status?.aligned),
    })),
    dmarc: dmarc
      ? {
          result: dmarc.status?.result ?? 'none',
          reason: dmarcReason(dmarc),
          fromDomain,
          policy: dmarc.policy,
          published: dmarc.p,
          testMode: dmarc.testMode,
          record: dmarc.rr,
          alignedBy: [dmarc.alignment?.spf?.result && 'spf', dmarc.alignment?.dkim?.result && 'dkim'].filter(Boolean),
        }
      : { result: 'none', reason: `not evaluated: ${result.dmarcSkipReason ?? 'no From domain'}` },
    arc: {
      result: arc?.status?.result ?? 'none',
      reason: arc?.status?.comment ?? (arc?.status?.result === 'none' ? 'no ARC headers' : ''),
      instances: arc?.i || 0,
      sealer: arc?.signature?.signingDomain,
      sealerSaw: arc?.authenticationResults && {
        dmarc: arc.authenticationResults.dmarc?.result,
        spf: arc.authenticationResults.spf?.result,
        dkim: arc.authenticationResults.dkim?.map((d: AnyResult) => d.result).join(','),
      },
    },
    headers: result.headers,
    dns,
    arcSealInput: { authResults: arc?.authResults, cv: arc?.status?.result ?? 'none' },
  };
}

function dmarcReason(dmarc: AnyResult): string {
  const result = dmarc.status?.result;
  if (result === 'none') return dmarc.error ?? 'the From domain publishes no DMARC record';
  if (result === 'temperror') return `DNS failure: ${dmarc.error ?? 'lookup failed'}`;
  const aligned = [dmarc.alignment?.spf?.result && `SPF (${dmarc.alignment.spf.result})`, dmarc.alignment?.dkim?.result && `DKIM (${dmarc.alignment.dkim.result})`]
    .filter(Boolean)
    .join(' and ');
  if (result === 'pass') return `aligned and passing: ${aligned}`;
  return 'neither SPF nor DKIM passed for a domain aligned with the From domain';
}
