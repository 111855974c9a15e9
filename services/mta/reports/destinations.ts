// Where a report may go (RFC 9990, verifying external destinations): a rua=
// mailto: address in the policy domain's own organization as it is; one in
// another only when that domain agrees, with a TXT record starting
// "v=DMARC1" at <policy domain>._report._dmarc.<destination domain>.
// Otherwise anyone could make receivers flood a stranger with reports.
import { DnsError, type LabResolver } from '../../lib/resolver.ts';

export interface Destinations {
  to: string[];
  refused: { uri: string; reason: string }[];
}

// The lab's domains are under .test, a one-label public suffix: the
// organizational domain is the last two labels.
const organization = (domain: string) => domain.toLowerCase().split('.').slice(-2).join('.');

export async function destinations(policyDomain: string, rua: string[], resolver: LabResolver): Promise<Destinations> {
  const result: Destinations = { to: [], refused: [] };
  for (const uri of rua) {
    // mailto:addr, possibly with a size limit (!10m), which the lab's reports never reach.
    const address = /^mailto:([^!,\s]+@[^!,\s]+)(![0-9]+[kmgt]?)?$/i.exec(uri)?.[1]?.toLowerCase();
    if (!address) {
      result.refused.push({ uri, reason: 'not a mailto: address (the lab sends reports by mail only)' });
      continue;
    }
    const domain = address.slice(address.lastIndexOf('@') + 1);
    if (organization(domain) === organization(policyDomain)) {
      result.to.push(address);
      continue;
    }
    const name = `${policyDomain}._report._dmarc.${domain}`;
    let records: string[];
    try {
      records = ((await resolver.resolve(name, 'TXT')) as string[][]).map((r) => r.join(''));
    } catch (error) {
      if (!(error instanceof DnsError) || !['ENOTFOUND', 'ENODATA'].includes(error.code)) {
        result.refused.push({ uri, reason: `${name} could not be looked up (${(error as DnsError).code ?? (error as Error).message}): not sent this time` });
        continue;
      }
      records = [];
    }
    if (records.some((r) => /^v=DMARC1\s*(;|$)/i.test(r))) result.to.push(address);
    else result.refused.push({ uri, reason: `${domain} has not agreed to receive reports for ${policyDomain}: no "v=DMARC1" record at ${name}` });
  }
  return result;
}
