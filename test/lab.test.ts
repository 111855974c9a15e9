// The embedded lab end to end: `npm run lab` (node scripts/lab.ts) starts
// every service of compose.yaml; mail goes through real submission, DKIM,
// DNS and DMARC; the lab CLI talks to it; stopping it leaves nothing behind.
// The embedded lab listens on fixed addresses and ports (127.0.2.X with
// 10053, 10025, 10587, 8025, 8053): no other test may use those; the other
// tests listen on ports the system chooses, and scenarios.test.ts, which
// also starts it, takes turns with this file (support/lab-lock.ts).
// When they are taken (a lab running beside the tests) these tests are
// skipped, and fail under CI.
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { health } from '../scripts/lab/api.ts';
import { readLab, root } from '../scripts/lab/compose.ts';
import { findPortProblems } from '../scripts/lab/preflight.ts';
import { lockEmbeddedLab } from './support/lab-lock.ts';
import { alive, childPids } from './support/processes.ts';
import { requireTool } from './support/tools.ts';

const lab = readLab();
await lockEmbeddedLab();
const busy = (await findPortProblems(lab.services)).busy;
if (busy.length > 0 && process.env.CI === 'true') throw new Error(`the embedded lab's ports are taken: ${busy.join(', ')}`);
const skip =
  (process.platform !== 'linux' && 'reads /proc to find the lab processes') ||
  (busy.length > 0 && `the embedded lab's ports are taken (is a lab running?): ${busy.join(', ')}`);
const mta = (name: string) => lab.services.find((s) => s.name === name)!;
const password = (name: string, user: string) => mta(name).instance!.submission.passwords.get(user)!;
const api = async (name: string, path: string) => (await fetch(`${mta(name).console}api${path}`)).json();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Runner {
  process: ChildProcess;
  stderr(): string;
  exited: Promise<number | null>;
}

// node scripts/lab.ts (what `npm run lab` runs).
function spawnRunner(dataDir: string): Runner {
  const child = spawn(process.execPath, ['scripts/lab.ts', '--fresh', '--data-dir', dataDir], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stdout.resume(); // the services' logs: read, or the runner would block on a full pipe
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { process: child, stderr: () => stderr, exited };
}

// Resolved once the runner has said what pattern matches.
async function said(runner: Runner, pattern: RegExp, timeoutMs = 30_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; !pattern.test(runner.stderr()); await sleep(20)) {
    if (runner.process.exitCode !== null) throw new Error(`the lab exited (${runner.process.exitCode}) before it said ${pattern}:\n${runner.stderr()}`);
    if (Date.now() > deadline) throw new Error(`the lab did not say ${pattern} within ${timeoutMs / 1000} s:\n${runner.stderr()}`);
  }
}

async function startRunner(dataDir: string): Promise<Runner> {
  const runner = spawnRunner(dataDir);
  await said(runner, /lab ready in \d+ ms/);
  return runner;
}

const isReceiver = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'utf8').includes('MTA_CONFIG=instances/receiver.yaml');
  } catch {
    return false; // gone meanwhile
  }
};
// The runner's receiver process once it runs the receiver's command (a
// process just forked still has the runner's environment), other than those.
async function receiverPid(runner: Runner, not: number[] = []): Promise<number> {
  for (const deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(5)) {
    const pid = childPids(runner.process.pid!).find((p) => !not.includes(p) && isReceiver(p));
    if (pid) return pid;
  }
  throw new Error(`no new receiver process within 15 s:\n${runner.stderr()}`);
}

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['scripts/lab.ts', ...args], { cwd: root, timeout: 40_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function swaks(server: string, args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)('swaks', ['--server', server, '--timeout', '10', ...args]);
  return stdout;
}

