// The RFC 7208 SPF test suite (openspf.org's, as pyspf keeps it) as data: its
// cases, zone files that let the lab's DNS serve a scenario's zonedata, and an
// in-memory resolver over the same zonedata that answers as Node's resolver
// would, so that the two can be compared case by case.
import { readFileSync } from 'node:fs';
import { Resolver } from 'node:dns/promises';
import { SocketAddress } from 'node:net';
import { parseAllDocuments } from 'yaml';
import { spf, type DNSResolver } from 'mailauth';
import { RECORD_TYPES } from '../../services/dns/zone-file.ts';

export interface SpfCase {
  id: string;
  helo: string;
  host: string; // the client IP
  mailfrom: string; // "" is the null reverse-path: the HELO identity is checked
  expected: string[]; // one result, or several the suite accepts
}

// One name of a scenario, after the suite's conventions are applied.
interface Owner {
  records: Rr[];
  timeout: boolean; // queries for types the name has no records of time out
  spf: boolean; // holds a type SPF record, which the lab cannot serve (see zoneFiles)
}

// Target names lose the final dot but keep their letter case: a server gives
// rdata names as they are written.
type Rr =
  | { type: 'A' | 'AAAA'; address: string }
  | { type: 'MX'; priority: number; exchange: string }
  | { type: 'PTR' | 'CNAME'; target: string }
  | { type: 'TXT'; strings: string[] }; // one character per byte, as Node gives them

export interface Scenario {
  description: string;
  cases: SpfCase[];
  names: Map<string, Owner>; // names in lower case, without a final dot
}

export type Resolve = (name: string, type: string) => Promise<unknown>;

export function loadSuite(file: string): Scenario[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).map((document) => {
    const scenario = document.toJS() as {
      description: string;
      tests: Record<string, { helo: string; host: string; mailfrom: string; result: string | string[] }>;
      zonedata?: Record<string, (Record<string, unknown> | 'TIMEOUT')[]>;
    };
    const cases = Object.entries(scenario.tests).map(([id, t]) => ({
      id,
      helo: t.helo,
      host: t.host,
      mailfrom: t.mailfrom,
      expected: ([] as string[]).concat(t.result),
    }));
    const names = new Map<string, Owner>();
    for (const [name, entries] of Object.entries(scenario.zonedata ?? {})) {
      names.set(bareName(name), readOwner(name, entries));
    }
    return { description: scenario.description, cases, names };
  });
}

function readOwner(name: string, entries: (Record<string, unknown> | 'TIMEOUT')[]): Owner {
  const node: Owner = { records: [], timeout: false, spf: false };
  // SPF records are copied to TXT unless the name has TXT of its own (even "TXT: NONE").
  const ownTxt = entries.some((entry) => typeof entry === 'object' && 'TXT' in entry);
  for (const entry of entries) {
    if (entry === 'TIMEOUT') {
      node.timeout = true;
      continue;
    }
    // The suite's TIMEOUT covers the types not listed before it; zoneFiles
    // lists the name's types, which are those only when TIMEOUT comes last.
    if (node.timeout) throw new Error(`${name}: records after TIMEOUT are not supported`);
    const [[type, value]] = Object.entries(entry);
    if (type === 'SPF') {
      node.spf = true;
      if (!ownTxt) node.records.push(txt(value as string | string[]));
    } else if (type === 'TXT') {
      if (value !== 'NONE') node.records.push(txt(value as string | string[]));
    } else if (type === 'A' || type === 'AAAA') {
      node.records.push({ type, address: value as string });
    } else if (type === 'MX') {
      const [priority, exchange] = value as [number, string];
      node.records.push({ type, priority, exchange: exchange.replace(/\.$/, '') });
    } else if (type === 'PTR' || type === 'CNAME') {
      node.records.push({ type, target: (value as string).replace(/\.$/, '') });
    } else {
      throw new Error(`${name}: unknown record type ${type}`);
    }
  }
  return node;
}

// "SPF: []" is a record without strings, which RFC 1035 (section 3.3.14) does
// not allow and a master file cannot write; as the suite means it (a record
// that is not SPF, and should not crash anyone), it becomes one empty string.
function txt(value: string | string[]): Rr {
  const strings = ([] as string[]).concat(value);
  return { type: 'TXT', strings: strings.length ? strings.map(latin1) : [''] };
}

// YAML's "\xEF" is the code point U+00EF and stands for the byte 0xEF; wider
// characters would go out as UTF-8, and Node reads every byte back as one character.
function latin1(text: string): string {
  return /[^\x00-\xff]/.test(text) ? Buffer.from(text, 'utf8').toString('latin1') : text;
}

