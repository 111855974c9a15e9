// Accepted means delivered, even through a crash: the sender runs as its own
// process (as `npm run mta` runs it), takes a burst of submissions while the
// receiver is down, and is killed with SIGKILL in the middle of the burst.
// Started again on the same data, with the receiver up, it delivers every
// message it had answered 250, and none twice. Killed while it delivers a
// backlog, it names at its next start the attempts that were under way, and
// only those can arrive twice (one duplicate at most, no loss).
// And a state file that a crash or a full disk left empty or cut short is
// moved aside and named in the log; the sender starts and delivers the rest.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { parse, stringify } from 'yaml';
import { startControl } from '../services/dns/control.ts';
import { DnsServer } from '../services/dns/server.ts';
import { loopbackTwin } from '../services/lib/addressing.ts';
import { writeEntry } from '../services/mta/outbound/queue.ts';
import { message, submit, waitFor } from './support/mail.ts';
import { freePort } from './support/processes.ts';

const root = new URL('../', import.meta.url).pathname;
const SENDER = '127.0.2.10';
// The embedded sender reaches every MX on port 25 + 10000 of the loopback
// twin of the address DNS gives. So that this test can run beside an
// embedded lab or a benchmark (which hold 127.0.2.20:10025 or the like), the
// receiver runs on a spare lab address that the lab DNS gives as
// mx.receiver.test's.
const MX_PORT = 10025;
const CONNECTIONS = 4;
const KILL_AFTER = 12; // acknowledged submissions
const BACKLOG = 40; // messages waiting for the receiver, then delivered at once

function portInUse(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer().once('error', () => resolve(true));
    server.listen(port, host, () => server.close(() => resolve(false)));
  });
}

// A lab address in 192.0.2.120-129 whose loopback twin has the MX port free.
async function spareAddress(): Promise<string> {
  for (let host = 120; host < 130; host++) if (!(await portInUse(`127.0.2.${host}`, MX_PORT))) return `192.0.2.${host}`;
  throw new Error(`127.0.2.120-129:${MX_PORT} are all in use`);
}

// A copy of an instance file with some top-level settings replaced.
function instanceFile(work: string, name: string, changes: Record<string, unknown>): string {
  const instance = { ...parse(readFileSync(join(root, 'instances', `${name}.yaml`), 'utf8')), ...changes };
  const file = join(work, `${name}.yaml`);
  writeFileSync(file, stringify(instance));
  return file;
}

// With log, its JSON log lines are appended to log.text.
function startMta(config: string, dataDir: string, dnsPort: number, log?: { text: string }): ChildProcess {
  const env = { ...process.env, MTA_CONFIG: config, MTA_DATA_DIR: dataDir, LAB_EMBEDDED: '1', LAB_DNS: `127.0.2.53:${dnsPort}`, LOG_LEVEL: log ? 'info' : 'silent', LOG_FORMAT: 'json' };
  const child = spawn(process.execPath, ['services/mta/main.ts'], { cwd: root, env, stdio: ['ignore', log ? 'pipe' : 'ignore', 'ignore'] });
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (log!.text += chunk));
  return child;
}

async function healthy(api: string, child: ChildProcess): Promise<void> {
  await waitFor(`${api} to answer`, async () => {
    assert.equal(child.exitCode, null, `the MTA behind ${api} exited`);
    return fetch(`${api}/api/health`).then((r) => (r.ok ? true : undefined), () => undefined);
  });
}

function kill(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  return exited;
}

