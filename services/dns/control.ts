// The DNS server's HTTP control endpoint: health, recent queries, and
// temporary record overrides that scenarios use to change a policy live.
// Overrides live in memory only; the zone files are never written.
//
//   GET    /health                    {"status":"ok", zones, generation}
//   GET    /queries?name=&limit=      recent queries, newest first
//   GET    /overrides                 overrides in force
//   POST   /overrides                 {"name", "type", "values": [...], "ttl"?}
//                                     or {"name", "fault", "types"?: [...]}
//   DELETE /overrides?name=&type=     clear matching overrides (all without filters;
//                                     type=fault for a fault override)
//
// Only the lab's own tools may change the lab's DNS: a write from a web page
// of another origin is refused (403), and so is one that is not JSON (415:
// a cross-origin page cannot send JSON without a preflight, which this
// endpoint never grants); a request for a name other than the server's
// (DNS rebinding) is refused by startHttp (421). At most MAX_OVERRIDES
// overrides are in force (429).
//
// TXT values are the text itself (split at 255 bytes on the wire); other
// types are written as in a zone file ("10 mx.receiver.test."). An empty
// values list hides the name's records of that type. A fault is servfail,
// timeout, delay=<ms>, or none (which lifts the zone file's faults there).
//
// In classroom mode (student-zones.ts), also the students' zones:
//
//   GET    /classroom                 {name, students: [{name, domain}]}
//   GET    /zones/<domain>            {domain, student, serial, records, zone, history}
//   PUT    /zones/<domain>            {"records": "<text>", "serial"?: n} -> {serial, diff}
//   POST   /zones/<domain>/records    {"add"?: [line], "delete"?: [line]} -> {serial, diff}
//
// and every route but /health needs a credential (control-access.ts): a
// student reads and changes only their own zone and sees only the queries
// for names in it; overrides are the teacher's.
import type { IncomingMessage, Server } from 'node:http';
import type { Logger } from '../lib/log.ts';
import type { Endpoint } from '../lib/config.ts';
import { connectionsFor, type Identity } from '../lib/classroom.ts';
import { HttpError, MAX_CONNECTIONS, readJson, startHttp } from '../lib/http.ts';
import type { DnsServer } from './server.ts';
import { ControlAccess } from './control-access.ts';
import { SerialConflict, type StudentZones } from './student-zones.ts';
import { EditError, LIMITS } from './zone-edit.ts';
import { OverrideLimitError, type Override } from './zones.ts';
import { checkName, faultOf, normalizeName, parseRdata, RECORD_TYPES, splitTxt, type RecordType, type ZoneRecord } from './zone-file.ts';

const DEFAULT_OVERRIDE_TTL = 5;
const NAMES = ['ns.lab.test']; // the lab's name for this server (DESIGN.md, "The lab world")
// A records text of LIMITS.textBytes, as JSON: quotes and backslashes escaped.
const MAX_ZONE_BODY = 4 * LIMITS.textBytes;
const ZONE_ROUTE = /^\/zones\/([^/]+)(\/records)?$/;

// students: the class's zones, in classroom mode.
export function startControl(dns: DnsServer, listen: Endpoint, log: Logger, students?: StudentZones): Promise<Server> {
  const access = students && new ControlAccess(students.classroom);
  return startHttp(listen, NAMES, (request, url) => handle(dns, request, url, log, students && access && { students, access }), connectionsFor(students?.classroom, MAX_CONNECTIONS));
}

interface Class {
  students: StudentZones;
  access: ControlAccess;
}

