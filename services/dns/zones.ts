// The data the server answers from: every zone file of a directory, the
// zones kept elsewhere (the students', student-zones.ts), plus the temporary
// overrides that scenarios set through the control endpoint. Any change (a
// file edit, a student's edit, an override) builds a fresh index and bumps
// the generation, which tells the response cache to forget what it encoded.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseZoneFile, type Fault, type RecordType, type Zone, type ZoneRecord } from './zone-file.ts';

// Either an RRset that replaces the files' (empty: hidden), or a fault that
// takes precedence over the files' faults on that name ('none' lifts them).
export type Override =
  | { name: string; type: RecordType; records: ZoneRecord[] }
  | { name: string; fault: Fault };

// Overrides are for scenarios, which set a few at a time; the bound keeps a
// runaway client from growing the index (and each rebuild) without end.
export const MAX_OVERRIDES = 1000;

export class OverrideLimitError extends Error {}

function overrideKey(override: Override): string {
  return 'fault' in override ? `${override.name} fault` : `${override.name} ${override.type}`;
}

// One zone, indexed by owner name.
export interface IndexedZone {
  origin: string;
  file: string;
  soa: ZoneRecord & { type: 'SOA' };
  nodes: Map<string, Map<RecordType, ZoneRecord[]>>;
  // Names that own records or lie between the apex and such a name (empty
  // non-terminals): a query for them is NODATA, never NXDOMAIN (RFC 8020).
  existing: Set<string>;
  faults: Map<string, Fault[]>;
}

export function loadZoneDir(dir: string): Zone[] {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.zone'))
    .sort();
  const zones = files.map((f) => parseZoneFile(readFileSync(join(dir, f), 'utf8'), join(dir, f)));
  const byOrigin = new Map<string, string>();
  for (const zone of zones) {
    const other = byOrigin.get(zone.origin);
    if (other) throw new Error(`${zone.file}: zone ${zone.origin || '.'} is already loaded from ${other}`);
    byOrigin.set(zone.origin, zone.file);
  }
  return zones;
}

// A record's data, to compare records whatever their owner and TTL.
export function rdataKey({ name: _name, ttl: _ttl, ...rdata }: ZoneRecord): string {
  return JSON.stringify(rdata, (_key, value) => (value?.type === 'Buffer' ? Buffer.from(value.data).toString('hex') : value));
}

// The zone with the longest origin that contains the name.
function deepestZone(index: Map<string, IndexedZone>, name: string): IndexedZone | undefined {
  for (let candidate = name; ; ) {
    const zone = index.get(candidate);
    if (zone || candidate === '') return zone;
    const dot = candidate.indexOf('.');
    candidate = dot === -1 ? '' : candidate.slice(dot + 1);
  }
}

export class ZoneSet {
  generation = 0;
  private files: Zone[] = [];
  private kept = new Map<string, Zone>(); // by origin: zones that are not files of the directory
  private overrides = new Map<string, Override>();
  private index = new Map<string, IndexedZone>();

  replaceFiles(zones: Zone[]): void {
    const clash = zones.find((z) => this.kept.has(z.origin));
    if (clash) throw new Error(`${clash.file}: zone ${clash.origin} is a student's zone (${this.kept.get(clash.origin)!.file})`);
    this.files = zones;
    this.rebuild();
  }

  // Zones that are not files of the directory (the students'), added or
  // replaced; served from the next query on.
  setZones(zones: Zone[]): void {
    for (const zone of zones) {
      const clash = this.files.find((z) => z.origin === zone.origin);
      if (clash) throw new Error(`zone ${zone.origin} is already loaded from ${clash.file}`);
    }
    for (const zone of zones) this.kept.set(zone.origin, zone);
    this.rebuild();
  }

  get zones(): Zone[] {
    return this.kept.size ? [...this.files, ...this.kept.values()] : this.files;
  }

