// npm run bench:class [-- --students N --messages M]: a class in the embedded
// lab, all at once. For a lab without a class, with 10 students and with N
// (default 100): the lab's memory when ready; then every student at the same
// moment makes a DKIM key at the sender, publishes MX, SPF, the key and DMARC
// in their zone, and submits M messages (default 20) from their domain to
// their own mailbox. Printed: the time until each student's first message
// has dmarc=pass at the receiver (median, 90th percentile, the last), until
// all messages are in their mailboxes, the lab's memory after (PSS, summed
// over its processes: what the lab takes), and the teacher's console with
// the whole class's sessions stored: the API's first page of sessions, and
// in a browser (chromium, when there is one) from login to the first row.
// The lab without a class carries the same load, from as many clients
// logged in as the lab's alice@sender.test: the memory a class adds is the
// difference.
// Each student speaks from a loopback address of their own (127.0.3.X), as
// a class's laptops do: the lab's per-address limits apply to each.
// The lab's ports are fixed: no other lab may be running. Linux (/proc).
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { issueCredentials } from '../services/lib/classroom.ts';
import { readLab, root, service } from './lab/compose.ts';
import { table } from './lab/table.ts';
import { launchBrowser, whyNoBrowser } from './bench/browser.ts';
import { call } from './bench/json-request.ts';
import { submitMessages } from './bench/class-student.ts';

const { values } = parseArgs({ options: { students: { type: 'string', default: '100' }, messages: { type: 'string', default: '20' } } });
const STUDENTS = Number(values.students);
const MESSAGES = Number(values.messages);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const lab = readLab();
const at = (name: string, port: string) => {
  const s = service(lab, name);
  return { host: s.address, port: s.ports.find((p) => p.name === port)!.port };
};
const control = at('dns', 'control');
const senderApi = at('sender', 'api');
const receiverApi = at('receiver', 'api');
const submission = at('sender', 'submission');

// A JSON request that must succeed, from a given local address.
async function ok(to: { host: string; port: number }, path: string, options: { credential?: string; method?: string; body?: unknown; from?: string } = {}): Promise<any> {
  const result = await call(`http://${to.host}:${to.port}${path}`, options.credential, options.method, options.body, options.from);
  if (result.status >= 300) throw new Error(`${options.method ?? 'GET'} ${path}: ${result.status} ${JSON.stringify(result.body)}`);
  return result.body;
}

// /proc: the lab's service processes, and their PSS summed, in MiB.
const read = (file: string) => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
};
const childrenOf = (pid: number) => readdirSync('/proc').filter((d) => /^\d+$/.test(d) && Number(read(`/proc/${d}/stat`).split(')').at(-1)!.trim().split(' ')[1]) === pid).map(Number);
const pss = (pid: number) => childrenOf(pid).reduce((sum, p) => sum + Number(/^Pss:\s+(\d+) kB/m.exec(read(`/proc/${p}/smaps_rollup`))?.[1] ?? 0), 0) / 1024;