async function handle(dns: DnsServer, request: IncomingMessage, url: URL, log: Logger, classroom: Class | undefined): Promise<unknown> {
  const route = `${request.method} ${url.pathname}`;
  if (request.method !== 'GET' && request.method !== 'HEAD') checkWriter(request);
  if (route === 'GET /health') return { status: 'ok', zones: dns.zones.zones.length, generation: dns.zones.generation };
  const who = classroom?.access.identify(request);
  const zoneRoute = ZONE_ROUTE.exec(url.pathname);
  if (url.pathname === '/classroom' || zoneRoute) {
    if (!classroom || !who) throw new HttpError(404, 'the lab has no class (LAB_CLASS_DIR holds no class.yaml), so no student zones');
    if (zoneRoute) return zoneRequest(classroom, who, request, normalizeName(decodeURIComponent(zoneRoute[1])), zoneRoute[2] !== undefined, log);
  }
  switch (route) {
    case 'GET /classroom': {
      const { name, students } = classroom!.students.classroom;
      const shown = who!.role === 'teacher' ? students : [who!.student];
      return { name, students: shown.map((s) => ({ name: s.name, domain: s.domain })) };
    }
    case 'GET /queries': {
      const name = url.searchParams.get('name');
      const limit = Number(url.searchParams.get('limit') ?? 100);
      if (!Number.isInteger(limit) || limit < 1) throw new HttpError(400, 'limit must be a positive whole number');
      const wanted = name === null ? undefined : normalizeName(name);
      // A student sees the queries for names in their own zone only.
      const student = who?.role === 'student' ? who.student : undefined;
      const inOwn = (q: string) => !student || q === student.domain || q.endsWith(`.${student.domain}`);
      if (wanted !== undefined && !inOwn(wanted)) throw new HttpError(403, `${wanted} is not in your zone; you are ${student!.name} (${student!.domain}): you see the queries for names in it`);
      return dns
        .recentQueries()
        .filter((q) => (wanted === undefined || q.name === wanted) && inOwn(q.name))
        .slice(0, limit);
    }
    case 'GET /overrides':
      return dns.zones.listOverrides().map(describe);
    case 'POST /overrides': {
      if (who) classroom!.access.checkTeacher(who, 'changing the lab\'s DNS with overrides');
      const override = parseOverride(await readJson(request), dns);
      try {
        dns.zones.setOverride(override);
      } catch (error) {
        if (error instanceof OverrideLimitError) throw new HttpError(429, error.message);
        throw error;
      }
      log.info({ override: describe(override) }, 'override set');
      return describe(override);
    }
    case 'DELETE /overrides': {
      if (who) classroom!.access.checkTeacher(who, 'changing the lab\'s DNS with overrides');
      const name = url.searchParams.get('name') ?? undefined;
      const type = url.searchParams.get('type')?.toUpperCase() as RecordType | 'FAULT' | undefined;
      const cleared = dns.zones.clearOverrides(name && normalizeName(name), type);
      log.info({ name, type, cleared }, 'overrides cleared');
      return { cleared };
    }
    default:
      throw new HttpError(404, `no such endpoint: ${route}`);
  }
}

// A student's zone: read it, replace its records, or change some of them.
async function zoneRequest({ students, access }: Class, who: Identity, request: IncomingMessage, domain: string, records: boolean, log: Logger): Promise<unknown> {
  const method = request.method;
  if (!students.has(domain)) throw new HttpError(404, `${domain} is no student's zone (the class's domains are ${students.classroom.students[0].domain} and the like)`);
  if (!((method === 'GET' && !records) || (method === 'PUT' && !records) || (method === 'POST' && records))) {
    throw new HttpError(405, `${method} is not taken here: GET or PUT /zones/${domain}, POST /zones/${domain}/records`);
  }
  access.checkZone(who, domain);
  if (method === 'GET') return students.view(domain);
  const by = who.role === 'teacher' ? 'teacher' : who.student.name;
  const body = (await readJson(request, MAX_ZONE_BODY)) as Record<string, unknown> | null;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'send a JSON object');
  try {
    if (method === 'PUT') {
      const { records: text, serial } = body;
      if (typeof text !== 'string') throw new HttpError(400, '"records" must be the zone\'s records as zone-file text');
      if (serial !== undefined && !Number.isInteger(serial)) throw new HttpError(400, '"serial" must be the serial the change was made against');
      return await students.replace(domain, text, by, serial as number | undefined);
    }
    const lines = (key: 'add' | 'delete'): string[] => {
      const value = body[key] ?? [];
      if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new HttpError(400, `"${key}" must be a list of record lines`);
      return value;
    };
    const add = lines('add');
    const remove = lines('delete');
    if (add.length + remove.length === 0) throw new HttpError(400, 'nothing to change: give "add" or "delete", a list of record lines');
    if (add.length + remove.length > LIMITS.records * 2) throw new HttpError(400, `at most ${LIMITS.records * 2} lines in one change`);
    return await students.edit(domain, add, remove, by);
  } catch (error) {
    if (error instanceof EditError) {
      log.info({ domain, by, reason: error.message }, "student's zone change refused");
      throw new HttpError(400, error.message);
    }
    if (error instanceof SerialConflict) throw new HttpError(409, error.message);
    throw error;
  }
}

