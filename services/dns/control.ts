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
// TXT values are the text itself (split at 255 bytes on the wire); other
// types are written as in a zone file ("10 mx.receiver.test."). An empty
// values list hides the name's records of that type. A fault is servfail,
// timeout, delay=<ms>, or none (which lifts the zone file's faults there).
import type { IncomingMessage, Server } from 'node:http';
import type { Logger } from '../lib/log.ts';
import type { Endpoint } from '../lib/config.ts';
import { HttpError, readJson, startHttp } from '../lib/http.ts';
import type { DnsServer } from './server.ts';
import type { Override } from './zones.ts';
import { checkName, faultOf, normalizeName, parseRdata, RECORD_TYPES, splitTxt, type RecordType, type ZoneRecord } from './zone-file.ts';

const DEFAULT_OVERRIDE_TTL = 5;

export function startControl(dns: DnsServer, listen: Endpoint, log: Logger): Promise<Server> {
  return startHttp(listen, (request, url) => handle(dns, request, url, log));
}

async function handle(dns: DnsServer, request: IncomingMessage, url: URL, log: Logger): Promise<unknown> {
  const route = `${request.method} ${url.pathname}`;
  switch (route) {
    case 'GET /health':
      return { status: 'ok', zones: dns.zones.zones.length, generation: dns.zones.generation };
    case 'GET /queries': {
      const name = url.searchParams.get('name');
      const limit = Number(url.searchParams.get('limit') ?? 100);
      if (!Number.isInteger(limit) || limit < 1) throw new HttpError(400, 'limit must be a positive whole number');
      const wanted = name === null ? undefined : normalizeName(name);
      return dns
        .recentQueries()
        .filter((q) => wanted === undefined || q.name === wanted)
        .slice(0, limit);
    }
    case 'GET /overrides':
      return dns.zones.listOverrides().map(describe);
    case 'POST /overrides': {
      const override = parseOverride(await readJson(request), dns);
      dns.zones.setOverride(override);
      log.info({ override: describe(override) }, 'override set');
      return describe(override);
    }
    case 'DELETE /overrides': {
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
