// The students' zones (classroom mode, DESIGN.md "Classroom"): every student
// of the class has the zone of their domain in the lab DNS, served beside the
// zone files. It starts with the lab's SOA and NS only; the rest is the
// student's to write, and zone-edit.ts checks each change in full first.
//
// A change is on disk before it is served: DNS_DATA_DIR/zones/<domain>.zone
// holds the whole zone as served, replaced whole (temporary file, fsync,
// rename, fsync of the directory), and <domain>.history.jsonl one line per
// change (appended and fsynced; rewritten with the newest 50 when it reaches
// 100 lines). A restart serves the same zones with the same history. The
// serial rises by one with every change; changes to one zone take turns.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { createTwoFilesPatch, FILE_HEADERS_ONLY } from 'diff';
import { replaceFile } from '../lib/durable.ts';
import type { Logger } from '../lib/log.ts';
import { ClassError, type Classroom, type Student } from '../lib/classroom.ts';
import { parseRecords, type Zone, type ZoneRecord } from './zone-file.ts';
import { recordLine } from './zone-text.ts';
import { changeRecords, checkStoredRecords, readRecords } from './zone-edit.ts';
import type { ZoneSet } from './zones.ts';

export const HISTORY_SHOWN = 50;
const HISTORY_KEPT = 2 * HISTORY_SHOWN; // lines in the file before it is rewritten
const DIFF_KEPT = 8 * 1024; // of one change's diff in the history; the answer to the change has it whole
// As in every lab zone (dns-zone/*.zone): the lab's one name server, 5-second TTLs.
const NAME_SERVER = 'ns.lab.test';
const SOA = { primary: NAME_SERVER, admin: 'hostmaster.lab.test', refresh: 3600, retry: 600, expiration: 604800, minimum: 5 };
const TTL = 5;

export interface Change {
  serial: number;
  at: string; // ISO time
  by: string; // the login that made it: a student's name or "teacher"
  diff: string; // unified diff of the records text
}

export interface ZoneView {
  domain: string;
  student: string;
  serial: number;
  records: string; // the student's records, zone-file text
  zone: string; // the whole zone as served
  history: Change[]; // newest first
}

interface StudentZone {
  student: Student;
  file: string;
  serial: number;
  records: ZoneRecord[];
  history: Change[]; // oldest first, the newest HISTORY_SHOWN
  historyLines: number; // lines in the history file
}

// A change made against a serial the zone has moved past (another tab).
export class SerialConflict extends Error {}

export class StudentZones {
  readonly classroom: Classroom;
  private dir: string;
  private zoneSet: ZoneSet;
  private log: Logger;
  private byDomain = new Map<string, StudentZone>();
  private turns = new Map<string, Promise<unknown>>();

  private constructor(classroom: Classroom, dir: string, zoneSet: ZoneSet, log: Logger) {
    this.classroom = classroom;
    this.dir = dir;
    this.zoneSet = zoneSet;
    this.log = log;
  }

  // Loads every student's zone (making the missing ones) and serves them in
  // zoneSet, whose zone files are loaded already. A student's domain that is
  // also a lab zone, lies inside one or holds one, or a stored zone that
  // breaks a rule, stops the start: with "{student}.receiver.test" the
  // student named mx would own mx.receiver.test, the receiver's MX host.
  static async open(classroom: Classroom, dataDir: string, zoneSet: ZoneSet, log: Logger): Promise<StudentZones> {
    for (const student of classroom.students) {
      const clash = (why: string, file: string) => new ClassError(`${classroom.classFile.file}: ${student.domain}, the domain of student ${student.name}, ${why} (${file}): choose another domain pattern`);
      const lab = zoneSet.zones.find((z) => z.origin === student.domain);
      if (lab) throw clash('is also a lab zone', lab.file);
      const holder = zoneSet.findZone(student.domain);
      if (holder && holder.origin !== '') throw clash(`lies inside the lab zone ${holder.origin}`, holder.file);
      const held = zoneSet.zones.find((z) => z.origin.endsWith(`.${student.domain}`));
      if (held) throw clash(`holds the lab zone ${held.origin}`, held.file);
    }
    const zones = new StudentZones(classroom, join(dataDir, 'zones'), zoneSet, log);
    mkdirSync(zones.dir, { recursive: true });
    for (const student of classroom.students) {
      const zone = zones.read(student);
      zones.byDomain.set(student.domain, zone);
      if (!existsSync(zone.file)) await replaceFile(zone.file, zones.zoneText(zone), 0o644);
    }
    zoneSet.setZones([...zones.byDomain.values()].map((z) => zones.served(z)));
    log.info({ class: classroom.name, zones: zones.byDomain.size, dir: zones.dir }, "students' zones loaded");
    return zones;
  }

