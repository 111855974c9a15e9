// What a student may write in their own zone, checked in full before
// anything is written or served: the records are in master-file syntax
// (zone-file.ts), names relative to the student's domain; the SOA and the
// apex NS are the lab's. The rules are those kzonecheck (Knot DNS) applies
// where they apply to such a zone, and limits that keep one zone small:
//
//   - every name inside the student's domain, and in no deeper zone;
//   - no SOA and no NS (the apex's are the lab's; a delegation would need
//     glue and a server the lab does not run);
//   - no CNAME at the apex, a CNAME alone at its name and one at most there
//     (RFC 1034 section 3.6.2; kzonecheck: "another record exists beside
//     CNAME", "multiple CNAME records");
//   - addresses, names and TTLs as zone-file.ts reads them (TTL at most
//     2^31 - 1, RFC 2181 section 8); no wildcards (the lab DNS does not
//     expand them); no ;@fault directives (those are the teacher's);
//   - at most 200 records, 64 KiB of text, 4,000 bytes in one TXT record
//     (longer strings are split at 255 on the wire).
//
// A refusal names the line: "line 3: ..." for a text, "add line 2: ..." for
// a list of record lines.
import { parseRecords, ZoneSyntaxError, type BareType, type LineRecord, type ZoneRecord } from './zone-file.ts';
import { rdataKey } from './zones.ts';
import { ownerName, rdataText, recordLine } from './zone-text.ts';

export const LIMITS = { records: 200, textBytes: 64 * 1024, txtBytes: 4000 };
// The lab zones' TTL: a record written without one is seen a few seconds later at most.
export const DEFAULT_TTL = 5;

export class EditError extends Error {}

// The zone a name falls in (the deepest that holds it), to refuse names in
// a zone below the student's (another student's, say).
export type ZoneOf = (name: string) => string | undefined;

interface Placed {
  record: ZoneRecord;
  where?: string; // "line 3"; none for a record already in the zone
}

const shown = (name: string) => (name === '' ? '"." (the root)' : `"${name}"`);

// A whole text (PUT): the records it holds, checked.
export function readRecords(text: string, domain: string, zoneOf: ZoneOf): ZoneRecord[] {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > LIMITS.textBytes) throw new EditError(`the records are ${bytes} bytes of text; a zone holds at most ${LIMITS.textBytes}`);
  const placed = parse(text, domain, (line) => `line ${line}`).map(({ line, ...record }) => ({ record: record as ZoneRecord, where: `line ${line}` }));
  return checkZone(placed, domain, zoneOf);
}

// A change as record lines (POST .../records): deletions first, then
// additions. A deletion names a record (TTL ignored) or, without data, every
// record of a type at a name ("_dmarc TXT"); one that matches nothing is refused.
export function changeRecords(current: ZoneRecord[], add: string[], remove: string[], domain: string, zoneOf: ZoneOf): ZoneRecord[] {
  let records = [...current];
  remove.forEach((line, i) => {
    const where = `delete line ${i + 1}`;
    const found = parseOne(line, domain, where, true);
    const before = records.length;
    if ('record' in found) {
      const { record } = found;
      const data = rdataKey(record);
      records = records.filter((r) => r.name !== record.name || r.type !== record.type || rdataKey(r) !== data);
      if (records.length === before) throw new EditError(`${where}: the zone has no record ${ownerName(record.name, domain)} ${record.type} ${rdataText(record)}`);
    } else {
      const { name, type } = found.bare;
      records = records.filter((r) => r.name !== name || r.type !== type);
      if (records.length === before) throw new EditError(`${where}: the zone has no ${type} record at ${shown(name)}`);
    }
  });
  const placed: Placed[] = records.map((record) => ({ record }));
  add.forEach((line, i) => {
    const where = `add line ${i + 1}`;
    const found = parseOne(line, domain, where, false);
    if ('record' in found) placed.push({ record: found.record, where });
    else throw new EditError(`${where}: ${found.bare.type} needs its data`);
  });
  return checkZone(placed, domain, zoneOf);
}

// The records of a student's zone file as the DNS wrote it, checked again at
// start (a hand edit may have broken a rule); file:line on a refusal.
export function checkStoredRecords(records: LineRecord[], file: string, domain: string, zoneOf: ZoneOf): ZoneRecord[] {
  return checkZone(
    records.map(({ line, ...record }) => ({ record: record as ZoneRecord, where: `${file}:${line}` })),
    domain,
    zoneOf,
  );
}

