// RFC 1035 master files (section 5): $ORIGIN, $TTL, @, relative and absolute
// names, parentheses over several lines, comments, quoted and multi-string TXT,
// class IN, and the types the lab publishes. Plus one lab extension, written as
// a comment so that other servers (knotd in the benchmark) read the same files:
//
//   ;@fault <name> servfail|timeout|delay=<ms> [TYPE ...]
//
// A fault makes the server misbehave on purpose for that name: answer
// SERVFAIL, never answer, or answer late: for the TYPEs listed, or for every
// query of the name when none are.
//
// Written by hand: the npm zone-file parsers report no line numbers and skip
// escapes and parentheses in TXT, and this one is small.
import { isIPv4, isIPv6 } from 'node:net';

export const RECORD_TYPES = ['A', 'AAAA', 'MX', 'TXT', 'NS', 'SOA', 'CNAME', 'PTR'] as const;
export type RecordType = (typeof RECORD_TYPES)[number];

export interface Soa {
  primary: string;
  admin: string;
  serial: number;
  refresh: number;
  retry: number;
  expiration: number;
  minimum: number;
}

// The record shapes are those of dns2's encoder, so a record goes on the wire as it is.
export type Rdata =
  | { type: 'A'; address: string }
  | { type: 'AAAA'; address: string }
  | { type: 'MX'; priority: number; exchange: string }
  | { type: 'TXT'; data: Buffer[] }
  | { type: 'NS'; ns: string }
  | { type: 'CNAME'; domain: string }
  | { type: 'PTR'; domain: string }
  | ({ type: 'SOA' } & Soa);

// Names are absolute, lower case, without the final dot ("" is the root).
export type ZoneRecord = Rdata & { name: string; ttl: number };

// 'none' only comes from an override: it lifts the file's faults on that name.
export type FaultKind = 'servfail' | 'timeout' | 'delay' | 'none';

export interface Fault {
  name: string;
  kind: FaultKind;
  delayMs: number;
  types: RecordType[] | 'all';
  source: string;
}

export interface Zone {
  origin: string;
  file: string;
  soa: ZoneRecord & { type: 'SOA' };
  records: ZoneRecord[];
  faults: Fault[];
}

export class ZoneSyntaxError extends Error {
  file: string;
  line: number;
  reason: string; // the message without file:line
  constructor(file: string, line: number, message: string) {
    super(`${file}:${line}: ${message}`);
    this.name = 'ZoneSyntaxError';
    this.file = file;
    this.line = line;
    this.reason = message;
  }
}

interface Token {
  text: string;
  quoted: boolean;
  line: number;
  escapedDot?: boolean; // \. or \046 in it: a dot that would be part of a label
}

interface Entry {
  line: number;
  tokens: Token[];
  blankOwner: boolean; // the entry started with white space: reuse the previous owner
  fault?: string; // the text of a ;@fault directive
}

const MAX_TTL = 0x7fffffff;

// Splits the text into entries: one per line, or several lines joined by ( ).
function tokenize(text: string, file: string): Entry[] {
  const entries: Entry[] = [];
  let entry: Entry | null = null;
  let depth = 0;
  let depthLine = 0;
  let line = 1;
  let i = 0;
  const fail = (message: string) => {
    throw new ZoneSyntaxError(file, line, message);
  };
  const current = (): Entry => {
    entry ??= { line, tokens: [], blankOwner: false };
    return entry;
  };
  const endLine = () => {
    if (depth === 0 && entry) {
      if (entry.tokens.length > 0) entries.push(entry);
      entry = null;
    }
  };
  while (i < text.length) {
    const c = text[i];
    if (c === '\n') {
      endLine();
      line++;
      i++;
    } else if (c === ' ' || c === '\t' || c === '\r') {
      if (!entry && depth === 0 && (i === 0 || text[i - 1] === '\n')) current().blankOwner = true;
      i++;
    } else if (c === ';') {
      const end = text.indexOf('\n', i);
      const comment = text.slice(i, end === -1 ? text.length : end);
      const directive = /^;@fault\b(.*)$/.exec(comment.trimEnd());
      if (directive) {
        if (entry && depth > 0) fail('a ;@fault directive cannot stand inside parentheses');
        entries.push({ line, tokens: [], blankOwner: false, fault: directive[1].trim() });
      }
      i = end === -1 ? text.length : end;
    } else if (c === '(') {
      if (depth > 0) fail('nested "(" is not allowed');
      current();
      depth = 1;
      depthLine = line;
      i++;
    } else if (c === ')') {
      if (depth === 0) fail('")" without a matching "("');
      depth = 0;
      i++;
    } else if (c === '"') {
      const start = line;
      const bytes: number[] = [];
      i++;
      for (;;) {
        if (i >= text.length) throw new ZoneSyntaxError(file, start, 'quoted string is not closed');
        const d = text[i];
        if (d === '"') break;
        if (d === '\n') line++;
        if (d === '\\') {
          i = readEscape(text, i, bytes, fail);
        } else {
          i = readChar(text, i, bytes);
        }
      }
      i++;
      current().tokens.push({ text: Buffer.from(bytes).toString('latin1'), quoted: true, line: start });
    } else {
      const bytes: number[] = [];
      let escapedDot = false;
      while (i < text.length && !' \t\r\n;()"'.includes(text[i])) {
        if (text[i] === '\\') {
          const at = bytes.length;
          i = readEscape(text, i, bytes, fail);
          escapedDot ||= bytes[at] === 0x2e;
        } else {
          i = readChar(text, i, bytes);
        }
      }
      current().tokens.push({ text: Buffer.from(bytes).toString('latin1'), quoted: false, line, ...(escapedDot && { escapedDot }) });
    }
  }
  if (depth > 0) throw new ZoneSyntaxError(file, depthLine, '"(" is not closed');
  endLine();
  return entries;
}

