// npm run exercise, the command itself: its mistakes (exit 2 and a message
// that names the problem), no lab and a lab without a class (exit 3), and
// against an embedded lab serving a class of two: a check that fails on an empty zone with the reasons
// the receiver stored, one that passes once the records are there, hints
// revealed one at a time, and the teacher's grade with its table, JSON and
// JUnit (well-formed for xmllint) and exit codes. The whole class solving
// the exercises is test/exercises.test.ts's.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issueCredentials } from '../services/lib/classroom.ts';
import { readLab, root } from '../scripts/lab/compose.ts';
import { call, endpoints } from './support/classroom-flow.ts';
import { claimEmbeddedLab, startClassLab, stopClassLab } from './support/class-lab.ts';
import { requireTool } from './support/tools.ts';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

// npm run exercise -- ARGS with LAB_TOKEN set to token ('' for none).
function exercise(args: string[], token: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['scripts/exercise.ts', ...args], { cwd: root, env: { ...process.env, LAB_TOKEN: token }, timeout: 120_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

test('mistakes in the command: exit 2 with a message naming the problem, before the lab is asked', async () => {
  const cases: [string[], string, RegExp][] = [
    [[], 'teacher-x', /say what to do: list, show, hint, check, grade/],
    [['grades'], 'teacher-x', /unknown command "grades"/],
    [['check'], 'teacher-x', /check: name one exercise, by number or id/],
    [['check', '1', '2'], 'teacher-x', /check: name one exercise/],
    [['list', 'all'], 'teacher-x', /list takes no arguments \(got all\)/],
    [['grade', '--student', 'ana'], 'teacher-x', /grade takes no --student/],
    [['check', '3', '--json'], 'teacher-x', /check takes no --json/],
    [['grade', '--only', ','], 'teacher-x', /--only: name exercises/],
    [['grade', '--students', ''], 'teacher-x', /--students: name students/],
    [['grade', '--junit'], 'teacher-x', /--junit.*argument missing/],
    [['grade', '--verbose'], 'teacher-x', /Unknown option '--verbose'/],
    [['check', '3'], '', /set LAB_TOKEN to your credential/],
  ];
  for (const [args, token, message] of cases) {
    const run = await exercise(args, token);
    assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
    assert.match(run.stderr, message, args.join(' '));
    assert.equal(run.stdout, '');
  }
  const help = await exercise(['--help'], '');
  assert.equal(help.code, 0);
  assert.match(help.stdout, /grade .*\n[\s\S]*--junit FILE/);
});

const skip = await claimEmbeddedLab();
const lab = readLab();

// `npm run lab` for the class in classDir (none when it holds no class.yaml).
const startLab = (classDir: string, dataDir: string) => startClassLab(classDir, dataDir);
const stopLab = stopClassLab;

test('no lab running: exit 3, saying so and how to start one', { skip }, async () => {
  const run = await exercise(['list'], 'teacher-x');
  assert.equal(run.code, 3, run.stderr);
  assert.match(run.stderr, /nothing answers at 127\.0\.2\.20:8025: is the lab running\? \(start it with: npm run lab\)/);
});

test('a lab without a class: exit 3, saying exercises need one', { skip, timeout: 60_000 }, async () => {
  const noClass = mkdtempSync(join(tmpdir(), 'exercise-no-class-'));
  const dataDir = mkdtempSync(join(tmpdir(), 'exercise-no-class-lab-'));
  const child = await startLab(noClass, dataDir);
  try {
    const run = await exercise(['list'], 'teacher-x');
    assert.equal(run.code, 3, run.stderr);
    assert.match(run.stderr, /the lab serves no class: exercises are checked in classroom mode/);
  } finally {
    await stopLab(child);
    rmSync(noClass, { recursive: true, force: true });
    rmSync(dataDir, { recursive: true, force: true });
  }
});

describe('against a class lab', { skip }, () => {
  let classDir: string;
  let dataDir: string;
  let runner: ChildProcess | undefined;
  let credentials: Map<string, string>;
  const token = (name: string) => credentials.get(name)!;
  const { control, receiverApi } = endpoints(lab);
  const teacherApi = async (path: string) => {
    const answer = await call(`${receiverApi}${path}`, token('teacher'));
    assert.equal(answer.status, 200, `${path}: ${JSON.stringify(answer.body)}`);
    return answer.body;
  };
  const zone = async (student: string, change: { add?: string[]; delete?: string[] }) => {
    const answer = await call(`${control}/zones/${student}.test/records`, token(student), 'POST', change);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
  };

  before(async () => {
    classDir = mkdtempSync(join(tmpdir(), 'exercise-class-'));
    dataDir = mkdtempSync(join(tmpdir(), 'exercise-lab-'));
    writeFileSync(join(classDir, 'class.yaml'), 'name: Exercise CLI class\nstudents: [ana, ben]\n');
    credentials = issueCredentials(classDir).issued;
    runner = await startLab(classDir, dataDir);
  });
  after(async () => {
    await stopLab(runner);
    rmSync(classDir, { recursive: true, force: true });
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("list: the receiver's exercises, by number", { timeout: 30_000 }, async () => {
    const { exercises } = await teacherApi('/api/exercises');
    assert.ok(exercises.length >= 10);
    const run = await exercise(['list'], token('teacher'));
    assert.equal(run.code, 0, run.stderr);
    for (const e of exercises) assert.match(run.stdout, new RegExp(`^${e.number} +${e.id} +${escape(e.title)} +${e.minutes}$`, 'm'));
    const mine = await exercise(['list'], token('ana'));
    assert.equal(mine.code, 0, mine.stderr);
    assert.match(mine.stdout, /^1 +smtp-by-hand .* - +0\/\d+$/m); // unchecked, no hint shown
    assert.match(mine.stdout, /\(ana, ana\.test\)$/m);
  });

  test('check on an empty zone: exit 1, each check with the reason and what it saw, as the receiver stored them', { timeout: 60_000 }, async () => {
    const run = await exercise(['check', '3', '--student', 'ana'], token('teacher'));
    assert.equal(run.code, 1, run.stdout + run.stderr);
    const { latest } = await teacherApi('/api/exercises/spf?student=ana');
    assert.equal(latest.status, 'fail');
    assert.equal(latest.by, 'teacher');
    assert.match(run.stdout, /^3 spf: .*, for ana \(ana\.test\)$/m);
    for (const c of latest.checks) {
      assert.ok(run.stdout.includes(`  ${c.status === 'fail' ? 'FAIL' : c.status}`.padEnd(9) + `${c.title}\n${' '.repeat(9)}${c.reason}\n`), `${c.title}: ${c.reason}\n${run.stdout}`);
      for (const d of c.saw.dns ?? []) assert.ok(run.stdout.includes(`dns: ${d.name} ${d.type} -> `), `${d.name} ${d.type}`);
      if (c.saw.message?.session) assert.ok(run.stdout.includes(`why: ${receiverApi}/#/session/${c.saw.message.session}`));
    }
    assert.match(run.stdout, /^FAIL: \d+ of \d+ checks passed, in [\d.]+ s \(checked .* by teacher\)$/m);
    // The student herself, naming the exercise by its id.
    const own = await exercise(['check', 'spf'], token('ana'));
    assert.equal(own.code, 1, own.stdout + own.stderr);
    assert.match(own.stdout, /\(checked .* by ana\)$/m);
  });

  test('mistakes only the lab can tell: exit 2 with a message naming the problem', { timeout: 60_000 }, async () => {
    const cases: [string[], string, RegExp][] = [
      [['check', '99', '--student', 'ana'], 'teacher', /no exercise "99": they are 1 smtp-by-hand, 2 mx, /],
      [['show', 'spff'], 'ana', /no exercise "spff"/],
      [['check', '3'], 'teacher', /the teacher's credential checks any student: name one with --student NAME/],
      [['check', '3', '--student', 'zed'], 'teacher', /no student "zed" in the class \(2 students: ana, ben\)/],
      [['check', '3', '--student', 'ben'], 'ana', /you are ana: a student's credential is for their own exercises/],
      [['grade'], 'ana', /grade checks the whole class: it takes the teacher's credential/],
      [['hint', '1'], 'teacher', /hint reveals a student's next hint/],
      [['grade', '--only', '3,nope'], 'teacher', /no exercise "nope"/],
      [['grade', '--students', 'ana,zed'], 'teacher', /no student "zed"/],
    ];
    for (const [args, who, message] of cases) {
      const run = await exercise(args, token(who));
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stdout}${run.stderr}`);
      assert.match(run.stderr, message, args.join(' '));
    }
    const wrong = await exercise(['list'], 'ana-notHerCredential0000');
    assert.equal(wrong.code, 2, wrong.stderr);
    assert.match(wrong.stderr, /the lab did not take LAB_TOKEN: .*set it to your credential/);
  });

  test('hint: one more at a time, then all shown; show lists those revealed', { timeout: 30_000 }, async () => {
    const { exercise: spf } = await teacherApi('/api/exercises/spf?student=ana'); // as ana sees it, with every hint
    assert.ok(spf.hintCount >= 2);
    const first = await exercise(['hint', '3'], token('ana'));
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout, `3 spf: ${spf.title}: hint 1 of ${spf.hintCount}:\n  ${spf.hints[0].replace(/\n/g, '\n  ')}\n`);
    const second = await exercise(['hint', 'spf'], token('ana'));
    assert.match(second.stdout, new RegExp(`hint 2 of ${spf.hintCount}:`));
    const shown = await exercise(['show', '3'], token('ana'));
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, new RegExp(`Hints \\(2 of ${spf.hintCount} shown; the next: npm run exercise -- hint 3\\):`));
    assert.ok(shown.stdout.includes(`  2. ${spf.hints[1].split('\n')[0]}`));
    assert.ok(!shown.stdout.includes(`  3. `), 'the third hint is not shown');
    assert.match(shown.stdout, /^Not passed yet\.$/m);
    assert.match(shown.stdout, /^The latest check:$/m); // the check of the test before
    for (let i = 2; i < spf.hintCount; i++) await exercise(['hint', '3'], token('ana'));
    const all = await exercise(['hint', '3'], token('ana'));
    assert.match(all.stdout, new RegExp(`all ${spf.hintCount} hints are shown`));
    const { exercises } = await teacherApi('/api/exercises?student=ana');
    assert.equal(exercises.find((e: { id: string }) => e.id === 'spf').state.hintsShown, spf.hintCount);
  });

  test('a passing check exits 0; grade --json and --junit: every student by every exercise, valid, exit 1 while some fail', { timeout: 120_000 }, async (t) => {
    await zone('ana', { add: ['@ MX 10 mx', 'mx A 192.0.2.20'] });
    const passing = await exercise(['check', 'mx', '--student', 'ana'], token('teacher'));
    assert.equal(passing.code, 0, passing.stdout + passing.stderr);
    assert.match(passing.stdout, /^pass: (\d+) of \1 checks passed/m);

    const junitFile = join(dataDir, 'grades.xml');
    const run = await exercise(['grade', '--json', '--junit', junitFile], token('teacher'));
    assert.equal(run.code, 1, run.stderr);
    const graded = JSON.parse(run.stdout);
    const { exercises } = await teacherApi('/api/exercises');
    assert.deepEqual(graded.students.map((s: { name: string }) => s.name), ['ana', 'ben']);
    for (const s of graded.students) {
      assert.deepEqual(s.exercises.map((e: { id: string }) => e.id), exercises.map((e: { id: string }) => e.id));
      for (const e of s.exercises) {
        assert.ok(['pass', 'fail', 'error'].includes(e.latest));
        assert.ok(e.checks.length > 0, `${s.name} ${e.id} has its checks`);
        for (const c of e.checks) assert.ok(typeof c.reason === 'string' && c.reason.length > 0);
      }
    }
    const anaMx = graded.students[0].exercises.find((e: { id: string }) => e.id === 'mx');
    assert.equal(anaMx.status, 'pass');
    assert.ok(anaMx.passedAt);
    assert.equal(graded.students[1].exercises.find((e: { id: string }) => e.id === 'mx').status, 'fail');
    assert.equal(graded.passed + graded.failed, 2 * exercises.length);
    // The lab's grid holds what this run found.
    const grid = await teacherApi('/api/exercises/grid');
    for (const s of graded.students) {
      for (const e of s.exercises) assert.equal(grid.students.find((g: { name: string }) => g.name === s.name).cells[e.id].latest, e.latest, `${s.name} ${e.id}`);
    }

    const junit = readFileSync(junitFile, 'utf8');
    if (requireTool(t, 'xmllint', 'libxml2-utils')) {
      const lint = spawnSync('xmllint', ['--noout', junitFile], { encoding: 'utf8' });
      assert.equal(lint.status, 0, lint.stderr);
    }
    const cases = [...junit.matchAll(/<testcase classname="([^"]+)" name="([^"]+)"/g)].map((m) => `${m[1]} ${m[2]}`);
    assert.equal(cases.length, 2 * exercises.length);
    const mx = exercises.find((e: { id: string }) => e.id === 'mx');
    assert.ok(cases.includes(`ana ${mx.number} mx: ${xmlText(mx.title)}`), cases.join('\n'));
    const notPassed = graded.students.flatMap((s: { exercises: { status: string }[] }) => s.exercises).filter((e: { status: string }) => e.status !== 'pass').length;
    assert.equal((junit.match(/<failure |<error /g) ?? []).length, notPassed);
  });

  test('grade --only --students: exit 0 when all passed; pass* when a pass is kept but the check fails now', { timeout: 60_000 }, async () => {
    const run = await exercise(['grade', '--only', '2', '--students', 'ana'], token('teacher'));
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /^student +2 +passed\nana +pass +1\/1$/m);
    assert.match(run.stdout, /^1 student, 1 exercise: 1 of 1 passed, 0 failed, 0 errors, in [\d.]+ s$/m);

    await zone('ana', { delete: ['@ MX'] });
    const broken = await exercise(['grade', '--only', 'mx', '--students', 'ana'], token('teacher'));
    assert.equal(broken.code, 0, broken.stdout + broken.stderr); // the lab keeps the pass
    assert.match(broken.stdout, /^ana +pass\* +1\/1$/m);
    assert.match(broken.stdout, /^pass\*: passed before, failing now$/m);
    assert.match(broken.stdout, /1 of 1 passed \(1 pass\*\)/);
    const now = await exercise(['check', 'mx', '--student', 'ana'], token('teacher'));
    assert.equal(now.code, 1, now.stdout);
  });
});

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const xmlText = (text: string) => text.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
