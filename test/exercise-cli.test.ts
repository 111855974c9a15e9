// npm run exercise, the command itself: its mistakes (exit 2 and a message
// that names the problem), and no lab running (exit 3).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readLab, root } from '../scripts/lab/compose.ts';
import { findPortProblems } from '../scripts/lab/preflight.ts';
import { lockEmbeddedLab } from './support/lab-lock.ts';

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

await lockEmbeddedLab();
const lab = readLab();
const busy = (await findPortProblems(lab.services)).busy;
if (busy.length > 0 && process.env.CI === 'true') throw new Error(`the embedded lab's ports are taken: ${busy.join(', ')}`);
const skip = busy.length > 0 && `the embedded lab's ports are taken (is a lab running?): ${busy.join(', ')}`;

test('no lab running: exit 3, saying so and how to start one', { skip }, async () => {
  const run = await exercise(['list'], 'teacher-x');
  assert.equal(run.code, 3, run.stderr);
  assert.match(run.stderr, /nothing answers at 127\.0\.2\.20:8025: is the lab running\? \(start it with: npm run lab\)/);
});
