// A class whose MTAs run their MX in worker processes (MTA_MX_WORKERS=2):
// each worker verifies with DNS answers of its own, and an exercise check
// must still judge a record fixed a moment ago, not what a worker cached
// (a student's records live 300 s). Before the check forgot the domain in
// every worker, a worker that had cached ben's wrong SPF record kept failing
// his probes after he fixed it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issueCredentials } from '../services/lib/classroom.ts';
import { readLab, service } from '../scripts/lab/compose.ts';
import { call } from './support/classroom-flow.ts';
import { claimEmbeddedLab, startClassLab, stopClassLab } from './support/class-lab.ts';
import { exerciseTools } from './support/exercise-tools.ts';
import { waitFor } from './support/mail.ts';
import { RawSmtp } from './support/smtp.ts';

const skip = await claimEmbeddedLab();
const lab = readLab();
const classDir = mkdtempSync(join(tmpdir(), 'class-workers-'));
const dataDir = mkdtempSync(join(tmpdir(), 'class-workers-lab-'));
let runner: ChildProcess | undefined;
let credentials: Map<string, string>;
const { api, zoneApi, fails, passes } = exerciseTools(lab, () => credentials);

before(async () => {
  if (skip) return;
  writeFileSync(join(classDir, 'class.yaml'), 'name: Worker class\nstudents: [ben]\n');
  credentials = issueCredentials(classDir).issued;
  runner = await startClassLab(classDir, dataDir, true, { MTA_MX_WORKERS: '2' });
});
after(async () => {
  await stopClassLab(runner);
  rmSync(classDir, { recursive: true, force: true });
  rmSync(dataDir, { recursive: true, force: true });
});

const WRONG_SPF = 'v=spf1 mx -all';
const CONNECTIONS = 4;

// Mail from ben.test over connections open at once: the first process hands
// them to the workers in turn, so each worker checks SPF for ben.test and
// caches the record it got.
async function mailFromBen(): Promise<void> {
  const receiver = service(lab, 'receiver');
  const mx = receiver.ports.find((p) => p.name === 'mx')!.port;
  const opened = await Promise.all(Array.from({ length: CONNECTIONS }, () => RawSmtp.open(receiver.address, mx, '127.0.0.1')));
  for (const [n, { smtp }] of opened.entries()) {
    for (const line of ['EHLO laptop.example', 'MAIL FROM:<ben@ben.test>', 'RCPT TO:<ben@ben.test>', 'DATA']) await smtp.command(line);
    const reply = await smtp.command(`From: <ben@ben.test>\r\nSubject: cache ${n}\r\nMessage-ID: <cache-${n}-${Date.now()}@ben.test>\r\n\r\nWarming a cache.\r\n.`);
    assert.ok(reply.code === 250 || reply.code >= 500, `a decision, not a deferral: ${reply.code} ${reply.text}`);
  }
  await Promise.all(opened.map(({ smtp }) => smtp.command('QUIT')));
}

test('an exercise check sees a record fixed a moment ago in every MX worker', { skip, timeout: 180_000 }, async () => {
  const health = await call(`${api.receiverApi}/api/health`, undefined);
  assert.deepEqual(health.body.mxWorkers, { listening: 2, of: 2 });
  await zoneApi('ben', { add: ['@ MX 10 mx', 'mx A 192.0.2.20', `@ TXT "${WRONG_SPF}"`] });
  await fails('ben', 3, 'does not name 192.0.2.10 or mta.sender.test');
  await mailFromBen();
  // The receiver's records say every session's SPF check read the wrong
  // record (a worker's saves reach the first process's list within moments).
  const teacher = credentials.get('teacher');
  const seen = await waitFor('the sessions of the mail from ben.test, listed', async () => {
    const sessions = (await call(`${api.receiverApi}/api/sessions?recipient=ben@ben.test`, teacher)).body as { id: string }[];
    const records = await Promise.all(sessions.map(async ({ id }) => (await call(`${api.receiverApi}/api/sessions/${id}`, teacher)).body));
    const mine = records.filter((r) => r.client.helo === 'laptop.example');
    return mine.length === CONNECTIONS ? mine.map((r) => r.transactions[0].checks.spf.record) : undefined;
  });
  assert.deepEqual(seen, Array(CONNECTIONS).fill(WRONG_SPF));

  await zoneApi('ben', { delete: ['@ TXT'], add: ['@ TXT "v=spf1 ip4:192.0.2.10 -all"'] });
  await passes('ben', 3);
});