const statusField = (pid: number, field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
// The session at the receiver that took (or refused) the message with this Message-ID.
async function receivedAt(name: string, messageId: string) {
  for (const deadline = Date.now() + 15_000; Date.now() < deadline; await sleep(50)) {
    const [summary] = await api(name, `/sessions?messageId=${encodeURIComponent(messageId)}`);
    const record = summary && (await api(name, `/sessions/${summary.id}`));
    const t = record?.transactions.find((x: { message?: { messageId?: string } }) => x.message?.messageId === messageId);
    if (t) return t;
  }
  throw new Error(`${messageId} did not reach ${name} within 15 s`);
}
const messageIdOf = (swaksOutput: string) => /^ -> Message-Id: (<[^>]+>)/m.exec(swaksOutput)![1];

describe('the embedded lab', { skip }, () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'lab-run-'));
  let runner: Runner;

  before(async () => {
    runner = await startRunner(dataDir);
  });
  // No service died meanwhile (the runner would have said so, and restarted it).
  afterEach(() => assert.doesNotMatch(runner.stderr(), /stopped unexpectedly/, runner.stderr()));
  after(async () => {
    if (runner?.process.exitCode === null) {
      runner.process.kill('SIGTERM');
      await runner.exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('is ready with one table: service, lab name, lab address, local address and ports, console', (t) => {
    const out = runner.stderr();
    t.diagnostic(/lab ready in \d+ ms/.exec(out)![0]);
    assert.match(out, /^service +lab name +lab address +local address and ports +console$/m);
    assert.match(out, /^dns +ns\.lab\.test +192\.0\.2\.53 +127\.0\.2\.53 dns:10053 control:8053 +-$/m);
    assert.match(out, /^sender +mta\.sender\.test +192\.0\.2\.10 +127\.0\.2\.10 mx:10025 submission:10587 api:8025 +http:\/\/127\.0\.2\.10:8025\/$/m);
    assert.match(out, /^receiver +mx\.receiver\.test +192\.0\.2\.20 +127\.0\.2\.20 mx:10025 submission:10587 api:8025 +http:\/\/127\.0\.2\.20:8025\/$/m);
    assert.match(out, /^attacker +mta\.attacker\.test +192\.0\.2\.66 /m);
    assert.match(out, /^forwarder +list\.forwarder\.test +192\.0\.2\.30 /m);
    assert.equal(childPids(runner.process.pid!).length, 5, 'one process per service');
  });

  test('mail submitted with swaks through the sender lands in the INBOX with spf, dkim and dmarc pass', async (t) => {
    if (!requireTool(t, 'swaks', 'swaks')) return;
    const output = await swaks('127.0.2.10:10587', [
      '--auth-user', 'alice@sender.test', '--auth-password', password('sender', 'alice'),
      '--from', 'alice@sender.test', '--to', 'alice@receiver.test', '--header', 'Subject: through the lab',
    ]);
    assert.match(output, /<- {2}250 2\.6\.0 Ok: queued as \w+/);
    const received = await receivedAt('receiver', messageIdOf(output));
    assert.equal(received.decision.disposition, 'inbox');
    assert.deepEqual([received.checks.spf.result, received.checks.dmarc.result], ['pass', 'pass']);
    assert.ok(received.checks.dkim.some((d: { result: string; domain: string }) => d.result === 'pass' && d.domain === 'sender.test'));
    const [delivery] = received.deliveries;
    assert.deepEqual([delivery.mailbox, delivery.folder], ['alice@receiver.test', 'INBOX']);
    const message = await api('receiver', `/messages/${delivery.id}`);
    const results = message.headers.find((h: { name: string }) => h.name === 'Authentication-Results').value;
    for (const check of [/\bspf=pass\b/, /\bdkim=pass header\.i=@sender\.test\b/, /\bdmarc=pass\b/]) assert.match(results, check);
  });

  test("a spoof of a p=reject domain through the attacker's submission gets 550 5.7.1 at the receiver", async (t) => {
    if (!requireTool(t, 'swaks', 'swaks')) return;
    const auth = ['--auth-user', 'mallory@attacker.test', '--auth-password', password('attacker', 'mallory')];
    const output = await swaks('127.0.2.66:10587', [...auth, '--from', 'ceo@sender.test', '--to', 'alice@receiver.test']);
    assert.match(output, /<- {2}250 2\.6\.0 Ok: queued as \w+/, 'the attacker takes it: its role is to send as anyone');
    const refused = await receivedAt('receiver', messageIdOf(output));
    assert.deepEqual([refused.decision.disposition, refused.decision.code, refused.decision.enhanced], ['reject', 550, '5.7.1']);
    assert.equal(refused.checks.dmarc.result, 'fail');
    assert.deepEqual(refused.deliveries, []);

    // With its own envelope sender, the attacker gets the bounce: a DSN that quotes the 550.
    const headerSpoof = await swaks('127.0.2.66:10587', [...auth, '--from', 'mallory@attacker.test', '--header', 'From: ceo@sender.test', '--to', 'alice@receiver.test']);
    assert.equal((await receivedAt('receiver', messageIdOf(headerSpoof))).decision.code, 550);
    let bounce;
    for (const deadline = Date.now() + 15_000; !bounce && Date.now() < deadline; await sleep(50)) {
      [bounce] = (await api('attacker', '/sessions?recipient=mallory@attacker.test&disposition=inbox')).flatMap((s: { deliveries: object[] }) => s.deliveries);
    }
    assert.ok(bounce, 'a bounce reached mallory@attacker.test');
    const raw = await (await fetch(`${mta('attacker').console}api/messages/${bounce.id}/raw`)).text();
    assert.match(raw, /550 5\.7\.1 Message rejected: DMARC fail for sender\.test \(p=reject\)/);
  });

  test('the CLI: send --wait prints the outcome at the receiver; lookup asks the lab DNS; status; inbox', async () => {
    const sent = await cli('send', '--from', 'bob@sender.test', '--to', 'bob@receiver.test', '--subject', 'S', '--body', 'B', '--wait');
    assert.equal(sent.code, 0, sent.stderr);
    assert.match(sent.stdout, /^queued as \w+ at sender \(mta\.sender\.test, AUTH bob@sender\.test\); Message-ID <[^>]+>$/m);
    assert.match(sent.stdout, /^bob@receiver\.test at receiver \(mx\.receiver\.test\):\n {2}inbox -> INBOX {2}spf=pass dkim=pass dmarc=pass\n {2}why: DMARC pass for sender\.test/m);

    const spoof = await cli('send', '--via', 'attacker', '--from', 'ceo@sender.test', '--to', 'alice@receiver.test', '--wait');
    assert.match(spoof.stdout, /AUTH mallory@attacker\.test/);
    assert.match(spoof.stdout, / {2}reject 550 5\.7\.1 {2}spf=fail dkim=none dmarc=fail\n {2}why: DMARC fail for sender\.test \(p=reject\)/);

    const mx = await cli('lookup', 'sender.test', 'MX');
    assert.equal(mx.stdout, 'sender.test MX 10 mta.sender.test\n');
    assert.equal((await cli('lookup', '192.0.2.20', 'PTR')).stdout, '192.0.2.20 PTR mx.receiver.test\n');
    const nx = await cli('lookup', 'nowhere.test');
    assert.deepEqual([nx.code, nx.stderr], [1, 'lab: nowhere.test A: no such name (NXDOMAIN)\n']);

    const status = await cli('status');
    assert.equal(status.code, 0);
    assert.equal(status.stdout.match(/ up /g)?.length, 5);
    const inbox = await cli('inbox', 'bob@receiver.test');
    assert.match(inbox.stdout, /from bob@sender\.test via 192\.0\.2\.10 {2}"S"\n {2}inbox -> INBOX {2}spf=pass dkim=pass dmarc=pass/);
  });

  test('SIGTERM stops every service: no process, no listening port is left', async (t) => {
    const pids = childPids(runner.process.pid!);
    assert.equal(pids.length, 5);
    // Memory, reported and not asserted (it varies with the load of the
    // machine; scripts/measure-lab.ts measures it): each process's RSS counts
    // the pages of the node binary that all five share, its PSS only its share.
    const sum = (kiB: (pid: number) => number) => Math.round(pids.reduce((total, pid) => total + kiB(pid), 0) / 1024);
    const pss = sum((pid) => Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))![1]));
    t.diagnostic(`the five services: peak RSS ${sum((pid) => statusField(pid, 'VmHWM'))} MiB summed, PSS ${pss} MiB`);

    runner.process.kill('SIGTERM');
    assert.equal(await runner.exited, 0, runner.stderr());
    assert.deepEqual(pids.filter(alive), [], 'every service process has ended');
    assert.deepEqual(await findPortProblems(lab.services), { busy: [], missing: [] });
    const status = await cli('status');
    assert.equal(status.code, 1);
    assert.match(status.stderr, /no lab is running.*npm run lab/);
  });
});