async function startLab(classDir: string | undefined, dataDir: string): Promise<ChildProcess> {
  const env = { ...process.env, LAB_CLASS: classDir ?? mkdtempSync(join(tmpdir(), 'no-class-')), LOG_LEVEL: 'warn' };
  const child = spawn(process.execPath, ['scripts/lab.ts', '--fresh', '--data-dir', dataDir], { cwd: root, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let said = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (said += chunk));
  for (const deadline = Date.now() + 60_000; !/lab ready in \d+ ms/.test(said); await sleep(50)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the lab did not start:\n${said}`);
  }
  await sleep(2000); // settled: what it holds when idle
  return child;
}

async function stopLab(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

interface Run {
  students: number;
  idleMiB: number;
  afterMiB?: number;
  firstPass?: number[]; // ms, sorted
  allDelivered?: number;
  delivered?: number;
  teacherPageMs?: number;
  teacherMailboxesMs?: number;
  browserMs?: number; // from the teacher's login to the first row of sessions on screen
}

async function run(students: number): Promise<Run> {
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-class-lab-'));
  let classDir: string | undefined;
  let credentials = new Map<string, string>();
  if (students > 0) {
    classDir = mkdtempSync(join(tmpdir(), 'bench-class-'));
    chmodSync(classDir, 0o755);
    writeFileSync(join(classDir, 'class.yaml'), `name: Bench class\nstudents: { count: ${students}, prefix: s }\n`);
    credentials = issueCredentials(classDir).issued;
  }
  const child = await startLab(classDir, dataDir);
  try {
    const result: Run = { students, idleMiB: pss(child.pid!) };
    if (students === 0) {
      const started = performance.now();
      const alice = lab.services.find((x) => x.name === 'sender')!.instance!.submission.passwords.get('alice')!;
      await Promise.all(Array.from({ length: STUDENTS }, (_, i) => submitMessages({ ...submission, from: `127.0.3.${1 + (i % 250)}`, address: 'alice@sender.test', to: 'bob@receiver.test', credential: alice, count: MESSAGES })));
      const boxes = async () => (await ok(receiverApi, '/api/mailboxes')).find((b: any) => b.mailbox === 'bob@receiver.test')?.folders.reduce((n: number, f: any) => n + f.messages, 0) ?? 0;
      for (const deadline = Date.now() + 300_000; (result.delivered = await boxes()) < STUDENTS * MESSAGES; await sleep(250)) {
        if (Date.now() > deadline) throw new Error(`only ${result.delivered} of ${STUDENTS * MESSAGES} messages delivered within 5 minutes`);
      }
      result.allDelivered = performance.now() - started;
      await sleep(2000);
      result.afterMiB = pss(child.pid!);
      return result;
    }
    const names = [...credentials.keys()].filter((n) => n !== 'teacher');
    const teacher = credentials.get('teacher')!;
    const started = performance.now();
    const firstPass: number[] = [];
    await Promise.all(
      names.map(async (name, i) => {
        const credential = credentials.get(name)!;
        const domain = `${name}.test`;
        const from = `127.0.3.${1 + (i % 250)}`;
        const key = await ok(senderApi, '/api/classroom/dkim', { credential, method: 'POST', body: { selector: 's1', algorithm: 'rsa-2048' }, from });
        await ok(control, `/zones/${domain}/records`, {
          credential,
          method: 'POST',
          from,
          body: { add: ['@ 300 MX 10 mx.receiver.test.', '@ 300 TXT "v=spf1 ip4:192.0.2.10 -all"', key.zoneLine, `_dmarc 300 TXT "v=DMARC1; p=reject; rua=mailto:${name}@${domain}"`] },
        });
        const ids = await submitMessages({ ...submission, from, address: `${name}@${domain}`, to: `${name}@${domain}`, credential, count: MESSAGES });
        for (;;) {
          const found = await ok(receiverApi, `/api/sessions?messageId=${encodeURIComponent(ids[0])}`, { credential, from });
          if (found.length) {
            const record = await ok(receiverApi, `/api/sessions/${found[0].id}`, { credential, from });
            const t = record.transactions.find((x: any) => x.message?.messageId === ids[0]);
            if (t.checks.dmarc.result !== 'pass') throw new Error(`${name}: dmarc=${t.checks.dmarc.result}: ${t.checks.dmarc.reason}`);
            firstPass.push(performance.now() - started);
            return;
          }
          await sleep(100);
        }
      }),
    );
    result.firstPass = firstPass.sort((a, b) => a - b);
    // Every message in its mailbox: the teacher counts them.
    const expected = students * MESSAGES;
    for (const deadline = Date.now() + 300_000; ; await sleep(250)) {
      const boxes = await ok(receiverApi, '/api/mailboxes', { credential: teacher });
      result.delivered = boxes.filter((b: any) => /^s\d+@/.test(b.mailbox)).reduce((sum: number, b: any) => sum + b.folders.reduce((n: number, f: any) => n + f.messages, 0), 0);
      if (result.delivered! >= expected) break;
      if (Date.now() > deadline) throw new Error(`only ${result.delivered} of ${expected} messages delivered within 5 minutes`);
    }
    result.allDelivered = performance.now() - started;
    await sleep(2000);
    result.afterMiB = pss(child.pid!);
    // The teacher's console: its first page of sessions (what it asks first), timed.
    const times: number[] = [];
    for (let i = 0; i < 21; i++) {
      const t0 = performance.now();
      const page = await ok(receiverApi, '/api/sessions/page?limit=50', { credential: teacher });
      times.push(performance.now() - t0);
      if (!page.items?.length) throw new Error('the teacher sees no sessions');
    }
    result.teacherPageMs = times.sort((a, b) => a - b)[10];
    const boxTimes: number[] = [];
    for (let i = 0; i < 21; i++) {
      const t0 = performance.now();
      await ok(receiverApi, '/api/mailboxes', { credential: teacher });
      boxTimes.push(performance.now() - t0);
    }
    result.teacherMailboxesMs = boxTimes.sort((a, b) => a - b)[10];
    if (!(await whyNoBrowser())) result.browserMs = await teacherInBrowser(teacher);
    return result;
  } finally {
    await stopLab(child);
    rmSync(dataDir, { recursive: true, force: true });
    if (classDir) rmSync(classDir, { recursive: true, force: true });
  }
}

// The teacher opens the receiver's console, logs in, and sees the first row of sessions.
async function teacherInBrowser(credential: string): Promise<number> {
  const browser = await launchBrowser();
  try {
    const page = await browser.context.newPage();
    await page.goto(`http://${receiverApi.host}:${receiverApi.port}/`);
    await page.getByLabel('Your credential').fill(credential);
    const started = performance.now();
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.locator('tbody tr').first().waitFor();
    return performance.now() - started;
  } finally {
    await browser.close();
  }
}

// Once to warm up: the first start after a code change fills Node's compile
// cache and holds about 70 MiB more, which would count against no class.
const warmUp = mkdtempSync(join(tmpdir(), 'bench-class-lab-'));
await stopLab(await startLab(undefined, warmUp));
rmSync(warmUp, { recursive: true, force: true });

const runs: Run[] = [];
for (const students of [0, 10, STUDENTS]) {
  process.stderr.write(`bench:class: ${students ? `${students} students` : 'no class'}...\n`);
  runs.push(await run(students));
}
const [none, ten, all] = runs;
console.log(`bench:class: every student at once makes a DKIM key, publishes 4 records and submits ${MESSAGES} messages to their own mailbox`);
console.log(`(without a class: ${STUDENTS} clients as alice@sender.test, ${MESSAGES} messages each, the same load)\n`);
const rows = runs.map((r) => [
  r.students ? String(r.students) : 'no class',
  `${r.idleMiB.toFixed(0)} MiB`,
  r.firstPass ? `${seconds(percentile(r.firstPass, 50))} / ${seconds(percentile(r.firstPass, 90))} / ${seconds(r.firstPass.at(-1)!)}` : '-',
  r.allDelivered ? `${seconds(r.allDelivered)} (${r.delivered})` : '-',
  r.afterMiB ? `${r.afterMiB.toFixed(0)} MiB` : '-',
  r.teacherPageMs ? `${r.teacherPageMs.toFixed(1)} ms / ${r.teacherMailboxesMs!.toFixed(1)} ms` : '-',
  r.browserMs ? `${r.browserMs.toFixed(0)} ms` : '-',
]);
console.log(table([['students', 'lab PSS ready', 'first dmarc=pass: median / p90 / last', 'all delivered', 'lab PSS after', 'teacher API: sessions / mailboxes', 'teacher console'], ...rows]));
const per = (a: number, b: number, n: number) => `${((a - b) / n).toFixed(2)} MiB`;
console.log(`\nwhat a student adds to the lab's memory: ready ${per(ten.idleMiB, none.idleMiB, ten.students)} at ${ten.students}, ${per(all.idleMiB, none.idleMiB, all.students)} at ${all.students}; after the same load ${per(all.afterMiB!, none.afterMiB!, all.students)} at ${all.students} (goal: under 2 MB)`);
console.log('teacher API: GET /api/sessions/page?limit=50 and GET /api/mailboxes, medians of 21; teacher console: chromium, from Log in to the first row of sessions');
