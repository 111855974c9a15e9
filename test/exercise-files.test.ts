// The exercise files (exercises/*.yaml): every one loads, walks the course in
// order, and says only what the lab can fill in; a mistake in a file is
// reported at its line, as the scenarios' are.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExerciseError, loadExercise, loadExercises } from '../services/mta/exercises/catalogue.ts';

// What the receiver fills in (exercises/routes.ts).
const PLACEHOLDERS = ['name', 'domain', 'address', 'code', 'receiver', 'receiverAddress', 'sender', 'senderAddress', 'attacker', 'attackerAddress', 'forwarder'];

test('the course: at least 10 exercises numbered 1 to N, each with a goal, hints and checks', () => {
  const exercises = loadExercises();
  assert.ok(exercises.length >= 10);
  assert.deepEqual(exercises.map((e) => e.number), exercises.map((_, i) => i + 1));
  for (const e of exercises) {
    for (const text of [e.goal, ...e.hints, ...e.checks.map((c) => c.title)]) {
      for (const [, key] of text.matchAll(/\{(\w+)\}/g)) assert.ok(PLACEHOLDERS.includes(key), `${e.file}: {${key}} is filled in by nothing`);
    }
    assert.ok(!e.checks.some((c) => /\{/.test(c.title)), `${e.file}: a check's title is shown as written`);
  }
  // The walkthrough's path, in order: SMTP by hand, MX, SPF, DKIM, DMARC none, quarantine, reject, lookups, strict, sp/np, a list.
  assert.deepEqual(exercises.slice(0, 11).map((e) => e.id), ['smtp-by-hand', 'mx', 'spf', 'dkim', 'dmarc-none', 'dmarc-quarantine', 'dmarc-reject', 'spf-lookups', 'strict-alignment', 'subdomain-policy', 'mailing-list']);
});

test('a mistake in an exercise file names the file, the line and the key', () => {
  const dir = mkdtempSync(join(tmpdir(), 'exercise-files-'));
  const cases: [string, RegExp][] = [
    ['id: x\nnumber: 1\ntitle: T\nminutes: 5\ngoal: G\nhints: [h]\nchecks:\n  - title: C\n    check: mx\n    all: fail\n', /x\.yaml:10: checks\[0\]\.all: unknown key \(expected one of title, check, mistake\)/],
    ['id: x\nnumber: 1\ntitle: T\nminutes: 5\ngoal: G\nhints: [h]\nchecks:\n  - title: C\n    probe: own\n    expect: { spf: passed }\n', /x\.yaml:10: checks\[0\]\.expect\.spf: expected one of pass, fail/],
    ['id: x\nnumber: 1\ntitle: T\nminutes: 5\ngoal: G\nhints: [h]\nchecks:\n  - title: C\n    probe: ghost\n    expect: { spf: pass }\n', /x\.yaml:9: checks\[0\]\.probe: expected one of own, spoof/],
    ['id: x\nnumber: 1\ntitle: T\nminutes: 500\ngoal: G\nhints: [h]\nchecks:\n  - title: C\n    check: mx\n', /x\.yaml:4: minutes: expected a whole number from 1 to 180/],
    ['id: x\nnumber: 1\ntitle: T\nminutes: 5\ngoal: G\nhints: [h]\nchecks:\n  - title: C\n    check: dmarc-record\n    p: strict\n', /x\.yaml:10: checks\[0\]\.p: expected one of none, quarantine, reject/],
    ['id: X Y\n', /x\.yaml:1: id: expected lower-case letters/],
  ];
  try {
    for (const [text, error] of cases) {
      const file = join(dir, 'x.yaml');
      writeFileSync(file, text);
      assert.throws(() => loadExercise(file), (e: Error) => e instanceof ExerciseError && error.test(e.message), `${JSON.stringify(text)} should give ${error}`);
    }
    // Two files with one number: the course is ambiguous.
    const one = 'id: a\nnumber: 1\ntitle: T\nminutes: 5\ngoal: G\nhints: [h]\nchecks:\n  - title: C\n    check: mx\n';
    writeFileSync(join(dir, 'x.yaml'), one);
    writeFileSync(join(dir, 'y.yaml'), one.replace('id: a', 'id: b'));
    assert.throws(() => loadExercises(dir), /y\.yaml: 1 is also .*x\.yaml's/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
