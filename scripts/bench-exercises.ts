// npm run bench:exercises: grading a class, timed (issue 15's figures). The
// embedded lab serves a class of 100 (the class of bench:class); every
// student's zone is made a complete answer to all exercises through the
// teacher's credential (DKIM key, MX, SPF past the lookup trap and back,
// DMARC with p=reject, strict alignment, sp= and np=, shop) and each types
// one SMTP session with their code. Then, as a teacher would:
//   - `npm run exercise -- grade` on the whole class, timed end to end (the
//     command, its requests, the messages, the table): goal under 30 s;
//   - `npm run exercise -- check N --student S` for each exercise of one
//     student, timed end to end and as the API reports it: goal under 1 s.
// Also how many exercises passed, so that a fast grade that checks nothing
// would show. Loopback only; the lab is stopped after.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { promisify } from 'node:util';
import { issueCredentials } from '../services/lib/classroom.ts';
import { call } from './bench/json-request.ts';
import { readLab, root, service } from './lab/compose.ts';
import { table } from './lab/table.ts';

const { values } = parseArgs({ options: { students: { type: 'string', default: '100' }, rounds: { type: 'string', default: '3' } } });
const students = Number(values.students);
const rounds = Number(values.rounds);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const lab = readLab();
const at = (name: string, port: string) => {
  const s = service(lab, name);
  return { host: s.address, port: s.ports.find((p) => p.name === port)!.port };
};
const senderApi = at('sender', 'api');
const receiverApi = at('receiver', 'api');
const mx = at('receiver', 'mx');

async function ok(to: { host: string; port: number }, path: string, credential: string, method = 'GET', body?: unknown): Promise<any> {
  const result = await call(`http://${to.host}:${to.port}${path}`, credential, method, body);
  if (result.status >= 300) throw new Error(`${method} ${path}: ${result.status} ${JSON.stringify(result.body)}`);
  return result.body;
}

// Up to `width` at once, in order.
async function each<T>(items: T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await work(items[next++]);
  }));
}

// One SMTP session typed as a person would, minus the pauses.
async function typeBySmtp(to: string, subject: string): Promise<void> {
  const { connect } = await import('node:net');
  const socket = connect({ host: mx.host, port: mx.port, localAddress: '127.0.0.1' });
  socket.setEncoding('utf8');
  let heard = '';
  socket.on('data', (chunk: string) => (heard += chunk));
  const replies = async (n: number) => {
    for (const deadline = Date.now() + 10_000; (heard.match(/^\d{3} /gm) ?? []).length < n; await sleep(5)) if (Date.now() > deadline) throw new Error(`SMTP: ${heard}`);
  };
  await replies(1);
  socket.write(`EHLO laptop.example\r\nMAIL FROM:<me@laptop.example>\r\nRCPT TO:<${to}>\r\nDATA\r\n`);
  await replies(5);
  socket.write(`From: <me@laptop.example>\r\nSubject: ${subject}\r\n\r\nTyped.\r\n.\r\nQUIT\r\n`);
  await replies(7);
  if (!/^250 [^\n]*\n221 /m.test(heard)) throw new Error(`SMTP: ${heard}`);
  socket.destroy();
}

const run = promisify(execFile);
async function exercise(teacher: string, args: string[]): Promise<{ ms: number; code: number; stdout: string }> {
  const started = performance.now();
  try {
    const { stdout } = await run(process.execPath, ['scripts/exercise.ts', ...args], { cwd: root, env: { ...process.env, LAB_TOKEN: teacher }, maxBuffer: 256 * 1024 * 1024 });
    return { ms: performance.now() - started, code: 0, stdout };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    if (e.code !== 1) throw new Error(`npm run exercise -- ${args.join(' ')}: exit ${e.code}: ${e.stderr}`);
    return { ms: performance.now() - started, code: 1, stdout: e.stdout };
  }
}

const median = (xs: number[]) => xs.toSorted((a, b) => a - b)[Math.floor(xs.length / 2)];
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

