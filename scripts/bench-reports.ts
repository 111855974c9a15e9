// npm run bench:reports: the time and memory it takes to turn a reporting
// period into DMARC aggregate reports, for 10,000, 100,000 and 1,000,000
// evaluated messages from 1,000 source addresses and five policy domains.
// Each period is a JSONL file written as the receiver's evaluation log writes
// it (one JSON evaluation a line); a fresh process reads it line by line,
// aggregates, and makes every report's XML and gzipped message, so that its
// peak RSS is that period's alone. Memory should stay flat as the count grows
// (rows, not messages, are kept); the goal is 100,000 in under 2 s.
// The files stay in a fresh directory under /tmp while the bench runs.
import { spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { getHeapStatistics } from 'node:v8';
import { aggregate } from '../services/mta/reports/aggregate.ts';
import type { Evaluation, Published } from '../services/mta/reports/evaluation.ts';
import { reportMessage } from '../services/mta/reports/report-message.ts';

const SIZES = [10_000, 100_000, 1_000_000];
const SOURCES = 1000;
const GOAL = { messages: 100_000, seconds: 2 };

interface Measured {
  seconds: number;
  reports: number;
  rows: number;
  messages: number;
  bytes: number; // of the messages made
  startRss: number; // MiB, before reading
  peakRss: number;
  peakHeap: number;
}

// The child: one period, measured.
async function measure(file: string): Promise<Measured> {
  const mib = (bytes: number) => bytes / 1024 / 1024;
  const startRss = mib(process.memoryUsage.rss());
  let peakHeap = getHeapStatistics().used_heap_size;
  const sampler = setInterval(() => (peakHeap = Math.max(peakHeap, getHeapStatistics().used_heap_size)), 2);
  const began = performance.now();
  const reports = await aggregate(readLog(file));
  let bytes = 0;
  for (const [i, report] of reports.entries()) {
    const meta = { orgName: 'mail-lab receiver', email: 'dmarc-reports@receiver.test', reportId: `bench${i}`, begin: 1795996800, end: 1796083200 };
    bytes += reportMessage({ report, meta, from: 'dmarc-reports@receiver.test', to: [report.published.rua[0].slice('mailto:'.length)], hostname: 'mx.receiver.test' }).raw.length;
  }
  const seconds = (performance.now() - began) / 1000;
  clearInterval(sampler);
  peakHeap = Math.max(peakHeap, getHeapStatistics().used_heap_size);
  return {
    seconds,
    reports: reports.length,
    rows: reports.reduce((sum, r) => sum + r.rows.length, 0),
    messages: reports.reduce((sum, r) => sum + r.messages, 0),
    bytes,
    startRss,
    peakRss: process.resourceUsage().maxRSS / 1024,
    peakHeap: mib(peakHeap),
  };
}

// Read as the reporter reads the evaluation log.
async function* readLog(file: string): AsyncIterable<Evaluation> {
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    if (line) yield JSON.parse(line) as Evaluation;
  }
}

// Five policy domains, as the lab's zones publish them.
const policy = (domain: string, p: string, more: Partial<Published> = {}): Published => ({ domain, p, adkim: 'r', aspf: 'r', testing: 'n', rua: [`mailto:dmarc@${domain}`], ruf: [], ...more });
const DOMAINS = [
  policy('sender.test', 'reject'),
  policy('quarantine.test', 'quarantine', { sp: 'reject' }),
  policy('none.test', 'none'),
  policy('strict.test', 'reject', { adkim: 's', aspf: 's' }),
  policy('testing.test', 'quarantine', { testing: 'y', fo: '1' }),
];

// 1,000 sources from the documentation ranges: IPv4 from the three TEST-NETs,
// the rest IPv6. A tenth are each domain's own MTAs (pass), the others
// forwarders and spoofers (fail), each mostly for one domain. A fixed
// pseudo-random sequence makes every run write the same files.
function source(i: number): string {
  const nets = ['192.0.2', '198.51.100', '203.0.113'];
  return i < 750 ? `${nets[i % 3]}.${Math.floor(i / 3) + 1}` : `2001:db8::${(i - 749).toString(16)}`;
}