// The lab DNS in this process, and a sender and a receiver as processes on
// a work directory: the receiver on a spare lab address that the DNS gives
// as mx.receiver.test's. close() kills what runs and removes it all.
async function crashLab(sender: Record<string, unknown>) {
  const receiverLab = await spareAddress();
  const receiverHost = loopbackTwin(receiverLab);
  const work = mkdtempSync(join(tmpdir(), 'outbound-crash-'));
  const silent = pino({ level: 'silent' });
  const dns = new DnsServer({ listen: { host: '127.0.2.53', port: 0 }, zoneDir: join(root, 'dns-zone'), logger: silent });
  await dns.start();
  const control = await startControl(dns, { host: '127.0.2.53', port: 0 }, silent);
  const { port } = control.address() as { port: number };
  const override = { name: 'mx.receiver.test', type: 'A', values: [receiverLab] };
  assert.equal((await fetch(`http://127.0.2.53:${port}/overrides`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(override) })).status, 200);

  const senderPorts = { mx: await freePort(SENDER), submission: await freePort(SENDER), api: await freePort(SENDER) };
  const senderFile = instanceFile(work, 'sender', { ports: senderPorts, ...sender });
  const receiverPorts = { mx: 25, submission: await freePort(receiverHost), api: await freePort(receiverHost) };
  const receiverFile = instanceFile(work, 'receiver', { ports: receiverPorts, address: receiverLab });
  const senderApi = `http://${SENDER}:${senderPorts.api}`;
  const inbox = join(work, 'receiver/mail/receiver.test/bob/new');
  let senderProcess: ChildProcess | undefined;
  let receiverProcess: ChildProcess | undefined;
  return {
    senderApi,
    submission: { host: SENDER, submissionPort: senderPorts.submission },
    queueDir: join(work, 'sender/queue'),
    inbox,
    async startSender(log?: { text: string }): Promise<ChildProcess> {
      senderProcess = startMta(senderFile, join(work, 'sender'), dns.port, log);
      await healthy(senderApi, senderProcess);
      return senderProcess;
    },
    async startReceiver(): Promise<void> {
      receiverProcess = startMta(receiverFile, join(work, 'receiver'), dns.port);
      await healthy(`http://${receiverHost}:${receiverPorts.api}`, receiverProcess);
    },
    // The Message-IDs of the messages in bob's INBOX, one per copy.
    delivered(): string[] {
      if (!existsSync(inbox)) return [];
      return readdirSync(inbox).map((name) => /\r\nMessage-ID: (<[^>]+>)\r\n/i.exec(readFileSync(join(inbox, name), 'latin1'))?.[1] ?? name);
    },
    async queueEmpty(): Promise<void> {
      await waitFor('the sender\'s queue to empty', async () => ((await (await fetch(`${senderApi}/api/queue`)).json()).length === 0 ? true : undefined));
    },
    async close(): Promise<void> {
      await kill(senderProcess);
      await kill(receiverProcess);
      control.close();
      await dns.close();
      rmSync(work, { recursive: true, force: true });
    },
  };
}

// Submissions over several connections until the sender is gone; the kill
// comes after killAfter acknowledgements, with others in flight. Returns
// the Message-IDs that got 250.
async function burst(lab: Awaited<ReturnType<typeof crashLab>>, sender: ChildProcess, killAfter: number): Promise<string[]> {
  const accepted: string[] = [];
  let next = 0;
  let inFlightAtKill = -1;
  let inFlight = 0;
  const client = async () => {
    for (;;) {
      const id = `crash-${next++}`;
      inFlight++;
      const reply = await submit(lab.submission, { user: 'alice@sender.test', mailFrom: 'alice@sender.test', to: ['bob@receiver.test'], data: message('Alice <alice@sender.test>', 'bob@receiver.test', id) }).catch(() => undefined);
      inFlight--;
      if (reply?.code !== 250) return;
      accepted.push(`<${id}@client.example>`);
      if (accepted.length === killAfter) {
        inFlightAtKill = inFlight;
        sender.kill('SIGKILL');
      }
    }
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, client));
  await kill(sender);
  assert.ok(accepted.length >= killAfter, `only ${accepted.length} submissions were accepted`);
  assert.ok(inFlightAtKill > 0, 'no submission was in flight at the kill');
  return accepted;
}

// How many copies of each Message-ID bob has.
function copies(lab: Awaited<ReturnType<typeof crashLab>>): Map<string, number> {
  const count = new Map<string, number>();
  for (const id of lab.delivered()) count.set(id, (count.get(id) ?? 0) + 1);
  return count;
}

test('kill -9 with mail in the queue: started again, the sender delivers every message it accepted, once', { timeout: 45_000 }, async () => {
  const lab = await crashLab({ delivery: { retryInitialSeconds: 1, retryMaxSeconds: 1, giveUpAfterSeconds: 600 } });
  try {
    const accepted = await burst(lab, await lab.startSender(), KILL_AFTER);

    await lab.startReceiver();
    await lab.startSender();
    await waitFor('every accepted message in bob\'s Maildir', () => (accepted.every((id) => copies(lab).has(id)) ? true : undefined), 20_000);
    await lab.queueEmpty();
    // Nothing reached the receiver before the kill: nothing can come twice.
    assert.deepEqual([...copies(lab)].filter(([, n]) => n > 1), []);
  } finally {
    await lab.close();
  }
});

