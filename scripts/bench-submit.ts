// npm run bench:submit: the whole outbound path, end to end, in processes as
// the embedded lab runs them (the lab DNS, the sender, the receiver):
// messages are submitted with AUTH over persistent sessions, signed (RSA and
// Ed25519), queued, delivered through the lab DNS, verified by the receiver
// and stored in bob@receiver.test's Maildir. It prints delivered messages
// per second, latency from the 250 at submission to the file in the Maildir
// (its mtime: written, fsynced, then renamed into new/), each MTA's peak RSS,
// the CPU time each process spent per message, and what everything else on
// the machine used meanwhile (rates compare only between runs on an
// otherwise idle machine); then checks that every message arrived once,
// passed SPF, DKIM and DMARC, and that the sender's queue is empty.
//   BENCH_MESSAGES  messages (default 2000)
//   BENCH_CLIENTS   submission sessions in parallel (default 8)
//   BENCH_TIMEOUT   seconds the run may take at most (default 120)
//   BENCH_PROFILE   a directory: sender and receiver run with --cpu-prof and write their profiles there
// The data stays in a fresh directory under /tmp: deleting thousands of files
// on a disk mounted with discard would slow the fsyncs of the next run.
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { createTransport } from 'nodemailer';
import { parse, stringify } from 'yaml';
import { loopbackTwin } from '../services/lib/addressing.ts';
import { exitOnConfigError, readInteger, readString } from '../services/lib/config.ts';
import { freePort, peakRssMiB, start, stop, waitForHttp } from './bench/processes.ts';

const root = resolve(import.meta.dirname, '..');

let settings;
try {
  settings = {
    messages: readInteger(process.env, 'BENCH_MESSAGES', 2000, 1, 1_000_000),
    clients: readInteger(process.env, 'BENCH_CLIENTS', 8, 1, 100),
    timeoutMs: readInteger(process.env, 'BENCH_TIMEOUT', 120, 1, 3600) * 1000,
    profile: readString(process.env, 'BENCH_PROFILE', ''),
  };
} catch (error) {
  exitOnConfigError(error);
}
const { messages, clients, timeoutMs, profile } = settings;

const SENDER = '127.0.2.10'; // mta.sender.test, the address sender.test's SPF names
// The embedded sender reaches every MX on port 10025 of the loopback twin of
// the address DNS gives. The receiver runs on a spare lab address, which the
// lab DNS gives as mx.receiver.test's, so that the benchmark can run beside
// an embedded lab (which holds 127.0.2.20:10025) or a test run.
const MX_PORT = 10025;
const work = mkdtempSync('/tmp/bench-submit-');
const deadline = Date.now() + timeoutMs;
const now = () => performance.timeOrigin + performance.now(); // ms, comparable with file times

// A copy of an instance file with some top-level settings replaced.
function instanceFile(name: string, changes: Record<string, unknown>): string {
  const instance = { ...parse(readFileSync(join(root, 'instances', `${name}.yaml`), 'utf8')), ...changes };
  const file = join(work, `${name}.yaml`);
  writeFileSync(file, stringify(instance));
  return file;
}

function mta(name: string, config: string) {
  const cpuProfile = profile ? ['--cpu-prof', `--cpu-prof-dir=${resolve(profile)}`, `--cpu-prof-name=${name}.cpuprofile`] : [];
  return start(process.execPath, [...cpuProfile, 'services/mta/main.ts'], {
    cwd: root,
    env: { ...process.env, MTA_CONFIG: config, MTA_DATA_DIR: join(work, name), LAB_EMBEDDED: '1', LAB_DNS: `127.0.2.53:${dnsPort}`, LAB_DNS_CONTROL: `127.0.2.53:${controlPort}`, LOG_LEVEL: 'silent' },
  });
}