describe('when the lab cannot run', { skip }, () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'lab-fail-'));
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  test('a port in use: which service, which address:port, before anything starts', async () => {
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(8025, '127.0.2.20', resolve));
    try {
      const result = await cli('--data-dir', dataDir);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /in use by another program:\n {2}receiver 127\.0\.2\.20:8025 \(api\)\n/);
    } finally {
      squatter.close();
    }
  });

  test('--help, on the lab and on each command', async () => {
    assert.match((await cli('--help')).stdout, /^npm run lab \[-- --fresh\]/);
    for (const command of ['status', 'send', 'lookup', 'inbox']) {
      const help = await cli(command, '--help');
      assert.equal(help.code, 0);
      assert.match(help.stdout, new RegExp(`^npm run lab -- ${command}`));
    }
    const unknown = await cli('sned');
    assert.deepEqual([unknown.code, unknown.stderr], [2, 'lab: unknown command "sned" (npm run lab -- --help lists them)\n']);
  });
});

// scripts/lab/restarts.ts: restarted after 100, 200, 400, 800 ms; the 5th crash within 60 s stops the lab.
describe('when a service dies', { skip }, () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'lab-crash-'));
  after(() => rmSync(dataDir, { recursive: true, force: true }));
  const sorted = (pids: number[]) => [...pids].sort((a, b) => a - b);
  const send = async (subject: string) => {
    const sent = await cli('send', '--from', 'alice@sender.test', '--to', 'bob@receiver.test', '--subject', subject, '--wait');
    assert.match(sent.stdout, /inbox -> INBOX/, sent.stderr);
  };

  test('killed with -9, it is restarted alone with its data; killed 5 times within 60 s, the lab stops', async () => {
    const runner = await startRunner(dataDir);
    await send('before the crash');
    const pids = childPids(runner.process.pid!);
    const receiver = pids.find(isReceiver)!;
    process.kill(receiver, 'SIGKILL');
    await said(runner, /lab: receiver is healthy again \(restarted in \d+ ms\)\n/, 15_000);
    assert.match(
      runner.stderr(),
      /lab: receiver stopped unexpectedly \(signal SIGKILL\); its last lines:\n.*receiver \(mx\.receiver\.test\) listening[^]*\nlab: restarting receiver in 100 ms \(crash 1 within 60 s; at 5 the lab stops\)\n/,
    );
    assert.equal((await health(mta('receiver').health)).up, true);
    const restarted = await receiverPid(runner, [receiver]);
    assert.deepEqual(sorted(childPids(runner.process.pid!)), sorted([...pids.filter((p) => p !== receiver), restarted]), 'the others kept their processes');
    await send('after the crash');
    const inbox = await cli('inbox', 'bob@receiver.test');
    for (const subject of ['before the crash', 'after the crash']) assert.match(inbox.stdout, new RegExp(`"${subject}"`));

    // Four more, each as soon as its restart runs: no fifth restart.
    const killed = [receiver];
    for (let crash = 2; crash <= 5; crash++) {
      const pid = await receiverPid(runner, killed);
      process.kill(pid, 'SIGKILL');
      killed.push(pid);
    }
    assert.equal(await runner.exited, 1, runner.stderr());
    assert.match(runner.stderr(), /lab: restarting receiver in 800 ms \(crash 4 within 60 s; at 5 the lab stops\)\n/);
    assert.match(runner.stderr(), /lab: receiver stopped unexpectedly 5 times within 60 s: giving up\nlab: stopping the other services\n(?:.*\n)*lab: stopped after a failure\n$/);
    assert.deepEqual([...pids, ...killed].filter(alive), [], 'every service process has ended');
    assert.deepEqual(await findPortProblems(lab.services), { busy: [], missing: [] });
  });

  test('Ctrl-C while it restarts stops everything', async () => {
    const runner = await startRunner(dataDir);
    const pids = childPids(runner.process.pid!);
    const receiver = pids.find(isReceiver)!;
    process.kill(receiver, 'SIGKILL');
    const restarting = await receiverPid(runner, [receiver]);
    runner.process.kill('SIGINT');
    assert.equal(await runner.exited, 0, runner.stderr());
    assert.match(runner.stderr(), /lab: restarting receiver in 100 ms [^]*lab: SIGINT, stopping\n(?:.*\n)*lab: stopped\n$/);
    assert.deepEqual([...pids, restarting].filter(alive), []);
    assert.deepEqual(await findPortProblems(lab.services), { busy: [], missing: [] });
  });

  test('one that dies before it is healthy cannot start: its last lines, no restart, the others stopped, a non-zero exit', async () => {
    const runner = spawnRunner(dataDir);
    const receiver = await receiverPid(runner);
    const pids = childPids(runner.process.pid!);
    process.kill(receiver, 'SIGKILL');
    assert.equal(await runner.exited, 1);
    assert.match(runner.stderr(), /lab: receiver stopped unexpectedly \(signal SIGKILL\); its last lines:\n(?:.*\n)*lab: stopping the other services\n/);
    assert.doesNotMatch(runner.stderr(), /restarting|lab ready/);
    assert.deepEqual(pids.filter(alive), []);
    assert.deepEqual(await findPortProblems(lab.services), { busy: [], missing: [] });
  });
});
