// compose.yaml for real: the image built, `up` on a Docker engine, every lab
// tool against it, a crash survived, and the same verdicts as the embedded
// lab; then a class: the lesson of support/classroom-flow.ts under compose.
// The lab runs on a private daemon in its own network namespace
// (scripts/lab/docker.ts says why); tools that use the published ports run
// inside that namespace. Under CI it must run and pass (.ci/run installs
// docker.io, docker-compose, debootstrap and iptables; a daemon is started
// here when none answers); elsewhere it is skipped, with the reason, when no
// engine is there. It leaves no daemon, namespace or container behind.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { issueCredentials } from '../services/lib/classroom.ts';
import { readLab, root } from '../scripts/lab/compose.ts';
import {
  buildImage,
  compose,
  containerOf,
  containers,
  inNamespace,
  inspect,
  labDaemonDown,
  labDaemonUp,
  LAB_SOCKET,
  mainDaemon,
  NAMESPACE,
  run,
  untilHealthy,
  whyNoDocker,
} from '../scripts/lab/docker.ts';
import { lockDockerLab, lockEmbeddedLab } from './support/lab-lock.ts';

const CI = process.env.CI === 'true';
const services = readLab().services.length;

let skip: string | false = (await whyNoDocker()) ?? false;
if (skip && CI) throw new Error(`the Docker test cannot run: ${skip}`);
if (!skip && !CI && (await run('docker', ['info'], { timeoutMs: 20_000 })).code !== 0) skip = 'no Docker engine answers here (start dockerd, or run under CI=true)';

// node (this Node) inside the namespace, on the host's files.
const nodeInLab = (args: string[], timeoutMs = 120_000) => inNamespace(process.execPath, args, { timeoutMs });
const cli = (...args: string[]) => nodeInLab(['scripts/lab.ts', ...args, '--compose']);
const fetchInLab = async (url: string) => {
  const script = `const r = await fetch(${JSON.stringify(url)}); process.stdout.write(JSON.stringify({ status: r.status, type: r.headers.get('content-type'), body: await r.text() }));`;
  const result = await nodeInLab(['--input-type=module', '-e', script]);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as { status: number; type: string; body: string };
};

interface Library {
  scenarios: { name: string; passed: boolean; checks: { check: string; expected: string; actual: string; passed: boolean }[] }[];
  passed: number;
  failed: number;
  ms: number;
}

// The main daemon, which built the image.
function withoutLabDaemon(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.DOCKER_HOST;
  return env;
}