// Waits for `check`, bounded by BENCH_TIMEOUT; stops early when a process has died.
async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await check())) {
    for (const [name, child] of Object.entries({ dns, sender, receiver })) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what}: the ${name} exited (${child.signalCode ?? `code ${child.exitCode}`})`);
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within BENCH_TIMEOUT (${timeoutMs / 1000} s)`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// CPU time used so far, in seconds, by a process and by the whole machine
// (Linux: /proc, in USER_HZ = 100 ticks per second).
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
function machineBusySeconds(): number {
  const [user, nice, system, , , irq, softirq, steal] = readFileSync('/proc/stat', 'utf8').split('\n')[0].split(/\s+/).slice(1).map(Number);
  return (user + nice + system + irq + softirq + steal) / 100;
}
// What each process of the benchmark, and everything else, has used.
function cpuNow() {
  const ours = { sender: cpuSeconds(sender.pid!), receiver: cpuSeconds(receiver.pid!), dns: cpuSeconds(dns.pid!), client: cpuSeconds(process.pid) };
  return { ...ours, others: machineBusySeconds() - Object.values(ours).reduce((a, b) => a + b, 0) };
}

function portInUse(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer().once('error', () => resolve(true));
    server.listen(port, host, () => server.close(() => resolve(false)));
  });
}

