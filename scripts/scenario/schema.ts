// The scenario file format (scripts/scenarios/*.yaml), checked by hand: a
// mistake is reported as `file:line: path.in.file: what was expected`, so that
// whoever writes a scenario finds it at once. Nothing here talks to the lab.
import { basename } from 'node:path';
import { readYamlFile, type Path } from '../../services/lib/yaml-file.ts';

export const RESULTS = ['pass', 'fail', 'softfail', 'neutral', 'none', 'temperror', 'permerror', 'policy'];
export const DISPOSITIONS = ['inbox', 'junk', 'reject', 'defer'] as const;
export const POLICIES = ['none', 'quarantine', 'reject'];
// rsa-sha1 only to show that receivers refuse it (RFC 8301).
const ALGORITHMS = ['rsa-sha256', 'ed25519-sha256', 'rsa-sha1'];
const RECORD_TYPES = ['A', 'AAAA', 'MX', 'TXT', 'NS', 'CNAME', 'PTR', 'SOA'];
const FAULT = /^(servfail|timeout|none|delay=\d+)$/;

// One change to the lab DNS, made through its control endpoint.
export type DnsChange =
  | { name: string; type: string; values: string[]; ttl?: number } // replace the records
  | { name: string; fault: string; types?: string[] } // servfail, timeout, delay=MS, or none (lifts a zone file's fault)
  | { name: string; type?: string; clear: true }; // the zone files answer again

export interface DkimExpectation {
  result?: string;
  domain?: string;
  selector?: string;
  algorithm?: string;
  aligned?: boolean;
}

export interface Expect {
  spf?: string;
  dkim?: string | DkimExpectation[]; // one word (pass when any signature passes), or each signature in order
  dmarc?: string;
  arc?: string;
  policy?: string; // the DMARC policy applied (after sp=, t=y)
  disposition?: (typeof DISPOSITIONS)[number];
  code?: string; // "550 5.7.1"
  arcOverride?: boolean;
  reason?: string; // the decision's reason contains this text
  headers?: Record<string, string>; // the stored copy's field contains this text
  report?: ReportExpect; // a report: step's
  failureReport?: { to: string; fields: Record<string, string> }; // a DMARC failure report about this step's message reached `to`, its feedback fields containing these texts
}

// What a report: step expects of the DMARC aggregate report for its domain.
export interface ReportExpect {
  sent?: boolean; // it went to at least one address
  to?: string[]; // exactly these addresses
  refused?: string; // a refused destination's reason contains this text
  rows?: { source: string; count?: number; dmarc?: 'pass' | 'fail'; disposition?: string }[]; // rows from this source (with this result)
}

export interface Step {
  title: string;
  id?: string;
  dns: DnsChange[]; // made before the message is sent
  via?: string; // submission through this instance
  direct?: string; // the runner speaks SMTP from this instance's address
  retryOf?: string; // no new message: the next attempt of that step's message
  replay?: string; // re-send the copy that step's message left in its mailbox
  from?: string;
  fromFields?: string[]; // with direct: the From fields exactly as written, [] for none
  mailFrom?: string;
  to: string[];
  subject?: string;
  headers: Record<string, string>;
  body?: string;
  sign: { domain: string; selector: string; algorithm?: string }[];
  tamper?: { body?: string; subject?: string; headers?: Record<string, string> };
  observe: string; // the recipient whose MTA's decision is checked
  report?: string; // a report: step sends nothing: the lab's DMARC reports are sent now, and the one for this domain is checked
  expect: Expect;
}

export interface Scenario {
  file: string;
  name: string;
  title: string;
  lesson: string;
  failureReports: boolean; // the lab's DMARC failure reports are on while it runs (they are off by default)
  dns: DnsChange[]; // for the whole run
  steps: Step[];
}

export class ScenarioError extends Error {}

// Reads and checks one file. `instances` are the lab's MTA names (via:, direct:).
export function loadScenario(file: string, instances: string[]): Scenario {
  // merge: <<: *anchor repeats a step.
  const { value, fail } = readYamlFile(file, (message) => new ScenarioError(message), { merge: true });
  return checkScenario(value, file, instances, fail);
}

