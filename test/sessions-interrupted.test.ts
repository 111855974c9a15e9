// A session open when its MTA is killed outright (kill -9) is closed at the
// next start, once: marked interrupted, with the reason and an end time, in
// the record, the API and the console; the message it delivered stays. With
// MX workers, a worker started in a dead one's place leaves its siblings'
// open sessions alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { parse, stringify } from 'yaml';
import { DnsServer } from '../services/dns/server.ts';
import { loopbackTwin } from '../services/lib/addressing.ts';
import type { Page, SessionRow } from '../services/mta/api/pages.ts';
import type { SessionRecord, SessionSummary } from '../services/mta/store/sessions.ts';
import { openBrowser } from './support/browser.ts';
import { waitFor } from './support/mail.ts';
import { childPids, instanceFile, startMta } from './support/processes.ts';
import { RawSmtp } from './support/smtp.ts';

const root = new URL('../', import.meta.url).pathname;
const senderTwin = '127.0.2.10'; // mta.sender.test: SPF passes for sender.test
const START_MS = 30_000; // starting node processes takes long on a busy machine

// An MTA process on its own data, restarted as Docker restarts a container.
// It gets a lab address no other test uses (outbound-crash.test.ts takes
// 120 to 129): between its runs, another test file's MTA that picks free
// ports on the same address could take its ports.
async function mtaLab(t: { after(fn: () => unknown): void }, name: string, address: string, env: Record<string, string> = {}) {
  const work = mkdtempSync(join(tmpdir(), 'sessions-interrupted-'));
  const dns = new DnsServer({ listen: { host: '127.0.2.53', port: 0 }, zoneDir: join(root, 'dns-zone'), logger: pino({ level: 'silent' }) });
  await dns.start();
  const host = loopbackTwin(address);
  const { file, ports } = await instanceFile(name, host, work);
  writeFileSync(file, stringify({ ...parse(readFileSync(file, 'utf8')), address }));
  const api = `http://${host}:${ports.api}`;
  let mta: ChildProcess | undefined;
  t.after(async () => {
    mta?.kill('SIGKILL');
    await dns.close();
    rmSync(work, { recursive: true, force: true });
  });
  const get = async <T>(path: string): Promise<T> => {
    const response = await fetch(`${api}${path}`);
    assert.equal(response.status, 200, `${path}: ${response.status}`);
    return response.json() as Promise<T>;
  };
  return {
    host,
    api,
    mxPort: ports.mx,
    sessionsDir: join(work, 'data/sessions'),
    mailDir: join(work, 'data/mail'),
    get,
    pid: () => mta!.pid!,
    async start() {
      mta = startMta({ MTA_CONFIG: file, LAB_EMBEDDED: '1', MTA_DATA_DIR: join(work, 'data'), LAB_DNS: `127.0.2.53:${dns.port}`, ...env });
      const child = mta;
      await waitFor('the MTA answers', () => {
        assert.equal(child.exitCode, null, 'the MTA exited while starting (its stderr says why)');
        return fetch(`${api}/api/health`).then((r) => (r.ok ? true : undefined), () => undefined);
      }, START_MS);
    },
    async stop(signal: 'SIGKILL' | 'SIGTERM') {
      const child = mta!;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill(signal);
      await exited;
    },
  };
}

// A session that delivers one message to `to` and stays open.
async function openSession(host: string, port: number, to: string, n: number): Promise<{ smtp: RawSmtp; messageId: string }> {
  const messageId = `<left-open-${n}-${Date.now()}@sender.test>`;
  const { smtp, greeting } = await RawSmtp.open(host, port, senderTwin);
  assert.equal(greeting.code, 220);
  assert.equal((await smtp.command('EHLO mta.sender.test')).code, 250);
  await send(smtp, messageId, to);
  return { smtp, messageId };
}

async function send(smtp: RawSmtp, messageId: string, to: string): Promise<void> {
  assert.equal((await smtp.command('MAIL FROM:<alice@sender.test>')).code, 250);
  assert.equal((await smtp.command(`RCPT TO:<${to}>`)).code, 250);
  assert.equal((await smtp.command('DATA')).code, 354);
  smtp.write(`From: Alice <alice@sender.test>\r\nTo: <${to}>\r\nSubject: ${messageId}\r\nMessage-ID: ${messageId}\r\nDate: ${new Date().toUTCString()}\r\n\r\nHello.\r\n.\r\n`);
  const reply = await smtp.read();
  assert.equal(reply.code, 250, reply.text);
}

