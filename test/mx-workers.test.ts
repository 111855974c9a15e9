// MTA_MX_WORKERS: the MX in several processes sharing its port. The first
// process's API still lists every session and queues what any worker
// forwards; a worker that dies is replaced; SIGTERM stops them all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { parse, stringify } from 'yaml';
import { DnsServer } from '../services/dns/server.ts';
import { RawSmtp } from './support/smtp.ts';

const root = new URL('../', import.meta.url).pathname;
const host = '127.0.2.30'; // the forwarder's loopback twin
const senderTwin = '127.0.2.10'; // mta.sender.test: SPF passes for sender.test
const CONNECTIONS = 4;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const children = (pid: number) =>
  readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function until<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    assert.ok(Date.now() < deadline, `${what}: not within ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const message = (n: number, to: string) =>
  `From: Alice <alice@sender.test>\r\nTo: <${to}>\r\nSubject: worker test ${n}\r\n` +
  `Date: ${new Date().toUTCString()}\r\nMessage-ID: <workers-${n}-${Date.now()}@sender.test>\r\n\r\nMessage ${n}.\r\n.\r\n`;

// One session: a message for the local postmaster, one for the alias.
async function session(port: number, n: number): Promise<number[]> {
  const { smtp } = await RawSmtp.open(host, port, senderTwin);
  const codes = [(await smtp.command('EHLO mta.sender.test')).code];
  for (const [i, to] of ['postmaster@forwarder.test', 'alice@forwarder.test'].entries()) {
    codes.push((await smtp.command('MAIL FROM:<alice@sender.test>')).code);
    codes.push((await smtp.command(`RCPT TO:<${to}>`)).code);
    codes.push((await smtp.command('DATA')).code);
    smtp.write(message(n * 10 + i, to));
    codes.push((await smtp.read()).code);
  }
  codes.push((await smtp.command('QUIT')).code);
  return codes;
}

test('MX worker processes: one API for all sessions, forwarded mail queued, a dead worker replaced, SIGTERM ends all', { timeout: 60_000 }, async () => {
  const work = mkdtempSync(join(tmpdir(), 'mx-workers-'));
  const dns = new DnsServer({ listen: { host: '127.0.2.53', port: 0 }, zoneDir: join(root, 'dns-zone'), logger: pino({ level: 'silent' }) });
  await dns.start();
  let mta: ChildProcess | undefined;
  try {
    const instance = parse(readFileSync(join(root, 'instances/forwarder.yaml'), 'utf8'));
    for (const name of Object.keys(instance.ports)) instance.ports[name] = await freePort();
    writeFileSync(join(work, 'forwarder.yaml'), stringify(instance));
    const env = { MTA_CONFIG: join(work, 'forwarder.yaml'), LAB_EMBEDDED: '1', MTA_DATA_DIR: join(work, 'data'), LAB_DNS: `127.0.2.53:${dns.port}`, MTA_MX_WORKERS: '2' };
    mta = spawn(process.execPath, ['services/mta/main.ts'], { cwd: root, env: { ...process.env, LOG_LEVEL: 'silent', ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
    const exited = new Promise<number | null>((resolve) => mta!.once('exit', (code) => resolve(code)));
    const api = `http://${host}:${instance.ports.api}/api`;
    const get = async (path: string) => (await fetch(`${api}${path}`)).json();
    await until('the API answers', () => fetch(`${api}/health`).then((r) => (r.ok ? true : undefined), () => undefined));
    const workers = children(mta.pid!);
    assert.equal(workers.length, 2, 'two MX worker processes');
    assert.deepEqual((await get('/health')).mxWorkers, { listening: 2, of: 2 });

    // Sessions at once: the first process hands connections to the workers in turn.
    const results = await Promise.all(Array.from({ length: CONNECTIONS }, (_, n) => session(instance.ports.mx, n)));
    for (const codes of results) assert.deepEqual(codes, [250, 250, 250, 354, 250, 250, 250, 354, 250, 221]);

    const inbox = join(work, 'data/mail/forwarder.test/postmaster/new');
    const names = readdirSync(inbox);
    assert.equal(names.length, CONNECTIONS);
    const pids = new Set(names.map((name) => Number(/P(\d+)Q/.exec(name)![1])));
    assert.deepEqual([...pids].sort(), [...workers].sort(), 'both workers delivered');

    // The API of the first process lists every worker's sessions, complete.
    const sessions = await until('every session listed and ended', async () => {
      const list = await get('/sessions');
      if (list.length !== CONNECTIONS) return undefined;
      const records = await Promise.all(list.map((s: { id: string }) => get(`/sessions/${s.id}`)));
      return records.every((r) => r.endedAt) ? records : undefined;
    });
    for (const record of sessions) {
      assert.deepEqual(
        record.transactions.map((t: { decision: { disposition: string } }) => t.decision.disposition),
        ['inbox', 'inbox'],
      );
      assert.ok(record.transcript.some((l: { line: string }) => l.line === 'S: 221 2.0.0 Bye'));
    }
    assert.equal((await get('/sessions?recipient=alice@forwarder.test')).length, CONNECTIONS);

    // What the workers forwarded is in the first process's queue, for alice@receiver.test.
    const forwarded = sessions.flatMap((r) => r.transactions.flatMap((t: { forwarded?: { queueId: string }[] }) => t.forwarded ?? []));
    assert.equal(forwarded.length, CONNECTIONS);
    const queue = await get('/queue');
    for (const { queueId } of forwarded) {
      const entry = queue.find((e: { id: string }) => e.id === queueId);
      assert.ok(entry, `${queueId} is not in the queue the API shows`);
      assert.equal(entry.origin, 'forward');
      assert.deepEqual(entry.recipients.map((r: { address: string }) => r.address), ['alice@receiver.test']);
    }

    // A worker killed outright is replaced, and the MX goes on.
    process.kill(workers[0], 'SIGKILL');
    await until('a new worker in its place, listening', async () => {
      const now = children(mta!.pid!);
      const { mxWorkers } = await get('/health');
      return now.length === 2 && !now.includes(workers[0]) && mxWorkers.listening === 2 ? true : undefined;
    });
    const again = await Promise.all([session(instance.ports.mx, 7), session(instance.ports.mx, 8)]);
    for (const codes of again) assert.deepEqual(codes, [250, 250, 250, 354, 250, 250, 250, 354, 250, 221]);
    await until('the new sessions listed', async () => ((await get('/sessions')).length === CONNECTIONS + 2 ? true : undefined));

    // SIGTERM to the first process: it and its workers end.
    const last = children(mta.pid!);
    const stopped = Date.now();
    mta.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.ok(Date.now() - stopped < 5000, `stopping took ${Date.now() - stopped} ms`);
    await until('the workers ended', () => (last.some(alive) ? undefined : true));
  } finally {
    mta?.kill('SIGKILL');
    await dns.close();
    rmSync(work, { recursive: true, force: true });
  }
});