  listOverrides(): Override[] {
    return [...this.overrides.values()];
  }

  setOverride(override: Override): void {
    if (!this.findZone(override.name)) {
      throw new Error(`no zone holds ${override.name}`);
    }
    const key = overrideKey(override);
    if (!this.overrides.has(key) && this.overrides.size >= MAX_OVERRIDES) {
      throw new OverrideLimitError(`at most ${MAX_OVERRIDES} overrides at once: clear some first (DELETE /overrides)`);
    }
    this.overrides.set(key, override);
    this.rebuild();
  }

  // Clears one override, those of a name, or all; returns how many went.
  // The type "fault" names a name's fault override.
  clearOverrides(name?: string, type?: RecordType | 'FAULT'): number {
    let count = 0;
    for (const [key, o] of this.overrides) {
      const kind = 'fault' in o ? 'FAULT' : o.type;
      if ((name === undefined || o.name === name) && (type === undefined || kind === type)) {
        this.overrides.delete(key);
        count++;
      }
    }
    if (count) this.rebuild();
    return count;
  }

  findZone(name: string): IndexedZone | undefined {
    return deepestZone(this.index, name);
  }

  // Any zone's RRset (used for additional-section addresses).
  rrset(name: string, type: RecordType): ZoneRecord[] {
    return this.findZone(name)?.nodes.get(name)?.get(type) ?? [];
  }

  private rebuild(): void {
    const index = new Map<string, IndexedZone>();
    const zones = this.zones;
    for (const zone of zones) {
      index.set(zone.origin, {
        origin: zone.origin,
        file: zone.file,
        soa: zone.soa,
        nodes: new Map(),
        existing: new Set(),
        faults: new Map(),
      });
    }
    const zoneOf = (name: string) => deepestZone(index, name);
    const add = (zone: IndexedZone, record: ZoneRecord) => {
      const node = zone.nodes.get(record.name) ?? new Map<RecordType, ZoneRecord[]>();
      zone.nodes.set(record.name, node);
      const rrset = node.get(record.type) ?? [];
      // An RRset holds no duplicates (RFC 2181 section 5): the root zone's glue
      // for ns.lab.test and lab.test's own record are one record.
      const data = rdataKey(record);
      if (!rrset.some((r) => rdataKey(r) === data)) node.set(record.type, [...rrset, record]);
    };
    // A record belongs to the deepest zone that holds its name, so a zone file
    // for a parent never shadows a child zone's file.
    for (const zone of zones) {
      for (const record of zone.records) {
        const owner = zoneOf(record.name);
        if (owner) add(owner, record);
      }
      for (const fault of zone.faults) {
        const owner = zoneOf(fault.name);
        if (owner) owner.faults.set(fault.name, [...(owner.faults.get(fault.name) ?? []), fault]);
      }
    }
    for (const override of this.overrides.values()) {
      const zone = zoneOf(override.name);
      if (!zone) continue;
      if ('fault' in override) {
        zone.faults.set(override.name, [override.fault, ...(zone.faults.get(override.name) ?? [])]);
        continue;
      }
      const node = zone.nodes.get(override.name) ?? new Map<RecordType, ZoneRecord[]>();
      zone.nodes.set(override.name, node);
      if (override.records.length) node.set(override.type, override.records);
      else node.delete(override.type);
      if (override.type === 'SOA' && override.records.length && override.name === zone.origin) {
        zone.soa = override.records[0] as ZoneRecord & { type: 'SOA' };
      }
    }
    for (const zone of index.values()) {
      for (const [name, node] of zone.nodes) {
        if (node.size === 0) continue;
        // The name and each ancestor up to the apex exist.
        for (let n = name; n !== zone.origin && n !== ''; n = n.slice(n.indexOf('.') + 1 || n.length)) {
          zone.existing.add(n);
        }
        zone.existing.add(zone.origin);
      }
    }
    this.index = index;
    this.generation++;
  }
}
