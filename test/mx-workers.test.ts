// MTA_MX_WORKERS: the MX in several processes sharing its port. The first
// process's API still lists every session and queues what any worker
// forwards; a worker that dies is replaced; SIGTERM stops them all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { DnsServer } from '../services/dns/server.ts';
import { waitFor } from './support/mail.ts';
import { alive, childPids, instanceFile, startMta } from './support/processes.ts';
import { RawSmtp } from './support/smtp.ts';

const root = new URL('../', import.meta.url).pathname;
const host = '127.0.2.30'; // the forwarder's loopback twin
const senderTwin = '127.0.2.10'; // mta.sender.test: SPF passes for sender.test
const CONNECTIONS = 4;

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
    const { file, ports } = await instanceFile('forwarder', host, work);
    mta = startMta({ MTA_CONFIG: file, LAB_EMBEDDED: '1', MTA_DATA_DIR: join(work, 'data'), LAB_DNS: `127.0.2.53:${dns.port}`, MTA_MX_WORKERS: '2' });
    const exited = new Promise<number | null>((resolve) => mta!.once('exit', (code) => resolve(code)));
    const api = `http://${host}:${ports.api}/api`;
    const get = async (path: string) => (await fetch(`${api}${path}`)).json();
    await waitFor('the API answers', () => fetch(`${api}/health`).then((r) => (r.ok ? true : undefined), () => undefined));
    const workers = childPids(mta.pid!);
    assert.equal(workers.length, 2, 'two MX worker processes');
    assert.deepEqual((await get('/health')).mxWorkers, { listening: 2, of: 2 });

    // Sessions at once: the first process hands connections to the workers in turn.
    const results = await Promise.all(Array.from({ length: CONNECTIONS }, (_, n) => session(ports.mx, n)));
    for (const codes of results) assert.deepEqual(codes, [250, 250, 250, 354, 250, 250, 250, 354, 250, 221]);

    const inbox = join(work, 'data/mail/forwarder.test/postmaster/new');
    const names = readdirSync(inbox);
    assert.equal(names.length, CONNECTIONS);
    const pids = new Set(names.map((name) => Number(/P(\d+)Q/.exec(name)![1])));
    assert.deepEqual([...pids].sort(), [...workers].sort(), 'both workers delivered');

    // The API of the first process lists every worker's sessions, complete
    // (workers tell it their saves in batches, a few milliseconds apart).
    const sessions = await waitFor('every session listed with both messages, and ended', async () => {
      const list = await get('/sessions');
      if (list.length !== CONNECTIONS || list.some((s: { messageIds: string[] }) => s.messageIds.length !== 2)) return undefined;
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
    await waitFor('a new worker in its place, listening', async () => {
      const now = childPids(mta!.pid!);
      const { mxWorkers } = await get('/health');
      return now.length === 2 && !now.includes(workers[0]) && mxWorkers.listening === 2 ? true : undefined;
    });
    const again = await Promise.all([session(ports.mx, 7), session(ports.mx, 8)]);
    for (const codes of again) assert.deepEqual(codes, [250, 250, 250, 354, 250, 250, 250, 354, 250, 221]);
    await waitFor('the new sessions listed', async () => ((await get('/sessions')).length === CONNECTIONS + 2 ? true : undefined));

    // SIGTERM to the first process: it and its workers end.
    const last = childPids(mta.pid!);
    const stopped = Date.now();
    mta.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.ok(Date.now() - stopped < 5000, `stopping took ${Date.now() - stopped} ms`);
    await waitFor('the workers ended', () => (last.some(alive) ? undefined : true));
  } finally {
    mta?.kill('SIGKILL');
    await dns.close();
    rmSync(work, { recursive: true, force: true });
  }
});