function parse(text: string, domain: string, where: (line: number) => string, bareTypes = false): (LineRecord | (BareType & { bare: true }))[] {
  let parsed: ReturnType<typeof parseRecords>;
  try {
    parsed = parseRecords(text, domain, { origin: domain, ttl: DEFAULT_TTL, bareTypes });
  } catch (error) {
    if (error instanceof ZoneSyntaxError) throw new EditError(`${where(error.line)}: ${error.reason}`);
    throw error;
  }
  const fault = parsed.faults[0];
  if (fault) throw new EditError(`${where(fault.line)}: ;@fault directives are for the lab's zone files, not a student's zone`);
  return [...parsed.records, ...parsed.bare.map((b) => ({ ...b, bare: true as const }))];
}

// One record line (or, for a deletion, a name and a type).
function parseOne(line: string, domain: string, where: string, bareTypes: boolean): { record: ZoneRecord } | { bare: BareType } {
  const found = parse(line, domain, () => where, bareTypes);
  if (found.length !== 1) throw new EditError(`${where}: expected one record${bareTypes ? ' (or a name and a type)' : ''}, found ${found.length}`);
  const item = found[0];
  if ('bare' in item) return { bare: item };
  const { line: _line, ...record } = item;
  return { record: record as ZoneRecord };
}

function checkZone(placed: Placed[], domain: string, zoneOf: ZoneOf): ZoneRecord[] {
  const kept: Placed[] = [];
  const seen = new Set<string>();
  for (const item of placed) {
    // The same record twice is one record (RFC 2181 section 5).
    const key = `${item.record.name} ${item.record.type} ${rdataKey(item.record)}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (item.where) checkRecord(item.record, item.where, domain, zoneOf);
    kept.push(item);
  }
  if (kept.length > LIMITS.records) {
    const where = kept[LIMITS.records].where;
    throw new EditError(`${where ? `${where}: ` : ''}${kept.length} records; a student's zone holds at most ${LIMITS.records}`);
  }
  checkCnames(kept, domain);
  const records = kept.map((p) => p.record);
  const text = records.map((r) => recordLine(r, domain)).join('\n').length;
  if (text > LIMITS.textBytes) throw new EditError(`the records would be ${text} bytes of text; a zone holds at most ${LIMITS.textBytes}`);
  return records;
}

function checkRecord(record: ZoneRecord, where: string, domain: string, zoneOf: ZoneOf): void {
  const fail = (message: string): never => {
    throw new EditError(`${where}: ${message}`);
  };
  const { name, type } = record;
  if (name !== domain && !name.endsWith(`.${domain}`)) fail(`${shown(name)} is outside your zone ${domain}`);
  const zone = zoneOf(name);
  if (zone !== undefined && zone !== domain) fail(`${shown(name)} is in the zone ${zone}, not in yours (${domain})`);
  if (name.split('.').includes('*')) fail(`${shown(name)}: wildcards are not served by the lab DNS; name each host`);
  if (type === 'SOA') fail(`the SOA is the lab's: its serial rises by itself with every change`);
  if (type === 'NS') fail(`NS records are the lab's: the apex NS is ns.lab.test., and the lab delegates no name below a student's zone`);
  if (type === 'TXT') {
    const bytes = record.data.reduce((sum, s) => sum + s.length, 0);
    if (bytes > LIMITS.txtBytes) fail(`a TXT record of ${bytes} bytes; at most ${LIMITS.txtBytes}`);
  }
}

function checkCnames(placed: Placed[], domain: string): void {
  const byName = new Map<string, Placed[]>();
  for (const p of placed) byName.set(p.record.name, [...(byName.get(p.record.name) ?? []), p]);
  for (const [name, here] of byName) {
    const cnames = here.filter((p) => p.record.type === 'CNAME');
    if (cnames.length === 0) continue;
    // Blame a record of this change: the zone before it was valid.
    const blame = (p: Placed[]) => p.findLast((x) => x.where)?.where ?? 'this change';
    if (name === domain) throw new EditError(`${blame(cnames)}: a CNAME cannot be at the apex ${domain}, which holds the lab's SOA and NS (RFC 1034 section 3.6.2)`);
    if (cnames.length > 1) throw new EditError(`${blame(cnames)}: ${shown(name)} has a CNAME already; a name has one CNAME at most`);
    if (here.length > 1) {
      const others = here.filter((p) => p.record.type !== 'CNAME').map((p) => p.record.type);
      throw new EditError(`${blame(here)}: ${shown(name)} has a CNAME and other data (${others.join(', ')}); a CNAME stands alone at its name (RFC 1034 section 3.6.2)`);
    }
  }
}
