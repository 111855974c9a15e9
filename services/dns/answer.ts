// What an authoritative server says to one question (RFC 1034 section 4.3.2,
// without delegations: this server holds every zone of the lab, the root too).
import type { ZoneSet } from './zones.ts';
import { normalizeName, type Fault, type RecordType, type ZoneRecord } from './zone-file.ts';

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

export interface Lookup {
  rcode: number;
  answers: ZoneRecord[];
  authorities: ZoneRecord[];
  additionals: ZoneRecord[];
  fault?: Fault; // a ;@fault (or override) that applies: the server misbehaves on purpose
}

const MAX_CNAME_CHAIN = 8;

export function lookup(zones: ZoneSet, qname: string, qtype: string): Lookup {
  const result: Lookup = { rcode: RCODE.NOERROR, answers: [], authorities: [], additionals: [] };
  let name = qname;
  for (let hop = 0; ; hop++) {
    const zone = zones.findZone(name);
    if (!zone) {
      // No zone at all (not even the root): this server has no authority here.
      if (hop === 0) result.rcode = RCODE.REFUSED;
      return result;
    }
    const node = zone.nodes.get(name);
    const fault = zone.faults.get(name)?.find((f) => f.types === 'all' || f.types.includes(qtype as RecordType));
    if (fault && fault.kind !== 'none' && (fault.kind !== 'delay' || !result.fault)) {
      result.fault = fault;
      if (fault.kind !== 'delay') return result;
    }
    const negative = (rcode: number) => {
      result.rcode = rcode;
      // RFC 2308 section 3: the SOA's TTL in a negative answer is the lesser of its TTL and MINIMUM.
      result.authorities.push({ ...zone.soa, ttl: Math.min(zone.soa.ttl, zone.soa.minimum) });
      return result;
    };
    if (!node || node.size === 0) {
      return negative(zone.existing.has(name) ? RCODE.NOERROR : RCODE.NXDOMAIN);
    }
    if (qtype === 'ANY') {
      // RFC 8482: answer ANY with one RRset rather than everything the name has.
      result.answers.push(...node.values().next().value!);
      return withAdditionals(zones, result);
    }
    const rrset = node.get(qtype as RecordType);
    if (rrset) {
      result.answers.push(...rrset);
      return withAdditionals(zones, result);
    }
    const cname = node.get('CNAME');
    if (!cname) return negative(RCODE.NOERROR);
    result.answers.push(cname[0]);
    const target = normalizeName((cname[0] as ZoneRecord & { type: 'CNAME' }).domain);
    // A loop or an over-long chain: give what we have, as real servers do.
    if (hop + 1 >= MAX_CNAME_CHAIN || result.answers.some((r) => r.name === target)) return result;
    name = target;
  }
}

// The addresses of MX exchanges and NS targets that the lab itself holds, so
// that a client need not ask again (RFC 1035 sections 3.3.9 and 3.3.11).
function withAdditionals(zones: ZoneSet, result: Lookup): Lookup {
  for (const record of result.answers) {
    const target = record.type === 'MX' ? record.exchange : record.type === 'NS' ? record.ns : undefined;
    if (target === undefined) continue;
    for (const type of ['A', 'AAAA'] as const) {
      for (const address of zones.rrset(normalizeName(target), type)) {
        if (!result.additionals.includes(address)) result.additionals.push(address);
      }
    }
  }
  return result;
}
