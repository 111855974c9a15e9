// A class: one lab serving a whole class, every student with a domain of
// their own (DESIGN.md, "Classroom"). The teacher writes the class file; `npm
// run lab -- class init` gives the teacher and each student a credential,
// printed once and kept here only as a hash. The DNS, the sender and the
// receiver read both from the class directory (LAB_CLASS_DIR), so that each
// checks a credential by itself, with nothing shared at run time. `init`
// also makes the lab's own credential, the grader's, which the exercise
// checks use as the teacher's and to submit mail for a student; the lab
// needs it itself, so it is kept in the class directory (grader.credential).
//
// class.yaml:
//   name: Mail security 101          # shown in the console
//   students: [ana, ben, chloe]      # each a DNS label
//   # or: students: { count: 100, prefix: student }   student001 ... student100
//   domain: "{student}.test"         # optional: each student's domain
//
// A mistake is reported as `file:line: key: what was expected`, like the scenarios'.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readYamlFile } from './yaml-file.ts';

export const CLASS_FILE = 'class.yaml';
export const CREDENTIALS_FILE = 'credentials.json';
export const TEACHER = 'teacher';
export const GRADER = 'grader';
export const GRADER_FILE = 'grader.credential';
// Instances with a part in the class (DESIGN.md, "The lab world"): students'
// mailboxes are at the receiver, their submission and DKIM keys at the sender.
export const MAILBOXES_AT = 'receiver';
export const SUBMISSION_AT = 'sender';
// Each student's alias and mailing list are at the forwarder (forward.ts).
export const FORWARDING_AT = 'forwarder';

