// The exercises (exercises/NN-id.yaml): what a student is asked to do, the
// hints, and the checks the lab runs against that student's domain. Checked
// by hand when the receiver starts, like the scenarios: a mistake is
// reported as `file:line: path.in.file: what was expected`.
//
//   id: spf                        # the name in URLs and commands
//   number: 3                      # the order of the course
//   title: ...
//   minutes: 15                    # how long it takes in class, roughly
//   goal: |                        # in a student's words; {name} {domain} {address} {code} are filled in
//   hints: [...]                   # revealed one at a time
//   checks:                        # run in order; each says pass or fail and why
//     - title: ...
//       check: spf-record          # a look at the student's DNS (lookups.ts) ...
//       all: fail
//     - title: ...
//       probe: own                 # ... or a fresh message and the receiver's decision (probes.ts)
//       expect: { spf: pass }
//       mistake: ...               # optional: what failing this check usually means
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readYamlFile, type Path } from '../../lib/yaml-file.ts';

export const EXERCISE_DIR = new URL('../../../exercises/', import.meta.url).pathname;

export const LOOKUPS = ['by-hand', 'mx', 'spf-record', 'spf-authorises', 'dkim-key', 'dmarc-record', 'host'] as const;
export const PROBES = ['own', 'spoof', 'spoof-subdomain', 'spoof-nonexistent', 'lab', 'alias', 'list'] as const;
export type Lookup = (typeof LOOKUPS)[number];
export type ProbeName = (typeof PROBES)[number];

const RESULTS = ['pass', 'fail', 'softfail', 'neutral', 'none', 'temperror', 'permerror'];
const DISPOSITIONS = ['inbox', 'junk', 'reject'];
const POLICIES = ['none', 'quarantine', 'reject'];

export interface ProbeExpect {
  spf?: string;
  dkim?: string; // pass: a signature of the student's domain passes
  dmarc?: string;
  policy?: string[]; // the policy the receiver applied, one of these
  disposition?: string;
  arcOverride?: boolean;
  alignment?: 'strict'; // both identifiers under strict alignment
}

export type Check =
  | { title: string; mistake?: string; check: Lookup; params: Record<string, unknown> }
  | { title: string; mistake?: string; probe: ProbeName; expect: ProbeExpect };

export interface Exercise {
  file: string;
  id: string;
  number: number;
  title: string;
  minutes: number;
  goal: string;
  hints: string[];
  checks: Check[];
}

export class ExerciseError extends Error {}

// What each lookup takes (lookups.ts reads them).
const LOOKUP_PARAMS: Record<Lookup, string[]> = {
  'by-hand': [],
  mx: [],
  'spf-record': ['all'],
  'spf-authorises': ['addresses'],
  'dkim-key': [],
  'dmarc-record': ['p', 'sp', 'np', 'adkim', 'aspf', 'rua'],
  host: ['name'],
};

export function loadExercises(dir = EXERCISE_DIR): Exercise[] {
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();
  const exercises = files.map((f) => loadExercise(join(dir, f)));
  const seen = new Map<string, string>();
  for (const e of exercises) {
    for (const key of [e.id, String(e.number)]) {
      if (seen.has(key)) throw new ExerciseError(`${e.file}: ${key} is also ${seen.get(key)}'s: ids and numbers are unique`);
      seen.set(key, e.file);
    }
  }
  return exercises.sort((a, b) => a.number - b.number);
}

