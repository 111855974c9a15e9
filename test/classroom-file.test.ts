// The class file and the class's credentials (services/lib/classroom.ts):
// mistakes reported at their line, names and domains as the README says, and
// a credential that identifies its owner and no one else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