function checkScenario(doc: unknown, file: string, instances: string[], fail: (path: Path, message: string) => never): Scenario {
  const got = (value: unknown) => (value === undefined ? 'nothing' : JSON.stringify(value));
  const mapping = (value: unknown, path: Path, keys: string[]): Record<string, unknown> => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(path, `expected a mapping with ${keys.join(', ')} (got ${got(value)})`);
    for (const key of Object.keys(value as object)) {
      if (!keys.includes(key)) fail([...path, key], `unknown key (expected one of ${keys.join(', ')})`);
    }
    return value as Record<string, unknown>;
  };
  const text = (value: unknown, path: Path, what = 'text'): string => {
    if (typeof value !== 'string' || value.trim() === '') fail(path, `expected ${what} (got ${got(value)})`);
    return value as string;
  };
  const optional = <T>(value: unknown, check: (v: unknown) => T): T | undefined => (value === undefined ? undefined : check(value));
  const oneOf = (value: unknown, path: Path, allowed: readonly string[]): string => {
    if (typeof value !== 'string' || !allowed.includes(value)) fail(path, `expected one of ${allowed.join(', ')} (got ${got(value)})`);
    return value as string;
  };
  const list = (value: unknown, path: Path): unknown[] => {
    if (!Array.isArray(value)) fail(path, `expected a list (got ${got(value)})`);
    return value as unknown[];
  };
  const address = (value: unknown, path: Path): string => {
    const a = text(value, path, 'an address, local@domain');
    if (!/^[^@\s<>]+@[a-z0-9.-]+$/i.test(a)) fail(path, `expected an address, local@domain (got ${got(a)})`);
    return a.toLowerCase();
  };
  // One address or a list of them.
  const addresses = (value: unknown, path: Path): string[] =>
    Array.isArray(value) ? value.map((a, i) => address(a, [...path, i])) : [address(value, path)];
  const fields = (value: unknown, path: Path): Record<string, string> => {
    const m = mapping(value, path, Object.keys((value as object) ?? {}));
    for (const [k, v] of Object.entries(m)) {
      if (!/^[!-9;-~]+$/.test(k)) fail([...path, k], 'expected a header field name');
      text(v, [...path, k], 'the field value, as text');
    }
    return m as Record<string, string>;
  };

  const dnsChange = (value: unknown, path: Path): DnsChange => {
    const m = mapping(value, path, ['name', 'type', 'values', 'ttl', 'fault', 'types', 'clear']);
    const name = text(m.name, [...path, 'name'], 'a domain name').toLowerCase().replace(/\.$/, '');
    if (m.clear !== undefined) {
      if (m.clear !== true) fail([...path, 'clear'], 'expected true: the zone files answer again for this name');
      for (const key of ['values', 'ttl', 'fault', 'types']) if (key in m) fail([...path, key], 'does not go with clear: true');
      return { name, clear: true, ...(m.type !== undefined && { type: oneOf(String(m.type).toUpperCase(), [...path, 'type'], RECORD_TYPES) }) };
    }
    if (m.fault !== undefined) {
      if (typeof m.fault !== 'string' || !FAULT.test(m.fault)) fail([...path, 'fault'], `expected servfail, timeout, delay=MS or none (got ${got(m.fault)})`);
      for (const key of ['type', 'values', 'ttl']) if (key in m) fail([...path, key], 'a fault has no records: use types: [TXT, ...] to limit it');
      const types = optional(m.types, (v) => list(v, [...path, 'types']).map((t, i) => oneOf(String(t).toUpperCase(), [...path, 'types', i], RECORD_TYPES)));
      return { name, fault: m.fault as string, ...(types && { types }) };
    }
    if ('types' in m) fail([...path, 'types'], 'only a fault has types');
    const type = oneOf(String(m.type ?? '').toUpperCase(), [...path, 'type'], RECORD_TYPES);
    const values = list(m.values, [...path, 'values']).map((v, i) => {
      if (typeof v !== 'string') fail([...path, 'values', i], `expected the record as text (got ${got(v)})`);
      return v as string;
    });
    const ttl = optional(m.ttl, (v) => {
      if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 86400) fail([...path, 'ttl'], `expected seconds, 0 to 86400 (got ${got(v)})`);
      return v as number;
    });
    return { name, type, values, ...(ttl !== undefined && { ttl }) };
  };
  const dnsChanges = (value: unknown, path: Path) => (value === undefined ? [] : list(value, path).map((c, i) => dnsChange(c, [...path, i])));

  const expectation = (value: unknown, path: Path): Expect => {
    const m = mapping(value, path, ['spf', 'dkim', 'dmarc', 'arc', 'policy', 'disposition', 'code', 'arcOverride', 'reason', 'headers', 'report', 'failureReport']);
    if (Object.keys(m).length === 0) fail(path, 'expected at least one check');
    const result = (key: string) => optional(m[key], (v) => oneOf(v, [...path, key], RESULTS));
    const dkim = optional(m.dkim, (v) => {
      if (typeof v === 'string') return oneOf(v, [...path, 'dkim'], RESULTS);
      return list(v, [...path, 'dkim']).map((d, i): DkimExpectation => {
        const at = [...path, 'dkim', i];
        if (typeof d === 'string') return { result: oneOf(d, at, RESULTS) };
        const s = mapping(d, at, ['result', 'domain', 'selector', 'algorithm', 'aligned']);
        if (s.aligned !== undefined && typeof s.aligned !== 'boolean') fail([...at, 'aligned'], 'expected true or false');
        return {
          ...(s.result !== undefined && { result: oneOf(s.result, [...at, 'result'], RESULTS) }),
          ...(s.domain !== undefined && { domain: text(s.domain, [...at, 'domain'], 'a domain') }),
          ...(s.selector !== undefined && { selector: text(s.selector, [...at, 'selector'], 'a selector') }),
          ...(s.algorithm !== undefined && { algorithm: oneOf(s.algorithm, [...at, 'algorithm'], ALGORITHMS) }),
          ...(s.aligned !== undefined && { aligned: s.aligned as boolean }),
        };
      });
    });
    const code = optional(m.code, (v) => {
      if (typeof v !== 'string' || !/^[2-5]\d\d [2-5]\.\d{1,3}\.\d{1,3}$/.test(v)) fail([...path, 'code'], `expected a reply code and enhanced code, e.g. "550 5.7.1" (got ${got(v)})`);
      return v as string;
    });
    if (m.arcOverride !== undefined && typeof m.arcOverride !== 'boolean') fail([...path, 'arcOverride'], 'expected true or false');
    const expect: Expect = {
      spf: result('spf'),
      dkim,
      dmarc: result('dmarc'),
      arc: result('arc'),
      policy: optional(m.policy, (v) => oneOf(v, [...path, 'policy'], POLICIES)),
      disposition: optional(m.disposition, (v) => oneOf(v, [...path, 'disposition'], DISPOSITIONS)) as Expect['disposition'],
      code,
      arcOverride: m.arcOverride as boolean | undefined,
      reason: optional(m.reason, (v) => text(v, [...path, 'reason'], 'text the decision\'s reason contains')),
      headers: optional(m.headers, (v) => fields(v, [...path, 'headers'])),
      report: optional(m.report, (v) => reportExpectation(v, [...path, 'report'])),
      failureReport: optional(m.failureReport, (v) => {
        const f = mapping(v, [...path, 'failureReport'], ['to', 'fields']);
        return { to: address(f.to, [...path, 'failureReport', 'to']), fields: f.fields === undefined ? {} : fields(f.fields, [...path, 'failureReport', 'fields']) };
      }),
    };
    return Object.fromEntries(Object.entries(expect).filter(([, v]) => v !== undefined)) as Expect;
  };
  const reportExpectation = (value: unknown, path: Path): ReportExpect => {
    const m = mapping(value, path, ['sent', 'to', 'refused', 'rows']);
    if (m.sent !== undefined && typeof m.sent !== 'boolean') fail([...path, 'sent'], 'expected true or false');
    const rows = optional(m.rows, (v) =>
      list(v, [...path, 'rows']).map((r, i) => {
        const at = [...path, 'rows', i];
        const row = mapping(r, at, ['source', 'count', 'dmarc', 'disposition']);
        if (typeof row.source !== 'string' || !/^\d+\.\d+\.\d+\.\d+$/.test(row.source)) fail([...at, 'source'], `expected the source's IPv4 address (got ${got(row.source)})`);
        if (row.count !== undefined && (!Number.isInteger(row.count) || (row.count as number) < 0)) fail([...at, 'count'], `expected a number of messages (got ${got(row.count)})`);
        return {
          source: row.source as string,
          ...(row.count !== undefined && { count: row.count as number }),
          ...(row.dmarc !== undefined && { dmarc: oneOf(row.dmarc, [...at, 'dmarc'], ['pass', 'fail']) as 'pass' | 'fail' }),
          ...(row.disposition !== undefined && { disposition: oneOf(row.disposition, [...at, 'disposition'], POLICIES) }),
        };
      }),
    );
    return {
      ...(m.sent !== undefined && { sent: m.sent as boolean }),
      ...(m.to !== undefined && { to: addresses(m.to, [...path, 'to']) }),
      ...(m.refused !== undefined && { refused: text(m.refused, [...path, 'refused'], "text a refused destination's reason contains") }),
      ...(rows && { rows }),
    };
  };

  const top = mapping(doc, [], ['name', 'title', 'lesson', 'failureReports', 'dns', 'steps']);
  if (top.failureReports !== undefined && typeof top.failureReports !== 'boolean') fail(['failureReports'], 'expected true or false');
  const name = text(top.name, ['name'], 'the scenario name');
  const base = basename(file).replace(/\.ya?ml$/, '');
  if (name !== base) fail(['name'], `expected "${base}", the file's name (got ${got(name)})`);
  const ids = new Map<string, number>(); // step id -> index
  const steps: Step[] = [];
  for (const [i, raw] of list(top.steps, ['steps']).entries()) {
    const path: Path = ['steps', i];
    const id = optional((raw as Record<string, unknown>)?.id, (v) => text(v, [...path, 'id'], 'a name for the step'));
    if (typeof raw === 'object' && raw !== null && 'report' in raw) {
      // A report: step sends nothing; it checks the report the lab sends now.
      const r = mapping(raw, path, ['title', 'id', 'dns', 'report', 'expect']);
      const expect = expectation(r.expect, [...path, 'expect']);
      if (!expect.report || Object.keys(expect).length !== 1) fail([...path, 'expect'], 'a report: step expects report: only');
      steps.push({
        title: text(r.title, [...path, 'title'], 'a title: what happens in this step'),
        id,
        dns: dnsChanges(r.dns, [...path, 'dns']),
        report: text(r.report, [...path, 'report'], 'the domain whose DMARC report is checked').toLowerCase(),
        to: [],
        headers: {},
        sign: [],
        observe: '',
        expect,
      });
      if (id) ids.set(id, i);
      continue;
    }
    const m = mapping(raw, path, ['title', 'id', 'dns', 'via', 'direct', 'retryOf', 'replay', 'from', 'fromFields', 'mailFrom', 'to', 'subject', 'headers', 'body', 'sign', 'tamper', 'observe', 'expect']);
    const earlier = (key: string) =>
      optional(m[key], (v) => {
        if (typeof v !== 'string' || !ids.has(v)) fail([...path, key], `expected the id of an earlier step (${[...ids.keys()].join(', ') || 'none has one'}), got ${got(v)}`);
        return v as string;
      });
    const ways = ['via', 'direct', 'retryOf'].filter((k) => m[k] !== undefined);
    if (ways.length !== 1) fail(path, `expected exactly one of via: (submission), direct: (the runner speaks SMTP) or retryOf: (the queue tries again) (got ${ways.join(', ') || 'none'})`);
    const instance = (key: string) => optional(m[key], (v) => oneOf(v, [...path, key], instances));
    const retryOf = earlier('retryOf');
    const replay = earlier('replay');
    if (retryOf) {
      for (const key of ['replay', 'from', 'fromFields', 'mailFrom', 'to', 'subject', 'headers', 'body', 'sign', 'tamper', 'observe']) {
        if (key in m) fail([...path, key], 'retryOf sends nothing new: the earlier step says what was sent');
      }
    }
    if (replay) {
      if (m.direct === undefined) fail([...path, 'replay'], 'a replay is sent with direct: (the stored copy, as it is)');
      for (const key of ['from', 'fromFields', 'subject', 'headers', 'body', 'sign']) if (key in m) fail([...path, key], 'a replay sends the stored copy as it is');
      if (m.mailFrom === undefined) fail([...path, 'mailFrom'], 'expected the envelope sender of the replay (e.g. mallory@attacker.test)');
    }
    if (m.fromFields !== undefined) {
      if (m.from !== undefined) fail([...path, 'fromFields'], 'expected from: or fromFields:, not both');
      if (m.direct === undefined) fail([...path, 'fromFields'], 'From fields written by hand are sent with direct: (a submitting MTA would fix them)');
      if (m.mailFrom === undefined) fail([...path, 'mailFrom'], 'expected the envelope sender: fromFields does not say one');
    } else if (!retryOf && !replay && m.from === undefined) fail([...path, 'from'], 'expected the From: address (e.g. alice@sender.test or "Alice <alice@sender.test>")');
    if (m.via !== undefined && (m.sign !== undefined || m.tamper !== undefined)) fail([...path, m.sign !== undefined ? 'sign' : 'tamper'], 'the submitting MTA signs what it sends: use direct: to sign and tamper by hand');
    const from = optional(m.from, (v) => text(v, [...path, 'from'], 'the From: address'));
    const fromFields = optional(m.fromFields, (v) =>
      list(v, [...path, 'fromFields']).map((f, j) => {
        if (typeof f !== 'string' || /[\r\n]/.test(f)) fail([...path, 'fromFields', j], `expected a From field's value on one line (got ${got(f)})`);
        return f as string;
      }),
    );
    const fromAddress = from && address(/<([^<>]+)>\s*$/.exec(from)?.[1] ?? from, [...path, 'from']);
    const to = retryOf ? steps[ids.get(retryOf)!].to : addresses(m.to, [...path, 'to']);
    if (m.direct !== undefined && new Set(to.map((a) => a.split('@')[1])).size > 1) fail([...path, 'to'], 'expected recipients in one domain: direct: is one SMTP session with one MX');
    const sign = m.sign === undefined ? [] : (Array.isArray(m.sign) ? m.sign : [m.sign]).map((s, j) => {
      const at = Array.isArray(m.sign) ? [...path, 'sign', j] : [...path, 'sign'];
      const k = mapping(s, at, ['domain', 'selector', 'algorithm']);
      return {
        domain: text(k.domain, [...at, 'domain'], 'the signing domain (d=)'),
        selector: text(k.selector, [...at, 'selector'], 'the selector (s=)'),
        ...(k.algorithm !== undefined && { algorithm: oneOf(k.algorithm, [...at, 'algorithm'], ALGORITHMS) }),
      };
    });
    const tamper = optional(m.tamper, (v) => {
      const t = mapping(v, [...path, 'tamper'], ['body', 'subject', 'headers']);
      return {
        ...(t.body !== undefined && { body: text(t.body, [...path, 'tamper', 'body'], 'the new body') }),
        ...(t.subject !== undefined && { subject: text(t.subject, [...path, 'tamper', 'subject'], 'the new Subject') }),
        ...(t.headers !== undefined && { headers: fields(t.headers, [...path, 'tamper', 'headers']) }),
      };
    });
    const step: Step = {
      title: text(m.title, [...path, 'title'], 'a title: what happens in this step'),
      id,
      dns: dnsChanges(m.dns, [...path, 'dns']),
      via: instance('via'),
      direct: instance('direct'),
      retryOf,
      replay,
      from,
      fromFields,
      mailFrom: optional(m.mailFrom, (v) => (v === '' ? '' : address(v, [...path, 'mailFrom']))) ?? fromAddress,
      to,
      subject: optional(m.subject, (v) => text(v, [...path, 'subject'])),
      headers: optional(m.headers, (v) => fields(v, [...path, 'headers'])) ?? {},
      body: optional(m.body, (v) => text(v, [...path, 'body'])),
      sign,
      tamper,
      observe: retryOf ? steps[ids.get(retryOf)!].observe : (optional(m.observe, (v) => address(v, [...path, 'observe'])) ?? to[0]),
      expect: expectation(m.expect, [...path, 'expect']),
    };
    if (step.expect.report) fail([...path, 'expect', 'report'], 'only a report: step checks a report');
    if (id) {
      if (ids.has(id)) fail([...path, 'id'], `expected a new id: step ${ids.get(id)! + 1} has "${id}" already`);
      ids.set(id, i);
    }
    steps.push(step);
  }
  if (steps.length === 0) fail(['steps'], 'expected at least one step');
  return {
    file,
    name,
    title: text(top.title, ['title'], 'a title: one line'),
    lesson: text(top.lesson, ['lesson'], 'the lesson: a few sentences a student reads').trim(),
    failureReports: top.failureReports === true,
    dns: dnsChanges(top.dns, ['dns']),
    steps,
  };
}