// \DDD is one byte given in decimal; \X is X itself (RFC 1035 section 5.1).
function readEscape(text: string, i: number, bytes: number[], fail: (m: string) => never): number {
  const digits = /^\d{3}/.exec(text.slice(i + 1, i + 4));
  if (digits) {
    const value = Number(digits[0]);
    if (value > 255) fail(`escape \\${digits[0]} is not a byte (000-255)`);
    bytes.push(value);
    return i + 4;
  }
  if (i + 1 >= text.length || text[i + 1] === '\n') fail('"\\" at the end of a line');
  return readChar(text, i + 1, bytes);
}

// One character as UTF-8. Read by code point: a character outside the BMP
// (an emoji) is two UTF-16 units, and either half alone would encode as U+FFFD.
function readChar(text: string, i: number, bytes: number[]): number {
  const char = String.fromCodePoint(text.codePointAt(i) as number);
  bytes.push(...Buffer.from(char, 'utf8'));
  return i + char.length;
}

// Tokens hold one character per byte (latin1) so that \DDD escapes survive;
// TXT data turns them back into bytes.
const bytesOf = (token: Token) => Buffer.from(token.text, 'latin1');

export function parseTtl(text: string): number | undefined {
  // Plain seconds, or BIND's units: 1h30m, 2d, 1w.
  if (!/^(\d+|(\d+[smhdw])+)$/i.test(text)) return undefined;
  if (/^\d+$/.test(text)) return Number(text);
  const unit: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
  let total = 0;
  for (const [, n, u] of text.toLowerCase().matchAll(/(\d+)([smhdw])/g)) total += Number(n) * unit[u];
  return total;
}

// The form names are compared in: DNS folds the case of ASCII letters only
// (RFC 4343), and the final dot is left off.
export function normalizeName(name: string): string {
  return name.replace(/[A-Z]+/g, (s) => s.toLowerCase()).replace(/\.$/, '');
}

// An absolute name checked against RFC 1035 limits; returns why it is wrong, or undefined.
export function checkName(name: string): string | undefined {
  if (name === '') return undefined;
  if (name.startsWith('.') || name.includes('..')) return `"${name}" has an empty label`;
  for (const label of name.split('.')) {
    if (Buffer.byteLength(label, 'latin1') > 63) return `label "${label}" is longer than 63 bytes`;
  }
  if (Buffer.byteLength(name, 'latin1') + 2 > 255) return `"${name}" is longer than 255 bytes`;
  return undefined;
}

// RFC 1035 allows 255 bytes per character-string; longer text is split, so a
// whole DKIM key may be written (or overridden) as one string.
export function splitTxt(strings: Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  for (const s of strings) {
    if (s.length === 0) out.push(s);
    for (let at = 0; at < s.length; at += 255) out.push(s.subarray(at, at + 255));
  }
  return out;
}

export function parseZoneFile(text: string, file: string, defaultOrigin?: string): Zone {
  const { records, faults } = parseRecords(text, file, { origin: defaultOrigin });
  return checkZone(file, records, faults);
}

