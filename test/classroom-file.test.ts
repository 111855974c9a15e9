// The class file and the class's credentials (services/lib/classroom.ts):
// mistakes reported at their line, names and domains as the README says, and
// a credential that identifies its owner and no one else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issueCredentials, loadClass, loadClassFile } from '../services/lib/classroom.ts';

function classDir(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'class-'));
  writeFileSync(join(dir, 'class.yaml'), text);
  return dir;
}

test('a list of students: each gets <name>.test and the address <name>@<name>.test', () => {
  const dir = classDir('name: Mail security 101\nstudents: [ana, ben-2]\n');
  const c = loadClassFile(join(dir, 'class.yaml'));
  assert.equal(c.name, 'Mail security 101');
  assert.deepEqual(c.students, [
    { name: 'ana', domain: 'ana.test', address: 'ana@ana.test' },
    { name: 'ben-2', domain: 'ben-2.test', address: 'ben-2@ben-2.test' },
  ]);
  rmSync(dir, { recursive: true });
});

test('a count and a prefix, and a domain pattern', () => {
  const dir = classDir('name: Big class\nstudents: { count: 100, prefix: s }\ndomain: "{student}.class.test"\n');
  const c = loadClassFile(join(dir, 'class.yaml'));
  assert.equal(c.students.length, 100);
  assert.deepEqual(c.students[0], { name: 's001', domain: 's001.class.test', address: 's001@s001.class.test' });
  assert.equal(c.students[99].name, 's100');
  rmSync(dir, { recursive: true });
});

