// DMARC aggregate reports end to end (RFC 9990): the receiver logs each
// evaluation, and when asked (POST /api/reports/send, what `npm run lab --
// reports --send` does) sends each domain with a rua= one report, gzipped
// XML, DKIM-signed as receiver.test, through its own queue: the report is
// real mail that lands in dmarc-reports@receiver.test. Its counts must be
// those of the session records it summarises, and it must validate against
// RFC 9990's schema. An address in another domain gets reports only when
// that domain agrees (its _report._dmarc record).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { simpleParser } from 'mailparser';
import { LabResolver } from '../services/lib/resolver.ts';
import { destinations } from '../services/mta/reports/destinations.ts';
import type { SessionRecord, SessionSummary } from '../services/mta/store/sessions.ts';
import { inOneReportPeriod, startLab, type LabMta, type TestLab } from './support/lab.ts';
import { api, arrival, ATTACKER_HOST, deliver, header, message, SENDER_HOST } from './support/mail.ts';
import { requireTool } from './support/tools.ts';

const schema = new URL('fixtures/dmarc/dmarc-xml-0.2.xsd', import.meta.url).pathname;
let lab: TestLab;
let receiver: LabMta;

before(async () => {
  lab = await startLab();
  receiver = await lab.start('receiver');
});
after(() => lab.close());