export type LineRecord = ZoneRecord & { line: number };

// A name and a type written without data ("_dmarc TXT"): what a deletion of
// every record of that type at that name says (parseRecords with bareTypes).
export interface BareType {
  name: string;
  type: RecordType;
  line: number;
}

export interface FaultText {
  line: number;
  text: string;
  origin: string | undefined;
}

export interface RecordsOptions {
  origin?: string; // $ORIGIN until the text sets one
  ttl?: number; // $TTL until the text sets one
  bareTypes?: boolean; // take "<name> <TYPE>" without data (returned apart)
}

// The records of a master file in the order written, each with its line;
// no check across records (parseZoneFile's checkZone does those).
export function parseRecords(text: string, file: string, options: RecordsOptions = {}): { records: LineRecord[]; faults: FaultText[]; bare: BareType[] } {
  let origin = options.origin === undefined ? undefined : normalizeName(options.origin);
  let defaultTtl = options.ttl;
  let owner: string | undefined;
  const records: LineRecord[] = [];
  const bare: BareType[] = [];
  const faultTexts: FaultText[] = [];

  for (const entry of tokenize(text, file)) {
    const fail: Fail = (message, line = entry.line) => {
      throw new ZoneSyntaxError(file, line, message);
    };
    if (entry.fault !== undefined) {
      faultTexts.push({ line: entry.line, text: entry.fault, origin });
      continue;
    }
    const tokens = entry.tokens;
    const absolute = (token: Token | undefined, what: string) => absoluteName(token, what, origin, fail);

    const first = tokens[0];
    if (!entry.blankOwner && first.text.startsWith('$') && !first.quoted) {
      const directive = first.text.toUpperCase();
      if (directive === '$ORIGIN') {
        if (tokens.length !== 2 || !tokens[1].text.endsWith('.')) fail('expected $ORIGIN <absolute name ending in ".">');
        origin = normalizeName(tokens[1].text);
      } else if (directive === '$TTL') {
        const ttl = tokens.length === 2 ? parseTtl(tokens[1].text) : undefined;
        if (ttl === undefined || ttl > MAX_TTL) fail('expected $TTL <seconds>');
        defaultTtl = ttl;
      } else {
        fail(`unsupported directive ${first.text} (expected $ORIGIN or $TTL)`);
      }
      continue;
    }

    let at = 0;
    if (!entry.blankOwner) {
      owner = absolute(tokens[0], 'owner name');
      at = 1;
    } else if (owner === undefined) {
      fail('record has no owner name (the first record of a file must name one)');
    }
    // [TTL] [class] or [class] [TTL], in either order, before the type.
    let ttl: number | undefined;
    for (let k = 0; k < 2 && at < tokens.length; k++) {
      const word = tokens[at].text;
      const asTtl = parseTtl(word);
      if (asTtl !== undefined && ttl === undefined) {
        if (asTtl > MAX_TTL) fail(`TTL ${word} is larger than ${MAX_TTL}`);
        ttl = asTtl;
        at++;
      } else if (word.toUpperCase() === 'IN') {
        at++;
      } else if (/^(CH|HS|CS|CLASS\d+)$/i.test(word)) {
        fail(`class ${word} is not supported (the lab serves class IN only)`, tokens[at].line);
      }
    }
    const typeToken = tokens[at++];
    if (!typeToken) fail('expected a record type after the owner, TTL and class');
    const type = typeToken.text.toUpperCase() as RecordType;
    if (!RECORD_TYPES.includes(type)) {
      fail(`unsupported record type "${typeToken.text}" (expected one of ${RECORD_TYPES.join(', ')})`, typeToken.line);
    }
    if (options.bareTypes && at === tokens.length) {
      bare.push({ name: owner as string, type, line: entry.line });
      continue;
    }
    const record = buildRdata(type, tokens.slice(at), (token, what) => absoluteName(token, what, origin, fail, true), fail);
    if (ttl === undefined) {
      // RFC 2308: without $TTL the SOA minimum is the default.
      ttl = defaultTtl ?? (record.type === 'SOA' ? record.minimum : undefined);
      if (ttl === undefined) fail('record has no TTL and no $TTL was given');
    }
    records.push({ ...record, name: owner as string, ttl: ttl as number, line: entry.line } as LineRecord);
  }
  return { records, faults: faultTexts, bare };
}