  has(domain: string): boolean {
    return this.byDomain.has(domain);
  }

  view(domain: string): ZoneView {
    const zone = this.zone(domain);
    return {
      domain,
      student: zone.student.name,
      serial: zone.serial,
      records: this.recordsText(zone.records, domain),
      zone: this.zoneText(zone),
      history: zone.history.toReversed(),
    };
  }

  // Replaces the student's records with those of a text (PUT). With serial,
  // refused when the zone has changed since.
  replace(domain: string, text: string, by: string, serial?: number): Promise<{ serial: number; diff: string }> {
    return this.inTurn(domain, async () => {
      const zone = this.zone(domain);
      if (serial !== undefined && serial !== zone.serial) {
        throw new SerialConflict(`${domain} has changed since serial ${serial}: it is at serial ${zone.serial} now; read it again, then make your change`);
      }
      return this.commit(zone, readRecords(text, domain, this.zoneOf), by);
    });
  }

  // Deletes, then adds, record lines (POST .../records): one change.
  edit(domain: string, add: string[], remove: string[], by: string): Promise<{ serial: number; diff: string }> {
    return this.inTurn(domain, async () => {
      const zone = this.zone(domain);
      return this.commit(zone, changeRecords(zone.records, add, remove, domain, this.zoneOf), by);
    });
  }

  private zone(domain: string): StudentZone {
    const zone = this.byDomain.get(domain);
    if (!zone) throw new Error(`${domain} is no student's zone`);
    return zone;
  }

  // The deepest zone that holds a name, the students' counted before they are served.
  private zoneOf = (name: string): string | undefined => {
    const served = this.zoneSet.findZone(name)?.origin;
    const student = this.classroom.studentOf(name)?.domain;
    return student !== undefined && (served === undefined || student.length > served.length) ? student : served;
  };

  // Changes to one zone take turns: each is checked against the zone as the one before left it.
  private inTurn<T>(domain: string, change: () => Promise<T>): Promise<T> {
    const result = (this.turns.get(domain) ?? Promise.resolve()).then(change);
    const settled = result.catch(() => undefined);
    this.turns.set(domain, settled);
    settled.then(() => {
      if (this.turns.get(domain) === settled) this.turns.delete(domain);
    });
    return result;
  }

  private async commit(zone: StudentZone, records: ZoneRecord[], by: string): Promise<{ serial: number; diff: string }> {
    const domain = zone.student.domain;
    const before = this.recordsText(zone.records, domain);
    const after = this.recordsText(records, domain);
    if (before === after) return { serial: zone.serial, diff: '' };
    const serial = zone.serial + 1;
    const diff = createTwoFilesPatch(`${domain} serial ${zone.serial}`, `${domain} serial ${serial}`, before, after, undefined, undefined, { headerOptions: FILE_HEADERS_ONLY });
    await replaceFile(zone.file, this.zoneText({ ...zone, serial, records }), 0o644);
    zone.serial = serial;
    zone.records = records;
    this.zoneSet.setZones([this.served(zone)]);
    this.log.info({ domain, serial, by }, "student's zone changed");
    const change: Change = { serial, at: new Date().toISOString(), by, diff: diff.length > DIFF_KEPT ? `${diff.slice(0, DIFF_KEPT)}\n... (cut at ${DIFF_KEPT} bytes)\n` : diff };
    zone.history = [...zone.history.slice(1 - HISTORY_SHOWN), change];
    // The change is on disk and served; a history that cannot be written is a loss of the record only.
    await this.saveHistory(zone, change).catch((error: Error) => this.log.error({ domain, serial, error: error.message }, 'history of a zone not written'));
    return { serial, diff };
  }