// A lab address in 192.0.2.130-139 whose loopback twin has the MX port free.
async function spareAddress(): Promise<string> {
  for (let host = 130; host < 140; host++) if (!(await portInUse(`127.0.2.${host}`, MX_PORT))) return `192.0.2.${host}`;
  throw new Error(`127.0.2.130-139:${MX_PORT} are all in use`);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

// The lab DNS, mx.receiver.test pointed at the receiver's spare address.
const receiverLab = await spareAddress();
const receiverHost = loopbackTwin(receiverLab);
const dnsPort = await freePort('127.0.2.53');
const controlPort = await freePort('127.0.2.53');
const dns = start(process.execPath, ['services/dns/main.ts'], {
  cwd: root,
  env: { ...process.env, DNS_LISTEN: `127.0.2.53:${dnsPort}`, DNS_CONTROL_LISTEN: `127.0.2.53:${controlPort}`, ZONE_DIR: 'dns-zone', LOG_LEVEL: 'silent' },
});
const senderPorts = { mx: await freePort(SENDER), submission: await freePort(SENDER), api: await freePort(SENDER) };
const receiverPorts = { mx: 25, submission: await freePort(receiverHost), api: await freePort(receiverHost) };
const sender = mta('sender', instanceFile('sender', { ports: senderPorts }));
const receiver = mta('receiver', instanceFile('receiver', { ports: receiverPorts, address: receiverLab }));
const senderApi = `http://${SENDER}:${senderPorts.api}`;
const inbox = join(work, 'receiver/mail/receiver.test/bob/new');

try {
  await waitForHttp('the lab DNS', dns, `http://127.0.2.53:${controlPort}/health`);
  const override = await fetch(`http://127.0.2.53:${controlPort}/overrides`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'mx.receiver.test', type: 'A', values: [receiverLab] }) });
  if (!override.ok) throw new Error(`DNS override: ${await override.text()}`);
  await waitForHttp('the sender', sender, `${senderApi}/api/health`);
  await waitForHttp('the receiver', receiver, `http://${receiverHost}:${receiverPorts.api}/api/health`);

  // A mail client's connection pool: `clients` sessions, each with AUTH once
  // and then message after message.
  const client = createTransport({
    pool: true,
    maxConnections: clients,
    maxMessages: Infinity,
    host: SENDER,
    port: senderPorts.submission,
    secure: false,
    ignoreTLS: true, // AUTH in plaintext, as the sender's instance file allows: the MTAs' work, not the client's TLS
    auth: { user: 'alice@sender.test', pass: 'alice-lab-password' },
  });
  const run = Date.now().toString(36);
  const paragraph = 'The sender signs this message for sender.test with RSA and Ed25519, queues it durably and delivers it to the receiver.';
  const body = Array.from({ length: 12 }, (_, i) => `${i + 1}. ${paragraph}`).join('\r\n');
  const submitted = new Map<string, number>(); // Message-ID -> time of the 250
  console.log(`${messages} messages over ${clients} submission sessions (AUTH PLAIN, persistent); data in ${work}`);
  const cpuBefore = cpuNow();
  const started = now();
  await Promise.all(
    Array.from({ length: messages }, async (_, n) => {
      const messageId = `<bench-${run}-${n}@sender.test>`;
      await client.sendMail({
        envelope: { from: 'alice@sender.test', to: ['bob@receiver.test'] },
        raw: `From: Alice <alice@sender.test>\r\nTo: Bob <bob@receiver.test>\r\nSubject: bench:submit ${n}\r\nMessage-ID: ${messageId}\r\nDate: ${new Date().toUTCString()}\r\n\r\n${body}\r\n`,
      });
      submitted.set(messageId, now());
    }),
  );
  const allSubmitted = now();
  client.close();

  const count = () => readdirSync(inbox).length;
  await until(`${messages} messages in bob's Maildir`, () => {
    try {
      return count() >= messages;
    } catch {
      return false; // no Maildir yet
    }
  });
  await until('the sender\'s queue to empty', async () => (await (await fetch(`${senderApi}/api/queue`)).json()).length === 0);
  const rss = { sender: peakRssMiB(sender.pid!), receiver: peakRssMiB(receiver.pid!) };
  const cpuAfter = cpuNow();
  const cpu = Object.fromEntries(Object.entries(cpuAfter).map(([k, v]) => [k, v - cpuBefore[k as keyof typeof cpuBefore]])) as typeof cpuAfter;

  // Every message: once, verified, and when it arrived.
  const arrived = new Map<string, number>();
  const problems: string[] = [];
  for (const name of readdirSync(inbox)) {
    const text = readFileSync(join(inbox, name), 'latin1');
    const head = text.slice(0, text.indexOf('\r\n\r\n')).replace(/\r\n[ \t]+/g, ' ');
    const messageId = /^Message-ID: (.*)$/im.exec(head)?.[1] ?? '';
    const results = /^Authentication-Results: (.*)$/im.exec(head)?.[1] ?? '';
    if (arrived.has(messageId)) problems.push(`${messageId} arrived twice`);
    if (!submitted.has(messageId)) problems.push(`${name}: not a message of this run`);
    if ((results.match(/\bdkim=pass\b/g) ?? []).length !== 2 || !/\bspf=pass\b/.test(results) || !/\bdmarc=pass\b/.test(results)) {
      problems.push(`${messageId}: ${results}`);
    }
    arrived.set(messageId, statSync(join(inbox, name)).mtimeMs);
  }
  for (const messageId of submitted.keys()) if (!arrived.has(messageId)) problems.push(`${messageId} was accepted and never arrived`);

  const latencies = [...submitted].filter(([id]) => arrived.has(id)).map(([id, at]) => arrived.get(id)! - at).sort((a, b) => a - b);
  const last = Math.max(...arrived.values());
  const seconds = (last - started) / 1000;
  console.log(`\nsubmitted      ${messages} in ${((allSubmitted - started) / 1000).toFixed(2)} s (${Math.round(messages / ((allSubmitted - started) / 1000))} msgs/s accepted)`);
  console.log(`delivered      ${arrived.size} in ${seconds.toFixed(2)} s from the first submission: ${Math.round(arrived.size / seconds)} msgs/s end to end`);
  console.log(`latency        250 at submission -> file in the receiver's Maildir: p50 ${percentile(latencies, 50).toFixed(0)} ms, p99 ${percentile(latencies, 99).toFixed(0)} ms, max ${latencies.at(-1)!.toFixed(0)} ms`);
  console.log(`peak RSS       sender ${rss.sender.toFixed(1)} MiB, receiver ${rss.receiver.toFixed(1)} MiB`);
  const perMessage = (seconds: number) => `${((seconds * 1000) / messages).toFixed(2)} ms`;
  console.log(`CPU per message sender ${perMessage(cpu.sender)}, receiver ${perMessage(cpu.receiver)}, DNS ${perMessage(cpu.dns)}, this client ${perMessage(cpu.client)}`);
  console.log(`other load     ${cpu.others.toFixed(1)} CPU-s used by other processes and kernel threads (the journal's fsync work among them) during the run (${availableParallelism()} CPUs x ${seconds.toFixed(1)} s = ${(availableParallelism() * seconds).toFixed(1)} CPU-s)`);
  if (problems.length) {
    for (const problem of problems.slice(0, 20)) console.log(`FAILED: ${problem}`);
    if (problems.length > 20) console.log(`FAILED: ... and ${problems.length - 20} more`);
    process.exitCode = 1;
  } else {
    console.log(`checked        ${messages} messages in bob's Maildir, each once, each spf=pass, dkim=pass (RSA and Ed25519), dmarc=pass; the sender's queue is empty`);
  }
} finally {
  await Promise.all([stop(sender), stop(receiver)]);
  await stop(dns);
}