test('mistakes are reported with the file, the line and the key', () => {
  const cases: [string, RegExp][] = [
    ['name: x\nstudents: [ana, Ana]\n', /class\.yaml:2: students\[1\]: expected a student's name/],
    ['name: x\nstudents: [ana, ana]\n', /class\.yaml:2: students\[1\]: ana is listed twice/],
    ['name: x\nstudents: [teacher]\n', /students\[0\]: "teacher" is the teacher's login/],
    ['name: x\nstudents: [ana, grader]\n', /class\.yaml:2: students\[1\]: "grader" is the lab's own login, for the exercise checks/],
    ['name: x\nstudents:\n  count: 0\n  prefix: s\n', /class\.yaml:3: students\.count: expected a whole number from 1 to 500/],
    ['name: x\nstudents: [ana]\ndomain: "lab.test"\n', /class\.yaml:3: domain: expected a domain with \{student\} in it/],
    ['name: x\nstudents: [ana]\nteachers: [t]\n', /class\.yaml:3: teachers: unknown key/],
    ['students: [ana]\n', /class\.yaml: name: expected the class's name/],
    ['name: x\nstudents: [ana\n', /class\.yaml:\d+: not valid YAML/],
  ];
  for (const [text, expected] of cases) {
    const dir = classDir(text);
    assert.throws(() => loadClassFile(join(dir, 'class.yaml')), expected, text);
    rmSync(dir, { recursive: true });
  }
});

test('credentials: issued once, kept as hashes, each identifying its owner only; a reset replaces one', () => {
  const dir = classDir('name: x\nstudents: [ana, ben]\n');
  assert.equal(loadClass(join(dir, 'nothing-here')), undefined, 'no class file: no class');
  assert.throws(() => loadClass(dir), /credentials\.json: missing: run `npm run lab -- class init`/);

  const { issued } = issueCredentials(dir);
  assert.deepEqual([...issued.keys()], ['teacher', 'ana', 'ben']);
  const file = readFileSync(join(dir, 'credentials.json'), 'utf8');
  for (const credential of issued.values()) assert.ok(!file.includes(credential), 'the file holds no credential');

  const classroom = loadClass(dir)!;
  assert.deepEqual(classroom.identify(issued.get('teacher')!), { role: 'teacher' });
  assert.equal((classroom.identify(issued.get('ana')!) as { student: { name: string } }).student.name, 'ana');
  const ana = issued.get('ana')!;
  for (const wrong of ['', 'ana', `ben-${ana.slice(4)}`, `${ana}x`, ana.slice(0, -1), 'teacher-' + 'x'.repeat(20), `__proto__-${'x'.repeat(20)}`]) {
    assert.equal(classroom.identify(wrong), undefined, wrong);
  }
  assert.equal(classroom.studentOf('_dmarc.ana.test')?.name, 'ana');
  assert.equal(classroom.studentOf('ana.test.')?.name, 'ana');
  assert.equal(classroom.studentOf('sender.test'), undefined);

  const again = issueCredentials(dir);
  assert.equal(again.issued.size, 0, 'a second init issues nothing new');
  const reset = issueCredentials(dir, ['ana']);
  assert.deepEqual([...reset.issued.keys()], ['ana']);
  const after = loadClass(dir)!;
  assert.equal(after.identify(ana), undefined, 'the old credential no longer works');
  assert.equal(after.identify(reset.issued.get('ana')!)?.role, 'student');
  assert.equal(after.identify(issued.get('ben')!)?.role, 'student', 'the others are kept');
  assert.throws(() => issueCredentials(dir, ['zoe']), /zoe: not in/);
  rmSync(dir, { recursive: true });
});

test("the grader credential: class init makes it once, in grader.credential (mode 0644 whatever the umask) with its hash beside the others'; it identifies as the teacher, marked grader; a reset renews it; one the hashes do not know stops the class", () => {
  const dir = classDir('name: x\nstudents: [ana]\n');
  const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
  const graderFile = join(dir, 'grader.credential');
  const umask = process.umask(0o077);
  let first: ReturnType<typeof issueCredentials>;
  try {
    first = issueCredentials(dir);
  } finally {
    process.umask(umask);
  }
  assert.equal(first.grader, 'issued');
  assert.ok(!first.issued.has('grader'), 'not among the credentials handed to people');
  assert.equal(statSync(graderFile).mode & 0o777, 0o644);
  assert.equal(statSync(join(dir, 'credentials.json')).mode & 0o777, 0o644);
  const grader = readFileSync(graderFile, 'utf8').trim();
  assert.match(grader, /^grader-[A-Za-z0-9]{20}$/);
  const hashes = JSON.parse(readFileSync(join(dir, 'credentials.json'), 'utf8')).hashes;
  assert.deepEqual(Object.keys(hashes).sort(), ['ana', 'grader', 'teacher']);
  assert.equal(hashes.grader, sha256(grader));

  const classroom = loadClass(dir)!;
  assert.equal(classroom.grader, grader);
  assert.deepEqual(classroom.identify(grader), { role: 'teacher', grader: true });
  assert.deepEqual(classroom.identify(first.issued.get('teacher')!), { role: 'teacher' });
  // One character changed (a fixed 'x' was the right one when the credential ended in x).
  assert.equal(classroom.identify(`${grader.slice(0, -1)}${grader.endsWith('x') ? 'y' : 'x'}`), undefined);

  // Kept by the next init, and by a reset of someone else.
  assert.equal(issueCredentials(dir).grader, 'kept');
  assert.equal(issueCredentials(dir, ['ana']).grader, 'kept');
  assert.equal(readFileSync(graderFile, 'utf8').trim(), grader);
  // --reset grader: a new one, and the old one no longer works.
  const reset = issueCredentials(dir, ['grader']);
  assert.equal(reset.grader, 'issued');
  assert.equal(reset.issued.size, 0);
  const renewed = loadClass(dir)!;
  assert.notEqual(renewed.grader, grader);
  assert.equal(renewed.identify(grader), undefined);
  assert.deepEqual(renewed.identify(renewed.grader!), { role: 'teacher', grader: true });

  // A grader.credential that credentials.json does not know stops the class, naming the file.
  writeFileSync(graderFile, `grader-${'x'.repeat(20)}\n`);
  assert.throws(() => loadClass(dir), /grader\.credential: not the grader credential that .*credentials\.json knows: run `npm run lab -- class init`/);
  assert.equal(issueCredentials(dir).grader, 'issued', 'init mends it');
  assert.deepEqual(loadClass(dir)!.identify(loadClass(dir)!.grader!), { role: 'teacher', grader: true });
  rmSync(dir, { recursive: true });
});

test('class init on a class made before the grader existed: the class loads without one, and init adds it, keeping every other credential', () => {
  const dir = classDir('name: Old class\nstudents: [ana]\n');
  const ana = 'ana-' + 'a'.repeat(20);
  const teacher = 'teacher-' + 't'.repeat(20);
  const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
  writeFileSync(join(dir, 'credentials.json'), JSON.stringify({ version: 1, hashes: { teacher: sha256(teacher), ana: sha256(ana) } }));
  assert.equal(loadClass(dir)!.grader, undefined);

  const output = execFileSync(process.execPath, [new URL('../scripts/lab.ts', import.meta.url).pathname, 'class', 'init', '--dir', dir], { encoding: 'utf8', timeout: 20_000 });
  assert.match(output, /The lab's own credential for the exercise checks \("grader"\) is new: .*grader\.credential/);
  assert.match(output, /Everyone already has a credential\./);
  assert.doesNotMatch(output, /grader-[A-Za-z0-9]{20}/, 'the credential itself is not printed');
  const classroom = loadClass(dir)!;
  assert.match(classroom.grader!, /^grader-[A-Za-z0-9]{20}$/);
  assert.deepEqual(classroom.identify(classroom.grader!), { role: 'teacher', grader: true });
  assert.deepEqual(classroom.identify(teacher), { role: 'teacher' });
  assert.equal((classroom.identify(ana) as { student: { name: string } }).student.name, 'ana');
  rmSync(dir, { recursive: true });
});