const sendNow = async () => {
  const response = await fetch(`http://${receiver.host}:${receiver.apiPort}/api/reports/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(response.status, 200);
  return ((await response.json()) as { reports: { policyDomain: string; messages: number; rows: number; to: string[]; refused: unknown[] }[] }).reports;
};

test('the report of a period: one per domain, its counts those of the session records, valid against RFC 9990, signed, delivered as mail', async (t) => {
  await inOneReportPeriod(receiver, 30_000);
  for (let i = 0; i < 3; i++) assert.equal((await deliver(receiver, SENDER_HOST, 'alice@sender.test', message('alice@sender.test', 'bob@receiver.test', `honest-${i}`))).code, 250);
  for (let i = 0; i < 2; i++) assert.equal((await deliver(receiver, ATTACKER_HOST, 'alice@sender.test', message('alice@sender.test', 'bob@receiver.test', `spoof-${i}`))).code, 550);
  assert.equal((await deliver(receiver, ATTACKER_HOST, 'ceo@monitor.test', message('ceo@monitor.test', 'bob@receiver.test', 'monitor-spoof'))).code, 250);

  const sent = await sendNow();
  assert.deepEqual(sent.map((r) => [r.policyDomain, r.messages, r.rows, r.to]).sort(), [
    ['monitor.test', 1, 1, ['dmarc-reports@receiver.test']],
    ['sender.test', 5, 2, ['dmarc-reports@receiver.test']],
  ]);
  assert.deepEqual(await sendNow(), [], 'nothing is reported twice');

  // The report for sender.test, as it arrived: real mail, DKIM-signed as receiver.test.
  const stored = await arrival(receiver, 'dmarc-reports@receiver.test', 'Report Domain: sender.test');
  assert.match(header(stored, 'Authentication-Results'), /dkim=pass header\.i=@receiver\.test header\.s=rsa2048/);
  const parsed = await simpleParser(Buffer.from(stored, 'latin1'));
  const [attachment] = parsed.attachments;
  assert.match(attachment.filename ?? '', /^receiver\.test!sender\.test!\d+!\d+![0-9a-f]+\.xml\.gz$/);
  const xml = gunzipSync(attachment.content).toString('utf8');

  if (requireTool(t, 'xmllint', 'libxml2-utils')) {
    const dir = mkdtempSync(join(tmpdir(), 'report-'));
    try {
      writeFileSync(join(dir, 'report.xml'), xml);
      execFileSync('xmllint', ['--noout', '--schema', schema, join(dir, 'report.xml')], { stdio: 'pipe' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  // The rows against the session records: for each source, the decisions about sender.test mail.
  const counted = new Map<string, number>();
  for (const summary of await api<SessionSummary[]>(receiver, '/api/sessions?recipient=bob@receiver.test')) {
    const record = await api<SessionRecord>(receiver, `/api/sessions/${summary.id}`);
    for (const tr of record.transactions) {
      if (tr.checks?.dmarc.fromDomain !== 'sender.test') continue;
      const key = `${record.client.address} ${tr.decision.disposition === 'reject' ? 'reject' : 'none'}`;
      counted.set(key, (counted.get(key) ?? 0) + 1);
    }
  }
  const rows = [...xml.matchAll(/<record>[\s\S]*?<\/record>/g)].map(([r]) => `${/<source_ip>([^<]+)/.exec(r)![1]} ${/<disposition>([^<]+)/.exec(r)![1]}:${/<count>(\d+)/.exec(r)![1]}`);
  assert.deepEqual(rows.sort(), [...counted].map(([key, n]) => `${key}:${n}`).sort());
  assert.deepEqual(Object.fromEntries(counted), { '192.0.2.10 none': 3, '192.0.2.66 reject': 2 });
  assert.match(xml, /<policy_published>[\s\S]*<domain>sender\.test<\/domain>[\s\S]*<p>reject<\/p>/);
});

test('a rua= address in another domain gets reports only when that domain agrees', async () => {
  const resolver = new LabResolver({ host: '127.0.2.53', port: lab.dnsPort });
  const agreed = await destinations('sender.test', ['mailto:dmarc-reports@receiver.test'], resolver);
  assert.deepEqual(agreed, { to: ['dmarc-reports@receiver.test'], refused: [] });
  const own = await destinations('sender.test', ['mailto:reports@sender.test!10m'], resolver);
  assert.deepEqual(own.to, ['reports@sender.test'], 'its own organization needs no agreement');
  const stranger = await destinations('attacker.test', ['mailto:dmarc-reports@receiver.test', 'https://example.test/reports'], resolver);
  assert.deepEqual(stranger.to, []);
  assert.match(stranger.refused[0].reason, /receiver\.test has not agreed to receive reports for attacker\.test: no "v=DMARC1" record at attacker\.test\._report\._dmarc\.receiver\.test/);
  assert.match(stranger.refused[1].reason, /not a mailto: address/);
});

test('without being asked, a report goes out a period after the receiver started', { timeout: 30_000 }, async () => {
  // The same receiver and data, with a period of 10 s (the shortest an instance file takes).
  await lab.stop('receiver');
  receiver = await lab.start('receiver', (i) => ({ ...i, reports: { ...i.reports!, periodSeconds: 10 } }));
  assert.equal((await deliver(receiver, SENDER_HOST, 'alice@includes.test', message('alice@includes.test', 'bob@receiver.test', 'includes-1'))).code, 250);
  const stored = await arrival(receiver, 'dmarc-reports@receiver.test', 'Report Domain: includes.test', 25_000);
  const xml = gunzipSync((await simpleParser(Buffer.from(stored, 'latin1'))).attachments[0].content).toString('utf8');
  assert.match(xml, /<source_ip>192\.0\.2\.10<\/source_ip>\s*<count>1<\/count>/);
  const begin = Number(/<begin>(\d+)<\/begin>/.exec(xml)![1]);
  const end = Number(/<end>(\d+)<\/end>/.exec(xml)![1]);
  assert.ok(begin < end && end - begin <= 20 && end <= Date.now() / 1000, `a period up to when it was sent: ${begin} to ${end}`);
});

test('failure reports are turned on and off for a lesson by the teacher, never by a web page', async () => {
  const post = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(`http://${receiver.host}:${receiver.apiPort}/api/reports/failure`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  assert.equal((await post({ enabled: 'yes' })).status, 400);
  assert.equal((await post({ enabled: true }, { origin: 'http://evil.example' })).status, 403);
  const on = await post({ enabled: true });
  assert.deepEqual([on.status, await on.json()], [200, { enabled: true }]);
  const off = await post({ enabled: false });
  assert.deepEqual(await off.json(), { enabled: false });
});