type Fail = (message: string, line?: number) => never;

// A name as written in a file: "@", absolute ("a.b."), or relative to $ORIGIN.
// Owner names are normalized; names inside record data keep their letter case,
// which servers return as written (RFC 4343 section 4.1).
function absoluteName(token: Token | undefined, what: string, origin: string | undefined, fail: Fail, keepCase = false): string {
  const normalize = (text: string) => (keepCase ? text.replace(/\.$/, '') : normalizeName(text));
  if (!token) return fail(`expected ${what}`);
  // Names are kept as text, where every dot separates labels: a dot inside a
  // label would be read as two labels (a\.b as a.b), so it is refused.
  if (token.escapedDot) return fail(`${what}: "${token.text}" has an escaped dot (\\. or \\046), a dot inside a label, which the lab does not serve`, token.line);
  let name: string;
  if (token.text === '@') {
    if (origin === undefined) return fail('"@" used before $ORIGIN', token.line);
    name = origin;
  } else if (token.text.endsWith('.')) {
    name = normalize(token.text);
  } else {
    if (origin === undefined) return fail(`relative name "${token.text}" used before $ORIGIN`, token.line);
    name = normalize(origin === '' ? token.text : `${token.text}.${origin}`);
  }
  const problem = checkName(name);
  if (problem) fail(`${what}: ${problem}`, token.line);
  return name;
}

// Record data in master-file form ("10 mx.receiver.test."), names relative to
// origin; for records that do not come from a file (the control endpoint).
export function parseRdata(type: string, text: string, origin: string, source: string): Rdata {
  const fail: Fail = (message) => {
    throw new ZoneSyntaxError(source, 1, message);
  };
  const upper = type.toUpperCase() as RecordType;
  if (!RECORD_TYPES.includes(upper)) fail(`unsupported record type "${type}" (expected one of ${RECORD_TYPES.join(', ')})`);
  const tokens = tokenize(text, source).flatMap((entry) => entry.tokens);
  return buildRdata(upper, tokens, (token, what) => absoluteName(token, what, origin, fail, true), fail);
}

function buildRdata(type: RecordType, rdata: Token[], absolute: (token: Token | undefined, what: string) => string, fail: Fail): Rdata {
  const need = (count: number, shape: string) => {
    if (rdata.length !== count) fail(`${type} needs ${shape}, found ${rdata.length} field(s)`);
  };
  const number16 = (token: Token, what: string): number => {
    const value = /^\d+$/.test(token.text) ? Number(token.text) : NaN;
    if (!(value <= 65535)) fail(`${what} must be a number from 0 to 65535, found "${token.text}"`, token.line);
    return value;
  };
  const time32 = (token: Token, what: string): number => {
    const value = parseTtl(token.text);
    if (value === undefined || value > 0xffffffff) fail(`${what} must be a 32-bit number, found "${token.text}"`, token.line);
    return value as number;
  };

  switch (type) {
    case 'A':
      need(1, 'an IPv4 address');
      if (!isIPv4(rdata[0].text)) fail(`"${rdata[0].text}" is not an IPv4 address`, rdata[0].line);
      return { type, address: rdata[0].text };
    case 'AAAA':
      need(1, 'an IPv6 address');
      if (!isIPv6(rdata[0].text)) fail(`"${rdata[0].text}" is not an IPv6 address`, rdata[0].line);
      return { type, address: expandIPv6(rdata[0].text) };
    case 'MX':
      need(2, 'a preference and an exchange name');
      return { type, priority: number16(rdata[0], 'MX preference'), exchange: absolute(rdata[1], 'MX exchange') };
    case 'TXT':
      if (rdata.length === 0) fail('TXT needs at least one string');
      return { type, data: splitTxt(rdata.map(bytesOf)) };
    case 'NS':
      need(1, 'a name server name');
      return { type, ns: absolute(rdata[0], 'NS name') };
    case 'CNAME':
    case 'PTR':
      need(1, 'a target name');
      return { type, domain: absolute(rdata[0], `${type} target`) };
    case 'SOA':
      need(7, 'mname rname serial refresh retry expire minimum');
      return {
        type,
        primary: absolute(rdata[0], 'SOA mname'),
        admin: absolute(rdata[1], 'SOA rname'),
        serial: time32(rdata[2], 'SOA serial'),
        refresh: time32(rdata[3], 'SOA refresh'),
        retry: time32(rdata[4], 'SOA retry'),
        expiration: time32(rdata[5], 'SOA expire'),
        minimum: time32(rdata[6], 'SOA minimum'),
      };
  }
}