const LABEL = /^[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?$/;

// A class at work opens more connections than a lab's few tools: every
// student's console holds a stream of events and fetches beside it. The
// HTTP servers (MTA API, DNS control) take these many at once, and the API
// this many live consoles; each client address stays limited (lib/http.ts).
export const connectionsFor = (classroom: Classroom | undefined, base: number) => base + 4 * (classroom?.students.length ?? 0);
export const consolesFor = (classroom: Classroom | undefined, base: number) => base + 2 * (classroom?.students.length ?? 0);
const MAX_STUDENTS = 500;

export interface Student {
  name: string; // a DNS label: ana
  domain: string; // ana.test
  address: string; // ana@ana.test: the mailbox and the submission login
}

export interface ClassFile {
  file: string;
  name: string;
  students: Student[];
}

// The grader (the lab's exercise checks) may do what the teacher may.
export type Identity = { role: 'teacher'; grader?: true } | { role: 'student'; student: Student };

export class ClassError extends Error {}

export function loadClassFile(file: string): ClassFile {
  const { value, fail } = readYamlFile(file, (message) => new ClassError(message));
  const got = (value: unknown) => (value === undefined ? 'nothing' : JSON.stringify(value));
  const top = value as Record<string, unknown> | null;
  if (typeof top !== 'object' || top === null || Array.isArray(top)) return fail([], 'expected a mapping with name, students and domain');
  for (const key of Object.keys(top)) if (!['name', 'students', 'domain'].includes(key)) fail([key], 'unknown key (expected one of name, students, domain)');
  if (typeof top.name !== 'string' || !top.name.trim()) fail(['name'], `expected the class's name, as text (got ${got(top.name)})`);

  const pattern = top.domain ?? '{student}.test';
  if (typeof pattern !== 'string' || !pattern.includes('{student}')) fail(['domain'], `expected a domain with {student} in it, like "{student}.test" (got ${got(pattern)})`);

  let names: string[] = [];
  const students = top.students;
  if (Array.isArray(students)) {
    names = students.map((s, i) => {
      if (typeof s !== 'string' || !LABEL.test(s)) fail(['students', i], `expected a student's name: lower-case letters, digits and hyphens, at most 30 (got ${got(s)})`);
      return s as string;
    });
  } else if (typeof students === 'object' && students !== null) {
    const { count, prefix, ...rest } = students as Record<string, unknown>;
    for (const key of Object.keys(rest)) fail(['students', key], 'unknown key (expected count and prefix)');
    if (!Number.isInteger(count) || (count as number) < 1 || (count as number) > MAX_STUDENTS) fail(['students', 'count'], `expected a whole number from 1 to ${MAX_STUDENTS} (got ${got(count)})`);
    if (typeof prefix !== 'string' || !/^[a-z][a-z0-9-]{0,19}$/.test(prefix)) fail(['students', 'prefix'], `expected the start of each name: lower-case letters, digits and hyphens (got ${got(prefix)})`);
    const width = String(count).length;
    names = Array.from({ length: count as number }, (_, i) => `${prefix}${String(i + 1).padStart(width, '0')}`);
  } else {
    fail(['students'], `expected a list of names, or { count, prefix } (got ${got(students)})`);
  }
  if (names.length === 0) fail(['students'], 'expected at least one student');
  if (names.length > MAX_STUDENTS) fail(['students'], `at most ${MAX_STUDENTS} students in one lab (got ${names.length})`);
  const seen = new Set<string>();
  names.forEach((name, i) => {
    if (name === TEACHER) fail(['students', i], `"${TEACHER}" is the teacher's login: give the student another name`);
    if (name === GRADER) fail(['students', i], `"${GRADER}" is the lab's own login, for the exercise checks: give the student another name`);
    if (seen.has(name)) fail(['students', i], `${name} is listed twice`);
    seen.add(name);
  });
  const result = names.map((name) => {
    const domain = (pattern as string).replaceAll('{student}', name).toLowerCase();
    if (domain.length > 200 || !domain.split('.').every((label) => LABEL.test(label)) || !domain.includes('.')) fail(['domain'], `"${pattern}" gives ${domain} for ${name}, which is not a domain name`);
    return { name, domain, address: `${name}@${domain}` };
  });
  return { file, name: (top.name as string).trim(), students: result };
}

// The class in a class directory, or undefined when it has no class file
// (the lab without a class). LAB_CLASS_DIR names the directory.
export function loadClass(dir: string | undefined): Classroom | undefined {
  if (!dir || !existsSync(join(dir, CLASS_FILE))) return undefined;
  const classFile = loadClassFile(join(dir, CLASS_FILE));
  const file = join(dir, CREDENTIALS_FILE);
  if (!existsSync(file)) throw new ClassError(`${file}: missing: run \`npm run lab -- class init\` to give the class its credentials`);
  const credentials = readCredentials(file);
  // A class made before the grader existed has none: the lab runs, without checks.
  const graderFile = join(dir, GRADER_FILE);
  const grader = existsSync(graderFile) ? readGrader(graderFile) : undefined;
  if (grader !== undefined && credentials.hashes[GRADER] !== hash(grader)) {
    throw new ClassError(`${graderFile}: not the grader credential that ${file} knows: run \`npm run lab -- class init\` to make a new one`);
  }
  return new Classroom(classFile, credentials, grader);
}

function readGrader(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (error) {
    throw new ClassError(`${file}: cannot read: ${(error as Error).message}`);
  }
}

// The credentials file: a SHA-256 of each credential, never the credential.
// A credential is 120 random bits, so a fast hash is as good as a slow one.
interface Credentials {
  version: 1;
  hashes: Record<string, string>; // login name (teacher, grader or a student) -> hex SHA-256
}

function readCredentials(file: string): Credentials {
  let parsed: Credentials;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8')) as Credentials;
  } catch (error) {
    throw new ClassError(`${file}: cannot read: ${(error as Error).message}`);
  }
  if (parsed?.version !== 1 || typeof parsed.hashes !== 'object' || parsed.hashes === null) throw new ClassError(`${file}: not a credentials file (version 1, hashes)`);
  return parsed;
}

const SECRET = 20; // characters after "<name>-" in a credential
const hash = (credential: string) => createHash('sha256').update(credential).digest('hex');
const newCredential = (name: string) => `${name}-${randomBytes(15).toString('base64url').replace(/[-_]/g, 'x')}`; // SECRET characters

export class Classroom {
  readonly classFile: ClassFile;
  readonly grader: string | undefined; // the grader credential, for the lab's own checks
  private credentials: Credentials;
  private byName: Map<string, Student>;
  private byDomain: Map<string, Student>;