const classDir = mkdtempSync(join(tmpdir(), 'bench-exercises-class-'));
const dataDir = mkdtempSync(join(tmpdir(), 'bench-exercises-lab-'));
let child: ChildProcess | undefined;
try {
  writeFileSync(join(classDir, 'class.yaml'), `name: Bench class\nstudents: { count: ${students}, prefix: student }\n`);
  const credentials = issueCredentials(classDir).issued;
  const teacher = credentials.get('teacher')!;
  child = spawn(process.execPath, ['scripts/lab.ts', '--fresh', '--data-dir', dataDir], { cwd: root, env: { ...process.env, LAB_CLASS: classDir, LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'pipe'] });
  // Interrupted (Ctrl-C, a timeout's SIGTERM): the lab stops too, not left holding the embedded lab's ports.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      child?.kill('SIGTERM');
      process.exit(130);
    });
  }
  let said = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (said += chunk));
  for (const deadline = Date.now() + 60_000; !/lab ready in \d+ ms/.test(said); await sleep(50)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the lab did not start:\n${said}`);
  }

  const names = [...credentials.keys()].filter((n) => n !== 'teacher');
  const includes = Array.from({ length: 10 }, (_, i) => `include:_spf${i + 1}.toomanylookups.test`).join(' ');
  const started = performance.now();
  await each(names, 8, async (name) => {
    const domain = `${name}.test`;
    const key = await ok(senderApi, '/api/classroom/dkim', teacher, 'POST', { selector: 's1', algorithm: 'rsa-2048', domain });
    const records = ['@ MX 10 mx', 'mx A 192.0.2.20', `@ TXT "v=spf1 ${includes} ip4:192.0.2.10 -all"`, key.zoneLine, `_dmarc TXT "v=DMARC1; p=reject; sp=quarantine; np=reject; adkim=s; aspf=s; rua=mailto:${name}@${domain}"`, 'shop A 192.0.2.20'];
    await ok(receiverApi, `/api/zone?domain=${domain}`, teacher, 'PUT', { records: records.join('\n') });
    const goal = (await ok(receiverApi, `/api/exercises/1?student=${name}`, teacher)).exercise.goal as string;
    await typeBySmtp(`${name}@${domain}`, `hello ${/[2-9A-Z]{4}-[2-9A-Z]{4}/.exec(goal)![0]}`);
  });
  process.stderr.write(`bench:exercises: ${students} students' zones and hand-typed sessions made in ${seconds(performance.now() - started)}\n`);

  const grades: { ms: number; passed: number; of: number }[] = [];
  for (let i = 0; i < rounds; i++) {
    const graded = await exercise(teacher, ['grade', '--json']);
    const json = JSON.parse(graded.stdout);
    grades.push({ ms: graded.ms, passed: json.passed, of: json.passed + json.failed });
    process.stderr.write(`bench:exercises: grade ${i + 1}: ${seconds(graded.ms)}, ${json.passed} of ${json.passed + json.failed} passed\n`);
  }

  const exercises = (await ok(receiverApi, '/api/exercises', teacher)).exercises as { number: number; id: string }[];
  const one: string[][] = [['exercise', 'check (command)', 'check (API)', 'result']];
  const commandMs: number[] = [];
  for (const e of exercises) {
    const checked = await exercise(teacher, ['check', String(e.number), '--student', names[0]]);
    const result = (await ok(receiverApi, `/api/exercises/${e.id}?student=${names[0]}`, teacher)).latest;
    commandMs.push(checked.ms);
    one.push([`${e.number} ${e.id}`, `${Math.round(checked.ms)} ms`, `${result.ms} ms`, result.status]);
  }

  process.stdout.write(`npm run bench:exercises: ${students} students, ${exercises.length} exercises, every zone a complete answer (at p=reject: exercises 5 and 6, p=none and p=quarantine, fail now, so 9 of 11 each pass)\n\n`);
  process.stdout.write(`${table([['grade round', 'time', 'passed'], ...grades.map((g, i) => [String(i + 1), seconds(g.ms), `${g.passed} of ${g.of}`])])}\n`);
  process.stdout.write(`\ngrade, median of ${rounds}: ${seconds(median(grades.map((g) => g.ms)))} (goal: under 30 s)\n\n`);
  process.stdout.write(`one student's check, each exercise (${names[0]}):\n${table(one)}\n`);
  process.stdout.write(`\none check, median: ${Math.round(median(commandMs))} ms with the command's own start, slowest ${Math.round(Math.max(...commandMs))} ms (goal: under 1 s)\n`);
} finally {
  if (child && child.exitCode === null) {
    const exited = new Promise((resolve) => child!.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
  rmSync(classDir, { recursive: true, force: true });
  rmSync(dataDir, { recursive: true, force: true });
}
