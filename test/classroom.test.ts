// A class in the embedded lab (`npm run lab` with LAB_CLASS naming a class
// directory), end to end over real sockets: the lesson of
// support/classroom-flow.ts, then a restart of the whole lab, after which
// the student's zone, her DKIM key and her mail are all still there.
// test/docker.test.ts runs the same lesson under compose.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { issueCredentials } from '../services/lib/classroom.ts';
import { readLab, root } from '../scripts/lab/compose.ts';
import { afterRestart, classroomFlow, type ClassLab } from './support/classroom-flow.ts';
import { claimEmbeddedLab, startClassLab, stopClassLab } from './support/class-lab.ts';

const skip = await claimEmbeddedLab();
const lab = readLab();

const classDir = mkdtempSync(join(tmpdir(), 'class-'));
const dataDir = mkdtempSync(join(tmpdir(), 'class-lab-'));
let runner: ChildProcess | undefined;
let c: ClassLab;

const startLab = (fresh: boolean) => startClassLab(classDir, dataDir, fresh);
const stopLab = () => stopClassLab(runner);

before(async () => {
  if (skip) return;
  writeFileSync(join(classDir, 'class.yaml'), 'name: Lab test class\nstudents: [ana, ben]\n');
  const { issued } = issueCredentials(classDir);
  c = { lab, credentials: issued, clientAddress: '127.0.0.1' };
  runner = await startLab(true);
});
after(async () => {
  await stopLab();
  rmSync(classDir, { recursive: true, force: true });
  rmSync(dataDir, { recursive: true, force: true });
});

let first: { messageId: string };

test('a student publishes MX, SPF, her DKIM key and DMARC, and her mail passes; another student reads and changes none of it; the teacher sees both', { skip, timeout: 60_000 }, async () => {
  first = await classroomFlow(c);
});

test("the teacher's tools take the teacher's credential (LAB_TOKEN): the lab CLI and the scenarios; without it they say so", { skip, timeout: 60_000 }, async () => {
  const run = (args: string[], token?: string) =>
    promisify(execFile)(process.execPath, args, { cwd: root, env: { ...process.env, LAB_CLASS: classDir, LAB_TOKEN: token ?? '' } }).then(
      ({ stdout }) => ({ code: 0, stdout, stderr: '' }),
      (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
    );
  const refused = await run(['scripts/lab.ts', 'inbox']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /401 .*set LAB_TOKEN to the teacher's credential/);
  const inbox = await run(['scripts/lab.ts', 'inbox'], c.credentials.get('teacher'));
  assert.equal(inbox.code, 0, inbox.stderr);
  assert.match(inbox.stdout, /ana@ana\.test/);
  const scenario = await run(['scripts/scenario.ts', 'policy-change', '--json'], c.credentials.get('teacher'));
  assert.equal(scenario.code, 0, scenario.stdout + scenario.stderr);
});

test('after a restart of the whole lab her zone, her key and her mail are still there', { skip, timeout: 90_000 }, async () => {
  assert.ok(first, 'the lesson ran first');
  await stopLab();
  runner = await startLab(false);
  await afterRestart(c, first);
});