describe('docker compose up, for real', { skip, timeout: 30 * 60_000 }, () => {
  let daemon: Awaited<ReturnType<typeof mainDaemon>> | undefined;
  let startedDaemon = false;
  let labDaemon = false;
  let composeLibrary: Library | undefined;
  const figures: string[] = [];

  async function teardown() {
    if (labDaemon) {
      await compose(['down', '-v', '--remove-orphans']).catch(() => undefined);
      await labDaemonDown();
      labDaemon = false;
    }
    await daemon?.stop();
    daemon = undefined;
  }

  before(async () => {
    await lockDockerLab(); // one Docker lab per machine: another test run's waits
    daemon = await mainDaemon();
    startedDaemon = daemon.started;
    const build = await buildImage();
    figures.push(`build ${(build / 1000).toFixed(1)} s`);
    await labDaemonUp();
    labDaemon = true;
    await compose(['down', '-v', '--remove-orphans']); // what an earlier run may have left
  });
  after(teardown);

  test("the image: Node's compile cache filled at build, in a directory the services' user can use", async () => {
    // A cache directory Node cannot create means no cache at all, without a word.
    const script = "const m = require('node:module'); const dir = m.getCompileCacheDir(); console.log(dir ?? 'none', dir ? require('node:fs').readdirSync(dir).length : 0)";
    const result = await run('docker', ['run', '--rm', '--network', 'none', 'mail-lab', 'node', '-e', script], { env: withoutLabDaemon() });
    assert.equal(result.code, 0, result.stderr);
    const [dir, entries] = result.stdout.trim().split(' ');
    assert.match(dir, /^\/home\/node\/compile-cache\/v24\./);
    assert.ok(Number(entries) > 100, `${entries} modules in the cache`);
  });

  test('up: every service healthy', async (t) => {
    const started = performance.now();
    await compose(['up', '-d']);
    const ms = await untilHealthy(services, started);
    figures.push(`up to all healthy ${(ms / 1000).toFixed(1)} s`);
    t.diagnostic(`up to all ${services} healthy: ${(ms / 1000).toFixed(1)} s`);
  });

  test('the lab CLI with --compose: status, lookup, send --wait, inbox', async () => {
    const status = await cli('status');
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^receiver\s+up\s+http:\/\/127\.0\.0\.1:8025\/api\/health\s+instance=receiver hostname=mx\.receiver\.test$/m);
    assert.equal(status.stdout.trim().split('\n').length, services + 1);

    const lookup = await cli('lookup', '_dmarc.sender.test', 'TXT');
    assert.equal(lookup.stdout, '_dmarc.sender.test TXT "v=DMARC1; p=reject; rua=mailto:dmarc-reports@receiver.test"\n', lookup.stderr);

    const honest = await cli('send', '--from', 'alice@sender.test', '--to', 'bob@receiver.test', '--subject', 'through Docker', '--wait');
    assert.equal(honest.code, 0, honest.stderr);
    assert.match(honest.stdout, /^queued as \S+ at sender \(mta\.sender\.test, AUTH alice@sender\.test\)/);
    assert.match(honest.stdout, /bob@receiver\.test at receiver \(mx\.receiver\.test\):\n {2}inbox -> INBOX {2}spf=pass dkim=pass dmarc=pass\n/);

    const spoof = await cli('send', '--via', 'attacker', '--from', 'ceo@sender.test', '--to', 'alice@receiver.test', '--wait');
    assert.match(spoof.stdout, /alice@receiver\.test at receiver \(mx\.receiver\.test\):\n {2}reject 550 5\.7\.1 {2}spf=fail dkim=none dmarc=fail\n/, spoof.stderr);

    const inbox = await cli('inbox', 'bob@receiver.test');
    assert.match(inbox.stdout, /from alice@sender\.test via 192\.0\.2\.10 {2}"through Docker"\n {2}inbox -> INBOX/, inbox.stderr);

    // The receiver's submission port is not published: said, not attempted.
    const unpublished = await cli('send', '--via', 'receiver', '--from', 'alice@receiver.test', '--to', 'bob@receiver.test');
    assert.equal(unpublished.code, 2);
    assert.match(unpublished.stderr, /receiver's submission port is not published by compose\.yaml/);
  });

  test('the scenario library with --compose: every scenario passes', async (t) => {
    const result = await nodeInLab(['scripts/scenario.ts', 'all', '--compose', '--json'], 600_000);
    assert.equal(result.code, 0, `the library against compose: exit ${result.code}\n${result.stderr.trim().split('\n').slice(-30).join('\n')}`);
    composeLibrary = JSON.parse(result.stdout) as Library;
    const failed = composeLibrary.scenarios.filter((s) => !s.passed).map((s) => ({ name: s.name, wrong: s.checks.filter((c) => !c.passed) }));
    assert.deepEqual(failed, [], result.stderr);
    figures.push(`compose library ${(composeLibrary.ms / 1000).toFixed(1)} s`);
    t.diagnostic(`the library against compose: ${(composeLibrary.ms / 1000).toFixed(1)} s`);
  });

  test("the console and the API answer on the published ports", async () => {
    const page = await fetchInLab('http://127.0.0.1:8025/');
    assert.equal(page.status, 200);
    assert.match(page.type, /^text\/html/);
    assert.match(page.body, /<title>[^<]*mail-lab[^<]*<\/title>/i);
    const health = await fetchInLab('http://127.0.0.1:8026/api/health');
    assert.deepEqual(JSON.parse(health.body), { status: 'ok', instance: 'sender', hostname: 'mta.sender.test' });
    const queries = await fetchInLab('http://127.0.0.1:8025/api/dns/queries?limit=5');
    assert.equal(queries.status, 200, queries.body);
  });

  test('kill -9 of the receiver: it comes back healthy, with its mail, and closes the session the crash cut off', async (t) => {
    const messageId = `<crash-${Date.now()}@attacker.test>`;
    // A client inside the namespace: one message delivered, then the session left open.
    const client = `
      import { connect } from 'node:net';
      const socket = connect(10025, '127.0.0.1');
      const lines = ['EHLO crash-probe.attacker.test', 'MAIL FROM:<probe@attacker.test>', 'RCPT TO:<bob@receiver.test>', 'DATA',
        'From: probe@attacker.test\\r\\nTo: bob@receiver.test\\r\\nSubject: before the crash\\r\\nMessage-ID: ${messageId}\\r\\n\\r\\nStill here?\\r\\n.',
        'MAIL FROM:<probe@attacker.test>'];
      let buffer = '';
      socket.setEncoding('utf8').on('data', (chunk) => {
        buffer += chunk;
        for (let end; (end = buffer.indexOf('\\r\\n')) >= 0; buffer = buffer.slice(end + 2)) {
          const line = buffer.slice(0, end);
          if (line[3] === '-') continue;
          process.stdout.write(line + '\\n');
          const next = lines.shift();
          if (next === undefined) { process.stdout.write('open\\n'); continue; }
          socket.write(next + '\\r\\n');
        }
      });
      socket.on('close', () => process.exit(0));`;
    const probe = spawn('ip', ['netns', 'exec', NAMESPACE, process.execPath, '--input-type=module', '-e', client], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let heard = '';
    probe.stdout.setEncoding('utf8').on('data', (chunk: string) => (heard += chunk));
    try {
      for (const deadline = Date.now() + 20_000; !heard.includes('open\n'); await new Promise((r) => setTimeout(r, 50))) {
        if (Date.now() > deadline || probe.exitCode !== null) assert.fail(`the session did not get as far as an open transaction:\n${heard}`);
      }
      assert.match(heard, /^354 .*\n250 /m, 'the message was accepted');

      const receiver = containerOf(await containers(), 'receiver');
      const before = await inspect(receiver.Id);
      process.kill(before.State.Pid, 'SIGKILL');
      const killed = performance.now();
      for (const deadline = Date.now() + 60_000; ; await new Promise((r) => setTimeout(r, 100))) {
        const now = await inspect(receiver.Id);
        if (now.RestartCount > before.RestartCount && now.State.Health?.Status === 'healthy') break;
        if (Date.now() > deadline) assert.fail(`the receiver did not come back healthy within 60 s: ${now.State.Status}, ${now.State.Health?.Status}`);
      }
      t.diagnostic(`kill -9 to healthy again: ${((performance.now() - killed) / 1000).toFixed(1)} s`);
    } finally {
      probe.kill();
    }

    const [summary] = JSON.parse((await fetchInLab(`http://127.0.0.1:8025/api/sessions?messageId=${encodeURIComponent(messageId)}`)).body);
    assert.ok(summary, 'the session is still on record');
    const record = JSON.parse((await fetchInLab(`http://127.0.0.1:8025/api/sessions/${summary.id}`)).body);
    assert.equal(record.client.helo, 'crash-probe.attacker.test');
    assert.ok(record.endedAt, 'closed, with an end time');
    assert.match(record.interrupted?.reason ?? '', /stopped without closing the session/);
    assert.equal(record.transactions[0].decision.disposition, 'inbox');
    const messages = JSON.parse((await fetchInLab('http://127.0.0.1:8025/api/mailboxes/bob@receiver.test/INBOX?limit=50')).body);
    assert.ok(
      messages.items.some((m: { messageId?: string; subject?: string }) => m.messageId === messageId || m.subject === 'before the crash'),
      'the message accepted before the crash is in the mailbox',
    );
    // The mail from before the scenario library too (more than the newest 20 the inbox command lists).
    const all = JSON.parse((await fetchInLab('http://127.0.0.1:8025/api/mailboxes/bob@receiver.test/INBOX?limit=200')).body);
    assert.ok(all.items.some((m: { subject?: string }) => m.subject === 'through Docker'), 'and so is the mail from before');
    const inbox = await cli('inbox', 'bob@receiver.test');
    assert.match(inbox.stdout, /"before the crash"/, 'the lab CLI reads it after the restart');
  });

  test('a class under compose: the same lesson as in the embedded lab, and a restart keeps the zones, keys and mail', async (t) => {
    // The class directory is mounted into the containers, whose user must read it.
    const classDir = mkdtempSync(join(tmpdir(), 'class-'));
    chmodSync(classDir, 0o755);
    writeFileSync(join(classDir, 'class.yaml'), 'name: Docker class\nstudents: [ana, ben]\n');
    const issued = join(mkdtempSync(join(tmpdir(), 'class-issued-')), 'credentials.json');
    writeFileSync(issued, JSON.stringify(Object.fromEntries(issueCredentials(classDir).issued)));
    process.env.LAB_CLASS = classDir; // compose.yaml's ${LAB_CLASS}: compose() passes the environment on
    try {
      let started = performance.now();
      await compose(['up', '-d']); // each service again, with the class
      t.diagnostic(`up with the class to all healthy: ${((await untilHealthy(services, started)) / 1000).toFixed(1)} s`);
      const lesson = await nodeInLab(['test/support/classroom-in-lab.ts', issued, 'lesson']);
      assert.equal(lesson.code, 0, lesson.stderr);
      started = performance.now();
      await compose(['restart']);
      await untilHealthy(services, started);
      const after = await nodeInLab(['test/support/classroom-in-lab.ts', issued, 'after-restart', lesson.stdout.trim()]);
      assert.equal(after.code, 0, after.stderr);
    } finally {
      delete process.env.LAB_CLASS;
      rmSync(classDir, { recursive: true, force: true });
      rmSync(dirname(issued), { recursive: true, force: true });
    }
  });

  test('down -v and the private daemon gone: nothing left behind; the embedded lab gives the same verdicts', async (t) => {
    await teardown();
    assert.equal(existsSync(LAB_SOCKET), false, 'the lab daemon is gone');
    assert.doesNotMatch((await run('ip', ['netns', 'list'])).stdout, new RegExp(`\\b${NAMESPACE}\\b`), 'its namespace is gone');
    if (startedDaemon) assert.equal((await run('pgrep', ['-x', 'dockerd'])).code, 1, 'the dockerd this test started is gone');

    assert.ok(composeLibrary, 'the compose run happened');
    await lockEmbeddedLab();
    const embedded = await run(process.execPath, ['scripts/scenario.ts', 'all', '--json'], { timeoutMs: 300_000 });
    // Its stderr says how far it got: a run cut off by the time limit prints no JSON.
    assert.equal(embedded.code, 0, `the library against the embedded lab: exit ${embedded.code} after ${(embedded.ms / 1000).toFixed(0)} s\n${embedded.stderr.trim().split('\n').slice(-30).join('\n')}`);
    const library = JSON.parse(embedded.stdout) as Library;
    const verdicts = (l: Library) => l.scenarios.map((s) => ({ name: s.name, checks: s.checks.map(({ check, expected, actual }) => ({ check, expected, actual })) }));
    assert.deepEqual(verdicts(composeLibrary), verdicts(library));
    figures.push(`embedded library ${(library.ms / 1000).toFixed(1)} s`);
    t.diagnostic(figures.join('; '));
  });
});