test('kill -9 while messages are being delivered: started again, the sender names the attempts that were under way, delivers every accepted message, and none more than twice', { timeout: 45_000 }, async (t) => {
  const lab = await crashLab({ delivery: { retryInitialSeconds: 1, retryMaxSeconds: 1, giveUpAfterSeconds: 600 } });
  try {
    // A backlog while the receiver is down; once it is up, the sender's next
    // round delivers many at once, and the kill comes with the first arrival.
    const sender = await lab.startSender();
    const accepted = Array.from({ length: BACKLOG }, (_, i) => `<backlog-${i}@client.example>`);
    for (let i = 0; i < BACKLOG; i++) {
      const reply = await submit(lab.submission, { user: 'alice@sender.test', mailFrom: 'alice@sender.test', to: ['bob@receiver.test'], data: message('Alice <alice@sender.test>', 'bob@receiver.test', `backlog-${i}`) });
      assert.equal(reply.code, 250, reply.text);
    }
    await lab.startReceiver();
    // waitFor looks every 50 ms: too seldom here.
    const deadline = Date.now() + 10_000;
    while (!lab.delivered().length) {
      assert.ok(Date.now() < deadline, 'nothing arrived within 10 s');
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await kill(sender);

    const log = { text: '' };
    await lab.startSender(log);
    await waitFor('every accepted message in bob\'s Maildir', () => (accepted.every((id) => copies(lab).has(id)) ? true : undefined), 20_000);
    await lab.queueEmpty();

    // The attempts recorded as under way at the kill, by Message-ID.
    const interrupted = new Set(
      log.text
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line))
        .filter((line) => line.level === 40 && line.msg.includes('was under way when the MTA stopped'))
        .map((line) => line.messageId as string),
    );
    assert.ok(interrupted.size > 0, `no delivery was recorded as under way at the kill:\n${log.text}`);
    const twice = [...copies(lab)].filter(([, n]) => n > 1);
    assert.deepEqual(twice.filter(([, n]) => n > 2), [], 'more than one duplicate of a message');
    // Only what was in flight can come twice, and the sender knew it.
    assert.deepEqual(twice.filter(([id]) => !interrupted.has(id)), [], `duplicates of messages not recorded as in flight (${[...interrupted].join(', ')})`);
    t.diagnostic(`${BACKLOG} accepted; ${interrupted.size} deliveries under way at the kill; ${twice.length} delivered twice`);
  } finally {
    await lab.close();
  }
});

test('an empty and a cut-short queue state file: moved aside with their messages and named in the log; the sender starts and delivers the rest', { timeout: 30_000 }, async () => {
  const lab = await crashLab({});
  try {
    // Three messages queued as submission queues them; then two state files
    // damaged as a crash before the data reached the disk, or a full disk, leaves them.
    mkdirSync(lab.queueDir, { recursive: true });
    const queue = (id: string) => writeEntry(lab.queueDir, Buffer.from(message('Alice <alice@sender.test>', 'bob@receiver.test', id)), { mailFrom: 'alice@sender.test', recipients: ['bob@receiver.test'], origin: 'submission' });
    const intact = await queue('intact');
    const empty = await queue('empty-state');
    const cut = await queue('cut-state');
    truncateSync(join(lab.queueDir, `${empty.id}.json`), 0);
    truncateSync(join(lab.queueDir, `${cut.id}.json`), 40);

    await lab.startReceiver();
    const log = { text: '' };
    await lab.startSender(log);

    for (const { id } of [empty, cut]) {
      for (const name of [`${id}.json`, `${id}.eml`]) {
        assert.ok(existsSync(join(lab.queueDir, 'damaged', name)), `${name} is not in queue/damaged/`);
        assert.ok(!existsSync(join(lab.queueDir, name)), `${name} is still in the queue`);
      }
      const file = join(lab.queueDir, `${id}.json`);
      const line = log.text.split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((l) => l.file === file);
      assert.ok(line, `no log line names ${file}:\n${log.text}`);
      assert.equal(line.level, 50); // error
      assert.match(line.reason, /JSON/);
      assert.equal(line.movedTo, join(lab.queueDir, 'damaged'));
      assert.ok(line.msg.includes(file), line.msg);
    }

    await lab.queueEmpty();
    assert.deepEqual(lab.delivered(), ['<intact@client.example>']);
    assert.ok(!existsSync(join(lab.queueDir, `${intact.id}.json`)));
  } finally {
    await lab.close();
  }
});