function evaluationFor(n: number, random: () => number): Evaluation {
  const i = Math.floor(random() * SOURCES);
  const published = DOMAINS[random() < 0.9 ? i % DOMAINS.length : Math.floor(random() * DOMAINS.length)];
  const domain = published.domain;
  const own = i % 10 === 0;
  const envelopeFrom = own ? domain : `bounces.example${i % 7}.test`;
  const signed = own || random() < 0.3;
  return {
    at: new Date(Date.UTC(2026, 11, 1) + n).toISOString(),
    sourceIp: source(i),
    headerFrom: random() < 0.8 ? domain : `mail.${domain}`,
    envelopeFrom,
    envelopeTo: random() < 0.9 ? 'receiver.test' : 'other.test',
    policyDomain: domain,
    published,
    disposition: own ? 'none' : published.testing === 'y' ? 'none' : (published.p as Evaluation['disposition']),
    dkim: own ? 'pass' : 'fail',
    spf: own ? 'pass' : 'fail',
    reasons: !own && published.testing === 'y' ? [{ type: 'policy_test_mode' }] : [],
    authDkim: signed ? [{ domain: own ? domain : envelopeFrom, selector: own ? 'rsa2048' : 'k1', result: own || random() < 0.5 ? 'pass' : 'fail' }] : [],
    authSpf: { domain: envelopeFrom, scope: 'mfrom', result: own ? 'pass' : random() < 0.5 ? 'softfail' : 'fail' },
  };
}

async function writeLog(file: string, count: number): Promise<void> {
  let seed = 1;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const out = createWriteStream(file);
  for (let n = 0; n < count; n++) {
    if (!out.write(`${JSON.stringify(evaluationFor(n, random))}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

if (process.argv[2] === '--measure') {
  process.stdout.write(JSON.stringify(await measure(process.argv[3])));
} else {
  const work = mkdtempSync('/tmp/bench-reports-');
  const results: (Measured & { evaluations: number; fileMiB: number })[] = [];
  const problems: string[] = [];
  try {
    for (const evaluations of SIZES) {
      const file = join(work, `evaluations-${evaluations}.jsonl`);
      process.stdout.write(`writing ${evaluations.toLocaleString('en')} evaluations ... `);
      await writeLog(file, evaluations);
      const fileMiB = statSync(file).size / 1024 / 1024;
      process.stdout.write(`${fileMiB.toFixed(0)} MiB; reporting ...\n`);
      const child = spawnSync(process.execPath, [import.meta.filename, '--measure', file], { encoding: 'utf8', maxBuffer: 1024 * 1024 });
      if (child.status !== 0) throw new Error(`the measuring process failed (${child.status}): ${child.stderr.trim()}`);
      const measured = JSON.parse(child.stdout) as Measured;
      if (measured.messages !== evaluations) problems.push(`${evaluations}: the reports count ${measured.messages} messages`);
      results.push({ ...measured, evaluations, fileMiB });
      rmSync(file);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }

  const columns = ['evaluations', 'log MiB', 'reports', 'rows', 'seconds', 'evals/s', 'RSS start', 'peak RSS', 'peak heap', 'mail KiB'];
  const table = results.map((r) => [
    r.evaluations.toLocaleString('en'),
    r.fileMiB.toFixed(0),
    String(r.reports),
    r.rows.toLocaleString('en'),
    r.seconds.toFixed(2),
    Math.round(r.evaluations / r.seconds).toLocaleString('en'),
    r.startRss.toFixed(0),
    r.peakRss.toFixed(0),
    r.peakHeap.toFixed(0),
    (r.bytes / 1024).toFixed(0),
  ]);
  const widths = columns.map((c, i) => Math.max(c.length, ...table.map((row) => row[i].length)));
  console.log(`\n${SOURCES} source addresses, ${DOMAINS.length} policy domains; read, aggregated, every report's XML and gzipped message made; memory in MiB`);
  console.log(columns.map((c, i) => c.padStart(widths[i])).join('  '));
  for (const row of table) console.log(row.map((v, i) => v.padStart(widths[i])).join('  '));
  const goal = results.find((r) => r.evaluations === GOAL.messages)!;
  console.log(`\n${GOAL.messages.toLocaleString('en')} evaluations in ${goal.seconds.toFixed(2)} s   target < ${GOAL.seconds} s   ${goal.seconds < GOAL.seconds ? 'ok' : 'MISSED'}`);
  for (const problem of problems) console.log(`FAILED: ${problem}`);
  process.exit(problems.length ? 1 : 0);
}