export function loadExercise(file: string): Exercise {
  const { value, fail } = readYamlFile(file, (message) => new ExerciseError(message));
  const got = (value: unknown) => (value === undefined ? 'nothing' : JSON.stringify(value));
  const mapping = (value: unknown, path: Path, keys: string[]): Record<string, unknown> => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(path, `expected a mapping with ${keys.join(', ')} (got ${got(value)})`);
    for (const key of Object.keys(value as object)) if (!keys.includes(key)) fail([...path, key], `unknown key (expected one of ${keys.join(', ')})`);
    return value as Record<string, unknown>;
  };
  const text = (value: unknown, path: Path, what = 'text'): string => {
    if (typeof value !== 'string' || value.trim() === '') fail(path, `expected ${what} (got ${got(value)})`);
    return (value as string).trim();
  };
  const oneOf = (value: unknown, path: Path, allowed: readonly string[]): string => {
    if (typeof value !== 'string' || !allowed.includes(value)) fail(path, `expected one of ${allowed.join(', ')} (got ${got(value)})`);
    return value as string;
  };
  const whole = (value: unknown, path: Path, min: number, max: number): number => {
    if (!Number.isInteger(value) || (value as number) < min || (value as number) > max) fail(path, `expected a whole number from ${min} to ${max} (got ${got(value)})`);
    return value as number;
  };

  const top = mapping(value, [], ['id', 'number', 'title', 'minutes', 'goal', 'hints', 'checks']);
  const id = text(top.id, ['id'], 'the exercise id');
  if (!/^[a-z][a-z0-9-]{0,40}$/.test(id)) fail(['id'], `expected lower-case letters, digits and hyphens (got ${got(id)})`);
  if (!Array.isArray(top.hints) || top.hints.length === 0) fail(['hints'], 'expected a list of hints, at least one');
  if (!Array.isArray(top.checks) || top.checks.length === 0) fail(['checks'], 'expected a list of checks, at least one');

  const expectation = (value: unknown, path: Path): ProbeExpect => {
    const m = mapping(value, path, ['spf', 'dkim', 'dmarc', 'policy', 'disposition', 'arcOverride', 'alignment']);
    if (Object.keys(m).length === 0) fail(path, 'expected at least one thing to check');
    const result = (key: string) => (m[key] === undefined ? undefined : oneOf(m[key], [...path, key], RESULTS));
    const policy = m.policy === undefined ? undefined : (Array.isArray(m.policy) ? m.policy : [m.policy]).map((p, i) => oneOf(p, [...path, 'policy', i], POLICIES));
    if (m.arcOverride !== undefined && typeof m.arcOverride !== 'boolean') fail([...path, 'arcOverride'], 'expected true or false');
    return {
      ...(m.spf !== undefined && { spf: result('spf') }),
      ...(m.dkim !== undefined && { dkim: result('dkim') }),
      ...(m.dmarc !== undefined && { dmarc: result('dmarc') }),
      ...(policy && { policy }),
      ...(m.disposition !== undefined && { disposition: oneOf(m.disposition, [...path, 'disposition'], DISPOSITIONS) }),
      ...(m.arcOverride !== undefined && { arcOverride: m.arcOverride as boolean }),
      ...(m.alignment !== undefined && { alignment: oneOf(m.alignment, [...path, 'alignment'], ['strict']) as 'strict' }),
    };
  };

  const checks = (top.checks as unknown[]).map((value, i): Check => {
    const path = ['checks', i];
    const raw = value as Record<string, unknown>;
    const common = { title: text(raw?.title, [...path, 'title'], 'what the check looks for, as a title') };
    const mistake = raw.mistake === undefined ? {} : { mistake: text(raw.mistake, [...path, 'mistake'], 'what failing this usually means') };
    if ('probe' in (raw ?? {})) {
      const m = mapping(raw, path, ['title', 'probe', 'expect', 'mistake']);
      return { ...common, ...mistake, probe: oneOf(m.probe, [...path, 'probe'], PROBES) as ProbeName, expect: expectation(m.expect, [...path, 'expect']) };
    }
    const kind = oneOf(raw?.check, [...path, 'check'], LOOKUPS) as Lookup;
    const m = mapping(raw, path, ['title', 'check', 'mistake', ...LOOKUP_PARAMS[kind]]);
    const params: Record<string, unknown> = {};
    for (const key of LOOKUP_PARAMS[kind]) if (m[key] !== undefined) params[key] = m[key];
    if (kind === 'spf-authorises' && (!Array.isArray(params.addresses) || params.addresses.length === 0 || !params.addresses.every((a) => typeof a === 'string' && /^\d+\.\d+\.\d+\.\d+$/.test(a)))) {
      fail([...path, 'addresses'], 'expected a list of IPv4 addresses');
    }
    if (kind === 'spf-record' && params.all !== undefined) oneOf(params.all, [...path, 'all'], ['fail', 'softfail']);
    if (kind === 'host') text(params.name, [...path, 'name'], 'a name below the student\'s domain, e.g. shop');
    if (kind === 'dmarc-record') {
      for (const tag of ['p', 'sp', 'np']) if (params[tag] !== undefined) oneOf(params[tag], [...path, tag], POLICIES);
      for (const tag of ['adkim', 'aspf']) if (params[tag] !== undefined) oneOf(params[tag], [...path, tag], ['r', 's']);
      if (params.rua !== undefined) oneOf(params.rua, [...path, 'rua'], ['own']);
    }
    return { ...common, ...mistake, check: kind, params };
  });

  return {
    file,
    id,
    number: whole(top.number, ['number'], 1, 99),
    title: text(top.title, ['title']),
    minutes: whole(top.minutes, ['minutes'], 1, 180),
    goal: text(top.goal, ['goal'], "the goal, in a student's words"),
    hints: (top.hints as unknown[]).map((h, i) => text(h, ['hints', i], 'a hint, as text')),
    checks,
  };
}