// DNS compares ASCII letters without case (RFC 4343).
const bareName = (name: string) => name.replace(/\.$/, '').replace(/[A-Z]+/g, (s) => s.toLowerCase());

// ---------------------------------------------------------------------------
// Zone files

const SOA = 'SOA ns.lab.test. hostmaster.lab.test. 1 3600 600 86400 60';

// One zone per top-level domain of the scenario (com, net, org, arpa, ...) and
// the root zone, so that a name the suite does not list is NXDOMAIN, as the
// suite says, and every name the suite lists is served as it is written.
// Type SPF (99) records are left out: the lab serves no type SPF, RFC 7208
// retired it and mailauth never asks for it. A name that held only SPF
// records therefore is NXDOMAIN here rather than NODATA (spfonly,
// txttimeout, nospftxttimeout): both are a void lookup to SPF.
// Names that Node's resolver refuses to send (c-ares takes only
// [A-Za-z0-9-._/*], so "foo:bar/baz.example.com" and names with spaces are
// EBADNAME before any packet leaves) are still written: they are valid on the
// wire and in a master file, and the in-memory resolver refuses them the same way.
export function zoneFiles(scenario: Scenario): Map<string, string> {
  const files = new Map<string, string>([['root.zone', `$ORIGIN .\n$TTL 60\n@ ${SOA}\n@ NS ns.lab.test.\n`]]);
  for (const [name, node] of scenario.names) {
    const tld = name.slice(name.lastIndexOf('.') + 1);
    const file = `${tld}.zone`;
    let text = files.get(file) ?? `$ORIGIN ${tld}.\n$TTL 60\n@ ${SOA}\n@ NS ns.lab.test.\n`;
    const owner = masterName(name);
    for (const record of node.records) text += `${owner} ${record.type} ${rdata(record)}\n`;
    if (node.timeout) {
      // The ;@fault parser reads the name as it is, without escapes.
      if (owner.includes('\\')) throw new Error(`${name}: a fault name cannot hold escapes`);
      // A fault without types stops every query of the name; the suite's
      // TIMEOUT spares the types the name has, so those are left out.
      const held = new Set<string>(node.records.map((r) => r.type));
      const types = held.size ? RECORD_TYPES.filter((t) => !held.has(t)) : [];
      text += `;@fault ${[owner, 'timeout', ...types].join(' ')}\n`;
    }
    files.set(file, text);
  }
  return files;
}

function rdata(record: Rr): string {
  switch (record.type) {
    case 'A':
    case 'AAAA':
      return record.address;
    case 'MX':
      return `${record.priority} ${masterName(record.exchange)}`;
    case 'PTR':
    case 'CNAME':
      return masterName(record.target);
    case 'TXT':
      return record.strings.map((s) => `"${escapeBytes(s, /[\x20-\x7e]/, /["\\]/)}"`).join(' ');
  }
}

// An absolute name in master-file form: special and non-printing bytes as \DDD.
function masterName(name: string): string {
  if (name === '') return '.';
  return `${name.split('.').map((label) => escapeBytes(label, /[\x21-\x7e]/, /[.;()"\\@$]/)).join('.')}.`;
}

