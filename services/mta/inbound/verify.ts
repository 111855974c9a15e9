// SPF, DKIM, DMARC and ARC of one message, checked by mailauth against the lab
// DNS, and the author check before DMARC (author.ts). Returns what each check
// concluded and why, in a form a person can read in the session record, plus
// the header fields mailauth wrote.
// Before mailauth: its verifiers must see the key cache and the one-pass
// relaxed canonicalization.
import './mailauth-keys.ts';
import './mailauth-relaxed.ts';
import './mailauth-parser.ts';
import { createPublicKey } from 'node:crypto';
import { authenticate } from 'mailauth';
import type { LabResolver, Question } from '../../lib/resolver.ts';
import { checkAuthor, skippedWhy, type Author } from './author.ts';
import { parseHeaders } from '../smtp/headers.ts';

export interface CheckResult {
  result: string; // pass, fail, softfail, neutral, none, temperror, permerror, policy
  reason: string;
}

export interface Verdict {
  author?: Author; // always checked; records older than the check lack it
  spf: CheckResult & { domain?: string; record?: string };
  dkim: (CheckResult & { domain: string; selector: string; algorithm: string; aligned: boolean })[];
  dmarc: CheckResult & {
    fromDomain?: string;
    orgDomain?: string; // the From domain's organizational domain, when a record was found
    policy?: string; // effective: after sp=, np= and t=y
    published?: string; // the p= as written
    testMode?: boolean;
    record?: string;
    alignment?: { spf: 'strict' | 'relaxed'; dkim: 'strict' | 'relaxed' }; // the record's aspf= and adkim=
    alignedBy?: string[]; // "spf", "dkim": which aligned identifier passed
  };
  arc: CheckResult & {
    instances: number;
    sealer?: string;
    sealerSaw?: { dmarc?: string; spf?: string; dkim?: string };
    // For a valid chain: whether the latest sealer is the client that handed
    // this message over. A seal is a forwarder's word about what it received;
    // copied onto a message someone else sends, it proves nothing.
    delivery?: { bySealer: boolean; reason: string };
  };
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
type Resolve = (name: string, type: string) => Promise<unknown>;

export async function verify(message: Buffer, envelope: Envelope, resolver: LabResolver, hostname: string): Promise<Verdict> {
  const dns: Question[] = [];
  const resolve = resolver.recording(dns) as Resolve;
  const result: AnyResult = await authenticate(message, {
    ip: envelope.clientAddress,
    helo: envelope.helo,
    sender: envelope.mailFrom,
    mta: hostname,
    resolver: resolve as never,
    disableBimi: true,
    // RFC 8301 section 3.1: rsa-sha1 signatures are not valid (dkim=policy).
    // Keys under 1024 bits already are (section 3.2, mailauth's minBitLength).
    rejectRsaSha1: true,
  });
  const { spf, dkim, dmarc, arc } = result;
  const fromDomain = dmarc ? dmarc.status?.header?.from : undefined;
  const fromValues = parseHeaders(message).filter((f) => f.name.trim().toLowerCase() === 'from').map((f) => f.value);
  const spfResult = {
    result: spf?.status?.result ?? 'none',
    reason: spf?.status?.comment ?? 'no SPF check',
    domain: spf?.domain,
    record: spf?.rr,
  };
  const arcResult: Verdict['arc'] = {
    result: arc?.status?.result ?? 'none',
    reason: arc?.status?.comment ?? (arc?.status?.result === 'none' ? 'no ARC headers' : ''),
    instances: arc?.i || 0,
    sealer: arc?.signature?.signingDomain,
    sealerSaw: arc?.authenticationResults && {
      dmarc: arc.authenticationResults.dmarc?.result,
      spf: arc.authenticationResults.spf?.result,
      dkim: arc.authenticationResults.dkim?.map((d: AnyResult) => d.result).join(','),
    },
  };
  if (arcResult.result === 'pass' && arcResult.sealer) {
    arcResult.delivery = await sealerDelivered(arcResult.sealer.toLowerCase(), envelope.clientAddress, spfResult, resolve);
  }
  return {
    author: checkAuthor(fromValues, dkim?.headerFrom ?? [], fromDomain),
    spf: spfResult,
    dkim: (dkim?.results ?? []).map((r: AnyResult) => ({
      result: r.status?.result ?? 'none',
      reason: dkimReason(r),
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
          orgDomain: dmarc.domain,
          policy: dmarc.policy,
          published: dmarc.p,
          testMode: dmarc.testMode,
          record: dmarc.rr,
          alignment: dmarc.alignment && { spf: dmarc.alignment.spf?.strict ? 'strict' : 'relaxed', dkim: dmarc.alignment.dkim?.strict ? 'strict' : 'relaxed' },
          alignedBy: [dmarc.alignment?.spf?.result && 'spf', dmarc.alignment?.dkim?.result && 'dkim'].filter(Boolean),
        }
      : { result: 'none', reason: `not evaluated: ${skippedWhy(result.dmarcSkipReason)}` },
    arc: arcResult,
    headers: result.headers,
    dns,
    arcSealInput: { authResults: arc?.authResults, cv: arc?.status?.result ?? 'none' },
  };
}

// Is the latest ARC sealer the client that delivered the message? Either SPF
// passed for an envelope domain inside the sealer's domain, or the client's
// reverse name is inside it and resolves back to the client's address
// (forward-confirmed reverse DNS).
async function sealerDelivered(sealer: string, client: string, spf: Verdict['spf'], resolve: Resolve): Promise<{ bySealer: boolean; reason: string }> {
  const inside = (name: string) => name === sealer || name.endsWith(`.${sealer}`);
  const spfDomain = spf.domain?.toLowerCase();
  if (spf.result === 'pass' && spfDomain && inside(spfDomain)) {
    return { bySealer: true, reason: `SPF passed for ${spfDomain}, inside the sealer's domain ${sealer}: the client ${client} speaks for it` };
  }
  const names = ((await resolve(`${client.split('.').reverse().join('.')}.in-addr.arpa`, 'PTR').catch(() => [])) as string[]).map((n) => n.toLowerCase().replace(/\.$/, ''));
  for (const name of names.filter(inside)) {
    const addresses = (await resolve(name, 'A').catch(() => [])) as string[];
    if (addresses.includes(client)) return { bySealer: true, reason: `the client ${client} is ${name} (forward-confirmed reverse DNS), inside the sealer's domain ${sealer}` };
  }
  const who = names.length ? `its reverse name is ${names.join(', ')}` : 'it has no reverse name';
  const spfSays = spfDomain ? `SPF ${spf.result} for ${spfDomain}` : 'no SPF domain';
  return { bySealer: false, reason: `the client ${client} is not ${sealer}'s: ${who}, ${spfSays}; whoever sent this copy, it was not the sealer` };
}

function dkimReason(r: AnyResult): string {
  const result = r.status?.result;
  if (result === 'pass') return 'signature verified with the published key';
  const rule = r.status?.policy?.['dkim-rules'];
  if (rule === 'weak-algorithm') return 'rsa-sha1 signature: RFC 8301 section 3.1 says verifiers must not consider it valid (SHA-1 is broken)';
  if (rule === 'weak-key') return `the key is ${keyBits(r.rr)} bits: RFC 8301 section 3.2 says keys under 1024 bits must not be considered valid`;
  return r.status?.comment ?? r.info ?? '';
}

// The RSA key size of a key record, for the reason above.
function keyBits(record: unknown): string {
  const p = /(?:^|;)\s*p=([A-Za-z0-9+/=\s]+)/.exec(String(record ?? ''))?.[1]?.replace(/\s/g, '');
  try {
    return String(createPublicKey({ key: Buffer.from(p ?? '', 'base64'), format: 'der', type: 'spki' }).asymmetricKeyDetails?.modulusLength);
  } catch {
    return 'fewer than 1024';
  }
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