  private async saveHistory(zone: StudentZone, change: Change): Promise<void> {
    const file = historyFile(this.dir, zone.student.domain);
    if (zone.historyLines + 1 > HISTORY_KEPT) {
      await replaceFile(file, zone.history.map((c) => `${JSON.stringify(c)}\n`).join(''), 0o644);
      zone.historyLines = zone.history.length;
      return;
    }
    const handle = await open(file, 'a', 0o644);
    try {
      await handle.writeFile(`${JSON.stringify(change)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    zone.historyLines++;
  }

  // A student's zone from its file, or a new one (serial 1, no records).
  private read(student: Student): StudentZone {
    const file = join(this.dir, `${student.domain}.zone`);
    const { history, lines } = readHistory(historyFile(this.dir, student.domain), this.log);
    if (!existsSync(file)) return { student, file, serial: 1, records: [], history, historyLines: lines };
    const { records } = parseRecords(readFileSync(file, 'utf8'), file, { origin: student.domain });
    const soa = records.find((r) => r.type === 'SOA' && r.name === student.domain);
    if (!soa || soa.type !== 'SOA') throw new ClassError(`${file}: no SOA record for ${student.domain}`);
    const own = records.filter((r) => r.type !== 'SOA' && !(r.type === 'NS' && r.name === student.domain));
    return { student, file, serial: soa.serial, records: checkStoredRecords(own, file, student.domain, this.zoneOf), history, historyLines: lines };
  }

  private recordsText(records: ZoneRecord[], domain: string): string {
    return records.map((r) => `${recordLine(r, domain)}\n`).join('');
  }

  private lab(zone: StudentZone): ZoneRecord[] {
    const domain = zone.student.domain;
    return [
      { name: domain, ttl: TTL, type: 'SOA', ...SOA, serial: zone.serial },
      { name: domain, ttl: TTL, type: 'NS', ns: NAME_SERVER },
    ];
  }

  private zoneText(zone: StudentZone): string {
    const domain = zone.student.domain;
    const lab = this.lab(zone).map((r) => `${recordLine(r, domain)}\n`).join('');
    return `; ${domain}: the zone of ${zone.student.name}; the SOA and NS are the lab's, the rest is the student's\n$ORIGIN ${domain}.\n${lab}${this.recordsText(zone.records, domain)}`;
  }

  private served(zone: StudentZone): Zone {
    const lab = this.lab(zone);
    return { origin: zone.student.domain, file: zone.file, soa: lab[0] as Zone['soa'], records: [...lab, ...zone.records], faults: [] };
  }
}

function historyFile(dir: string, domain: string): string {
  return join(dir, `${domain}.history.jsonl`);
}

// The newest changes of a history file. A line that does not read (the last
// one, cut by a crash) is left out.
function readHistory(file: string, log: Logger): { history: Change[]; lines: number } {
  if (!existsSync(file)) return { history: [], lines: 0 };
  const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean);
  const history: Change[] = [];
  for (const line of lines) {
    try {
      history.push(JSON.parse(line) as Change);
    } catch {
      log.warn({ file }, 'a line of a zone history does not read; left out');
    }
  }
  return { history: history.slice(-HISTORY_SHOWN), lines: lines.length };
}