function escapeBytes(text: string, plain: RegExp, special: RegExp): string {
  let out = '';
  for (const c of text) {
    out += plain.test(c) && !special.test(c) ? c : `\\${c.charCodeAt(0).toString().padStart(3, '0')}`;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Evaluation

// What mailauth concluded, with everything that depends on DNS answers: the
// comment carries the error text, lookups the counts of queries and voids.
export interface Outcome {
  result: string;
  comment?: string;
  explanation?: string;
  lookups?: unknown;
  warnings?: string[];
}

// strict: mailauth's RFC 7208 mode; its default is lenient in places.
export async function evaluate(test: SpfCase, resolve: Resolve, strict: boolean): Promise<Outcome> {
  const answer = await spf({
    sender: test.mailfrom,
    ip: test.host,
    helo: test.helo,
    mta: 'mx.receiver.test', // otherwise the comment holds this machine's name
    strict,
    resolver: resolve as DNSResolver, // mailauth's type omits the MX objects
  });
  const { result, comment } = answer.status;
  return { result, comment, explanation: answer.explanation, lookups: answer.lookups, warnings: answer.warnings };
}

// ---------------------------------------------------------------------------
// Resolvers

// Node's resolver pointed at the lab's DNS. A fresh one per evaluation, so that
// no answer is cached from one case (or scenario) to the next. Its errors
// already carry the codes mailauth expects (its default resolver is this one).
export function labResolver(port: number): Resolve {
  const resolver = new Resolver({ timeout: 300, tries: 1 });
  resolver.setServers([`127.0.0.1:${port}`]);
  return (name, type) => resolver.resolve(name, type);
}

const MAX_CNAME_CHAIN = 8;

// What Node's resolver would give for the scenario's zonedata: the same
// shapes, the same errors, the same strings, without a packet sent.
export function memoryResolver(scenario: Scenario): Resolve {
  const exists = new Set<string>(['']);
  for (const [name, node] of scenario.names) {
    if (node.records.length === 0 && !node.spf) continue;
    // The name and its ancestors (empty non-terminals are NODATA, RFC 8020).
    for (let n = name; n; n = n.includes('.') ? n.slice(n.indexOf('.') + 1) : '') exists.add(n);
  }
  return async (query, type) => {
    const labels = clientLabels(query);
    if (!labels) throw dnsError(type, 'EBADNAME', query);
    // A label holding a dot (a\.b) is no name of the suite's.
    if (labels.some((label) => label.includes('.'))) throw dnsError(type, 'ENOTFOUND', query);
    let name = bareName(labels.join('.'));
    const chain = new Set<string>(); // the CNAMEs followed so far
    for (;;) {
      const node = scenario.names.get(name);
      const rrset = node?.records.filter((r) => r.type === type) ?? [];
      if (node?.timeout && rrset.length === 0) throw dnsError(type, 'ETIMEOUT', query);
      // An RRset holds no duplicates (RFC 2181 section 5): a server, like any
      // cache, answers identical records once (the suite's multispf1 knows).
      if (rrset.length) return [...new Map(rrset.map((r) => [JSON.stringify(r), toNodeShape(r)])).values()];
      const cname = node?.records.find((r) => r.type === 'CNAME');
      if (cname?.type === 'CNAME') {
        chain.add(name);
        name = bareName(cname.target);
        // A loop or an over-long chain: the answer ends with the CNAMEs.
        if (!chain.has(name) && chain.size < MAX_CNAME_CHAIN) continue;
      } else if (!exists.has(name)) {
        throw dnsError(type, 'ENOTFOUND', query); // at the end of a chain too (RFC 6604)
      } else if (chain.size === 0) {
        throw dnsError(type, 'ENODATA', query);
      }
      // c-ares: an answer of CNAMEs alone is an empty list, but ENODATA for PTR.
      if (type === 'PTR') throw dnsError(type, 'ENODATA', query);
      return [];
    }
  };
}

function toNodeShape(record: Rr): unknown {
  switch (record.type) {
    case 'A':
      return record.address;
    case 'AAAA':
      // Node prints addresses as inet_ntop does: lower case, zeros compressed.
      return new SocketAddress({ address: record.address, family: 'ipv6' }).address;
    case 'MX':
      return { exchange: record.exchange, priority: record.priority, type: 'MX' };
    case 'PTR':
    case 'CNAME':
      return record.target;
    case 'TXT':
      return record.strings;
  }
}

// The labels c-ares would send for a name, or undefined where it answers
// EBADNAME itself: escapes (\. and \DDD) decoded, only [A-Za-z0-9-._/*] bytes,
// no empty label, none over 63 bytes, at most 255 in all (c-ares
// ares_split_dns_name with hostname validation).
function clientLabels(name: string): string[] | undefined {
  const labels = [''];
  for (let i = 0; i < name.length; i++) {
    let c = name[i];
    if (c === '.') {
      labels.push('');
      continue;
    }
    if (c === '\\') {
      const digits = /^\d{3}/.exec(name.slice(i + 1));
      if (digits) {
        if (Number(digits[0]) > 255) return undefined;
        c = String.fromCharCode(Number(digits[0]));
        i += 3;
      } else if (++i < name.length) {
        c = name[i];
      } else {
        return undefined;
      }
    }
    if (!/[A-Za-z0-9\-._/*]/.test(c)) return undefined;
    labels[labels.length - 1] += c;
  }
  if (labels.at(-1) === '') labels.pop();
  if (labels.some((label) => label.length === 0 || label.length > 63)) return undefined;
  if (labels.join('.').length > 255) return undefined;
  return labels;
}

// An error as Node's resolver makes it: "queryTxt ENOTFOUND name".
function dnsError(type: string, code: string, hostname: string): Error {
  const syscall = `query${type[0]}${type.slice(1).toLowerCase()}`;
  return Object.assign(new Error(`${syscall} ${code} ${hostname}`), { code, syscall, hostname });
}