function checkZone(file: string, records: LineRecord[], faultTexts: FaultText[]): Zone {
  const soas = records.filter((r) => r.type === 'SOA');
  if (soas.length === 0) throw new ZoneSyntaxError(file, 1, 'the zone has no SOA record');
  if (soas.length > 1) throw new ZoneSyntaxError(file, soas[1].line, 'a second SOA record (a zone has exactly one)');
  const origin = soas[0].name;
  const inZone = (name: string) => origin === '' || name === origin || name.endsWith(`.${origin}`);
  const types = new Map<string, Set<string>>();
  for (const record of records) {
    if (!inZone(record.name)) {
      throw new ZoneSyntaxError(file, record.line, `"${record.name}" is outside the zone ${origin || '.'}`);
    }
    const seen = types.get(record.name) ?? new Set();
    if (seen.has('CNAME') || (record.type === 'CNAME' && seen.size > 0)) {
      throw new ZoneSyntaxError(file, record.line, `"${record.name}" has a CNAME and other data (RFC 1034 section 3.6.2)`);
    }
    seen.add(record.type);
    types.set(record.name, seen);
  }
  const faults = faultTexts.map(({ line, text, origin: at }) => {
    const fault = parseFault(text, at ?? origin, file, line);
    if (!inZone(fault.name)) throw new ZoneSyntaxError(file, line, `fault name "${fault.name}" is outside the zone`);
    return fault;
  });
  const plain = records.map(({ line: _line, ...record }) => record as ZoneRecord);
  const soa = plain.find((r) => r.type === 'SOA') as ZoneRecord & { type: 'SOA' };
  return { origin, file, soa, records: plain, faults };
}

// "<name> servfail|timeout|delay=<ms> [TYPE ...]", name relative to origin.
export function parseFault(text: string, origin: string, file: string, line: number): Fault {
  const fail = (message: string): never => {
    throw new ZoneSyntaxError(file, line, message);
  };
  const usage = 'expected ;@fault <name> servfail|timeout|delay=<ms> [TYPE ...]';
  const words = text.split(/\s+/).filter(Boolean);
  if (words.length < 2) fail(usage);
  const [nameText, kindText, ...typeTexts] = words;
  const name =
    nameText === '@' ? origin : nameText.endsWith('.') ? normalizeName(nameText) : normalizeName(origin ? `${nameText}.${origin}` : nameText);
  const problem = checkName(name);
  if (problem) fail(`fault name: ${problem}`);
  if (kindText.toLowerCase() === 'none') fail(`unknown fault "${kindText}"; ${usage}`);
  return { name, ...faultOf(kindText, typeTexts, fail, usage), source: `${file}:${line}` };
}

// The kind, delay and types of a fault: "servfail", "timeout", "delay=<ms>"
// (and "none", which lifts a file's faults), for the TYPEs given or all.
export function faultOf(kindText: string, typeTexts: string[], fail: (message: string) => never, usage = 'expected servfail, timeout, delay=<ms> or none'): Pick<Fault, 'kind' | 'delayMs' | 'types'> {
  const delay = /^delay=(\d+)$/i.exec(kindText);
  let kind: FaultKind;
  let delayMs = 0;
  if (delay) {
    kind = 'delay';
    delayMs = Number(delay[1]);
    if (delayMs > 60000) fail('a delay is at most 60000 ms');
  } else if (/^(servfail|timeout|none)$/i.test(kindText)) {
    kind = kindText.toLowerCase() as FaultKind;
  } else {
    return fail(`unknown fault "${kindText}"; ${usage}`);
  }
  const types = typeTexts.map((t) => t.toUpperCase());
  for (const t of types) {
    if (!(RECORD_TYPES as readonly string[]).includes(t)) fail(`unknown record type "${t}" in fault`);
  }
  return { kind, delayMs, types: types.length ? (types as RecordType[]) : 'all' };
}

// dns2 encodes AAAA from eight hex groups; accept every RFC 4291 text form.
function expandIPv6(address: string): string {
  let text = address.toLowerCase();
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4[1].split('.').map(Number);
    text = text.slice(0, v4.index) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const middle = text.includes('::') ? Array(8 - left.length - right.length).fill('0') : [];
  return [...left, ...middle, ...right].map((g) => g.padStart(4, '0')).join(':');
}