// A write comes from the lab's tools, never from a page of another origin.
function checkWriter(request: IncomingMessage): void {
  const { origin, host } = request.headers;
  if (origin !== undefined && origin !== `http://${host}`) throw new HttpError(403, `changes to the lab's DNS are not taken from web pages of other origins (${origin})`);
  if ((request.method === 'POST' || request.method === 'PUT') && !/^application\/json\s*(;|$)/i.test(request.headers['content-type'] ?? '')) {
    throw new HttpError(415, 'send JSON (Content-Type: application/json)');
  }
}

function parseOverride(body: unknown, dns: DnsServer): Override {
  const { name: nameText, type: typeText, values, ttl = DEFAULT_OVERRIDE_TTL, fault, types = [] } = (body ?? {}) as Record<string, unknown>;
  if (typeof nameText !== 'string' || nameText === '') throw new HttpError(400, '"name" must be a domain name');
  const name = normalizeName(nameText);
  const problem = checkName(name);
  if (problem) throw new HttpError(400, `"name": ${problem}`);
  if (fault !== undefined) {
    if (typeof fault !== 'string' || !Array.isArray(types)) throw new HttpError(400, '"fault" must be servfail, timeout, delay=<ms> or none; "types" a list');
    const fail = (message: string): never => {
      throw new HttpError(400, `"fault": ${message}`);
    };
    return { name, fault: { name, ...faultOf(fault, types.map(String), fail), source: 'override' } };
  }
  const type = String(typeText ?? '').toUpperCase() as RecordType;
  if (!RECORD_TYPES.includes(type)) throw new HttpError(400, `"type" must be one of ${RECORD_TYPES.join(', ')}`);
  if (!Array.isArray(values) || !values.every((v) => typeof v === 'string')) {
    throw new HttpError(400, '"values" must be a list of strings ([] hides the records)');
  }
  if (!Number.isInteger(ttl) || (ttl as number) < 0 || (ttl as number) > 0x7fffffff) throw new HttpError(400, '"ttl" must be a whole number of seconds');
  const zone = dns.zones.findZone(name);
  if (!zone) throw new HttpError(400, `no zone holds ${name}`);
  const records = (values as string[]).map((value): ZoneRecord => {
    if (type === 'TXT') return { type, data: splitTxt([Buffer.from(value, 'utf8')]), name, ttl: ttl as number };
    try {
      return { ...parseRdata(type, value, zone.origin, 'override'), name, ttl: ttl as number };
    } catch (error) {
      throw new HttpError(400, `"values": ${(error as Error).message}`);
    }
  });
  return { name, type, records };
}

function describe(override: Override) {
  if ('fault' in override) {
    const { kind, delayMs, types } = override.fault;
    return { name: override.name, fault: kind === 'delay' ? `delay=${delayMs}` : kind, types };
  }
  return { name: override.name, type: override.type, values: override.records.map(presentation) };
}

function presentation(record: ZoneRecord): string {
  switch (record.type) {
    case 'A':
    case 'AAAA':
      return record.address;
    case 'MX':
      return `${record.priority} ${record.exchange}.`;
    case 'NS':
      return `${record.ns}.`;
    case 'CNAME':
    case 'PTR':
      return `${record.domain}.`;
    case 'SOA':
      return `${record.primary}. ${record.admin}. ${record.serial} ${record.refresh} ${record.retry} ${record.expiration} ${record.minimum}`;
    case 'TXT':
      return Buffer.concat(record.data).toString('utf8');
  }
}