// The lines of a session's file that close it at start.
function closeLines(sessionsDir: string, id: string): string[] {
  const [file] = readdirSync(sessionsDir).filter((f) => f.endsWith(`-${id}.jsonl`));
  return readFileSync(join(sessionsDir, file), 'utf8')
    .split('\n')
    .filter((line) => line.includes('"interrupted"'));
}

test('kill -9 with a session open: the next start closes it once, marked interrupted, and keeps its message', { timeout: 120_000 }, async (t) => {
  const lab = await mtaLab(t, 'receiver', '192.0.2.140');
  await lab.start();
  const { smtp, messageId } = await openSession(lab.host, lab.mxPort, 'postmaster@receiver.test', 1);
  const [summary] = await lab.get<SessionSummary[]>(`/api/sessions?messageId=${encodeURIComponent(messageId)}`);
  assert.ok(summary && !summary.endedAt, 'the session is listed, still open');
  const delivery = summary.deliveries[0].id;
  const before = await lab.get<SessionRecord>(`/api/sessions/${summary.id}`);

  await lab.stop('SIGKILL');
  await smtp.closed;
  const killedAt = new Date().toISOString();
  await lab.start();

  // The record: ended, interrupted, with the reason and what its end time rests on.
  const record = await lab.get<SessionRecord>(`/api/sessions/${summary.id}`);
  const { interrupted, endedAt } = record;
  assert.ok(interrupted && endedAt, 'closed at start');
  assert.match(interrupted.reason, /^the MTA stopped without closing the session \(crash or kill\); found open at start at \d{4}-\d\d-\d\dT/);
  assert.ok(interrupted.reason.endsWith(interrupted.foundAt));
  assert.ok(interrupted.foundAt > killedAt, 'found at the start after the kill');
  // The last write normally; the last transcript line if the file's coarser clock put that write before it.
  assert.match(interrupted.endedAtFrom, /^(the last write to its record \(the file's modification time\)|its last transcript line)$/);
  assert.ok(endedAt >= before.transcript.at(-1)!.at && endedAt <= killedAt, `the end (${endedAt}) is after the last line, before the kill`);
  // As the session left it: saved with the message, before its 250 was sent.
  assert.deepEqual(record.transcript, before.transcript);

  // The list and the console's page say so too.
  const [listed] = await lab.get<SessionSummary[]>(`/api/sessions?messageId=${encodeURIComponent(messageId)}`);
  assert.deepEqual({ endedAt: listed.endedAt, interrupted: listed.interrupted }, { endedAt, interrupted });
  const page = await lab.get<Page<SessionRow>>('/api/sessions/page');
  assert.deepEqual(page.items.map((s) => [s.id, s.endedAt, s.interrupted]), [[summary.id, endedAt, interrupted]]);

  // The message it delivered is where it was, with its record.
  assert.deepEqual(record.transactions.map((x) => [x.decision.disposition, x.deliveries.map((d) => d.id)]), [['inbox', [delivery]]]);
  const message = await lab.get<{ session: string; mailbox: string; folder: string }>(`/api/messages/${encodeURIComponent(delivery)}`);
  assert.deepEqual([message.session, message.mailbox, message.folder], [summary.id, 'postmaster@receiver.test', 'INBOX']);
  assert.deepEqual(readdirSync(join(lab.mailDir, 'receiver.test/postmaster/new')), [delivery]);
  assert.equal(closeLines(lab.sessionsDir, summary.id).length, 1);

  // The console: an "interrupted" badge and the reason, in the list and the session's view.
  await t.test('the console shows it interrupted, not still open', async (t) => {
    const browser = await openBrowser(t);
    if (!browser) return;
    const tab = await browser.newPage();
    await tab.goto(`${lab.api}/#/sessions`);
    const row = tab.locator('tbody tr', { hasText: messageId });
    await row.waitFor();
    const outcome = await row.locator('td').last().innerText();
    assert.match(outcome, /✓ Inbox\s+↯ interrupted\s+the MTA stopped without closing the session \(crash or kill\)/);
    await row.getByRole('link').click();
    const ended = tab.locator('dl.meta dt:text-is("Ended") + dd');
    await ended.waitFor();
    const text = await ended.innerText();
    assert.match(text, /↯ interrupted/);
    assert.ok(text.includes(interrupted.reason), text);
    assert.ok(text.includes(`The end time is ${interrupted.endedAtFrom}.`), text);
    assert.doesNotMatch(await tab.locator('main').innerText(), /still open/);
  });

  // Started again: it is closed already, and stays closed as it was.
  await lab.stop('SIGTERM');
  await lab.start();
  assert.deepEqual(await lab.get<SessionRecord>(`/api/sessions/${summary.id}`), record);
  assert.equal(closeLines(lab.sessionsDir, summary.id).length, 1, 'closed once');
});

test('MX workers: a worker started in a dead one\'s place leaves a sibling\'s open session alone; the next start closes the dead one\'s', { timeout: 120_000 }, async (t) => {
  const lab = await mtaLab(t, 'forwarder', '192.0.2.141', { MTA_MX_WORKERS: '2' });
  await lab.start();
  const workers = childPids(lab.pid());
  assert.equal(workers.length, 2);

  // Sessions on both workers (connections go to them in turn), each with a
  // message whose Maildir name tells which worker wrote it.
  const open: { smtp: RawSmtp; messageId: string; worker: number; session: string }[] = [];
  for (let n = 0; n < 4 && new Set(open.map((s) => s.worker)).size < 2; n++) {
    const { smtp, messageId } = await openSession(lab.host, lab.mxPort, 'postmaster@forwarder.test', n);
    const listed = await waitFor(`${messageId} listed`, async () => {
      const [s] = await lab.get<SessionSummary[]>(`/api/sessions?messageId=${encodeURIComponent(messageId)}`);
      return s;
    });
    open.push({ smtp, messageId, worker: Number(/P(\d+)Q/.exec(listed.deliveries[0].id)![1]), session: listed.id });
  }
  const dead = open[0];
  const live = open.find((s) => s.worker !== dead.worker);
  assert.ok(live, 'sessions on both workers');

  // The dead worker's connection ends with it; a new worker takes its place.
  process.kill(dead.worker, 'SIGKILL');
  await dead.smtp.closed;
  await waitFor('a new worker, listening', async () => {
    const now = childPids(lab.pid());
    const { mxWorkers } = await lab.get<{ mxWorkers: { listening: number } }>('/api/health');
    return now.length === 2 && !now.includes(dead.worker) && mxWorkers.listening === 2 ? true : undefined;
  }, START_MS);

  // The sibling's session goes on and ends as sessions end.
  await send(live.smtp, `<after-${Date.now()}@sender.test>`, 'postmaster@forwarder.test');
  assert.equal((await live.smtp.command('QUIT')).code, 221);
  const ended = await waitFor('the live session ended', async () => {
    const record = await lab.get<SessionRecord>(`/api/sessions/${live.session}`);
    return record.endedAt ? record : undefined;
  });
  assert.equal(ended.interrupted, undefined);
  assert.equal(ended.transactions.length, 2);
  assert.equal((await lab.get<SessionRecord>(`/api/sessions/${dead.session}`)).endedAt, undefined, 'the first process does not close it while it runs');

  // The next start closes the dead worker's sessions, and only those.
  for (const s of open) s.smtp.end();
  await Promise.all(open.map((s) => s.smtp.closed));
  await lab.stop('SIGTERM');
  await lab.start();
  for (const s of open) {
    const record = await lab.get<SessionRecord>(`/api/sessions/${s.session}`);
    assert.ok(record.endedAt, `${s.session} ended`);
    if (s.worker !== dead.worker) assert.equal(record.interrupted, undefined, `${s.session}, on the live worker, ended as sessions end`);
    else assert.match(record.interrupted?.reason ?? '', /^the MTA stopped without closing the session/, `${s.session}, on the dead worker`);
    assert.equal(record.transactions[0].decision.disposition, 'inbox');
  }
  assert.deepEqual(await lab.get<SessionRecord>(`/api/sessions/${live.session}`), ended);
});