  constructor(classFile: ClassFile, credentials: Credentials, grader?: string) {
    this.classFile = classFile;
    this.credentials = credentials;
    this.grader = grader;
    this.byName = new Map(classFile.students.map((s) => [s.name, s]));
    this.byDomain = new Map(classFile.students.map((s) => [s.domain, s]));
  }

  get name(): string {
    return this.classFile.name;
  }

  get students(): Student[] {
    return this.classFile.students;
  }

  student(name: string): Student | undefined {
    return this.byName.get(name);
  }

  // The student whose domain holds this name (the domain itself or below it).
  studentOf(name: string): Student | undefined {
    const lower = name.toLowerCase().replace(/\.$/, '');
    for (let candidate = lower; candidate.includes('.'); candidate = candidate.slice(candidate.indexOf('.') + 1)) {
      const student = this.byDomain.get(candidate);
      if (student) return student;
    }
    return undefined;
  }

  // Who a credential belongs to; undefined for one that is no one's. A
  // credential starts with its owner's name ("ana-..."), which finds the
  // hash to compare; the comparison takes the same time whatever matches.
  identify(credential: string): Identity | undefined {
    const name = credential.length > SECRET + 1 && credential.at(-SECRET - 1) === '-' ? credential.slice(0, -SECRET - 1) : '';
    const expected = Object.hasOwn(this.credentials.hashes, name) ? this.credentials.hashes[name] : undefined;
    if (!expected) return undefined;
    if (!timingSafeEqual(Buffer.from(hash(credential), 'hex'), Buffer.from(expected, 'hex'))) return undefined;
    if (name === TEACHER) return { role: 'teacher' };
    if (name === GRADER) return { role: 'teacher', grader: true };
    const student = this.byName.get(name);
    return student && { role: 'student', student };
  }
}

// `class init`: a credential for the teacher and each student who has none
// (all, or the names given, with reset). Returns the new credentials, to be
// printed once; the file keeps their hashes only. The grader credential is
// made when the class directory has none (or a reset names it) and kept in
// the directory, where the services read it.
export function issueCredentials(dir: string, reset: string[] | 'all' = []): { classFile: ClassFile; issued: Map<string, string>; grader: 'issued' | 'kept' } {
  const classFile = loadClassFile(join(dir, CLASS_FILE));
  const file = join(dir, CREDENTIALS_FILE);
  const existing = existsSync(file) ? readCredentials(file) : { version: 1 as const, hashes: {} };
  const names = [TEACHER, ...classFile.students.map((s) => s.name)];
  for (const name of reset === 'all' ? [] : reset) {
    if (!names.includes(name) && name !== GRADER) throw new ClassError(`${name}: not in ${classFile.file} (the teacher is "${TEACHER}", the lab's checks "${GRADER}")`);
  }
  const renew = (name: string) => reset === 'all' || reset.includes(name);
  const issued = new Map<string, string>();
  const hashes: Record<string, string> = {};
  for (const name of names) {
    const keep = !renew(name) && existing.hashes[name];
    if (keep) {
      hashes[name] = keep;
      continue;
    }
    const credential = newCredential(name);
    issued.set(name, credential);
    hashes[name] = hash(credential);
  }
  // Students no longer in the class file lose their credential.
  const graderFile = join(dir, GRADER_FILE);
  const current = existsSync(graderFile) ? readGrader(graderFile) : '';
  const keepGrader = !renew(GRADER) && current !== '' && existing.hashes[GRADER] === hash(current);
  if (keepGrader) {
    hashes[GRADER] = existing.hashes[GRADER];
  } else {
    const grader = newCredential(GRADER);
    writeReadable(graderFile, `${grader}\n`);
    hashes[GRADER] = hash(grader);
  }
  // Hashes of 120 random bits reveal nothing.
  writeReadable(file, `${JSON.stringify({ version: 1, hashes } satisfies Credentials, null, 2)}\n`);
  return { classFile, issued, grader: keepGrader ? 'kept' : 'issued' };
}

// Mode 0644 whatever the umask: under Docker the services run as user node
// and read the class directory, mounted read-only, as it is on the host.
function writeReadable(file: string, text: string): void {
  const temporary = `${file}.tmp`;
  writeFileSync(temporary, text, { mode: 0o644 });
  chmodSync(temporary, 0o644);
  renameSync(temporary, file);
}
