// npm run bench:dns [-- --seconds N --rounds N --pin]: how many queries a
// second the lab DNS server answers, next to knotd serving the same zone
// files, both measured by dnsperf on loopback. Our server runs as in the lab:
// its own process, with compose.yaml's command, every query logged (to
// /dev/null here) as readable lines, the default; a second server logs JSON
// lines (LOG_FORMAT=json), a third nothing: what each form of the log costs.
// The servers take turns, round after round, and each one's median counts:
// a shared machine's slow moments then fall on all of them alike. --pin puts
// each server on CPU 0 and dnsperf on CPU 1: steadier figures, one core each
// (our server uses one anyway). --class N adds our server with a class of N
// students (LAB_CLASS_DIR), each zone holding 8 typical records, asked the
// same questions and, apart, for the students' names.
import { execFile, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { loadZoneDir } from '../services/dns/zones.ts';
import { issueCredentials } from '../services/lib/classroom.ts';
import { readLab, service } from './lab/compose.ts';
import { onCpu, peakRssMiB, start, stop } from './bench/processes.ts';
import { dnsperf, type DnsperfResult } from './bench/dnsperf.ts';
import { knotConfig } from './bench/knot.ts';
import { compareAnswers, digAnswer, dnsperfData, queryMix, type Question } from './bench/queries.ts';

const TARGET_QPS = 75_000;
const TARGET_RATIO = 1.8; // knotd / ours
const TARGET_RSS = 100 * 1024 * 1024;
const START_TIMEOUT_MS = 10_000;
// Loopback addresses of their own, away from the embedded lab's 127.0.2.X.
const OURS_HOST = '127.0.9.53';
const KNOT_HOST = '127.0.9.54';

const repo = resolve(import.meta.dirname, '..');
const zoneDir = join(repo, 'dns-zone');

// knotd lives in /usr/sbin, which is not on every user's PATH.
process.env.PATH = [process.env.PATH, '/usr/sbin', '/sbin'].join(delimiter);

interface Server {
  label: string;
  host: string;
  port: number;
  child: ChildProcess;
  results: DnsperfResult[];
  rss?: number;
  dataFile?: string; // its own questions (the students' names); the lab's mix otherwise
}

function readOptions(): { seconds: number; rounds: number; pin: boolean; students: number } {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '8' },
      rounds: { type: 'string', default: '3' },
      pin: { type: 'boolean', default: false },
      class: { type: 'string', default: '0' },
    },
  });
  const whole = (option: string, text: string, max: number) => {
    const n = Number(text);
    if (Number.isInteger(n) && n >= 1 && n <= max) return n;
    process.stderr.write(`--${option}: "${text}" is not a whole number from 1 to ${max}\n`);
    process.exit(2);
  };
  const seconds = whole('seconds', values.seconds, 600);
  const rounds = whole('rounds', values.rounds, 20);
  const students = values.class === '0' ? 0 : whole('class', values.class, 500);
  if (values.pin && availableParallelism() < 2) {
    process.stderr.write('--pin needs at least two CPUs\n');
    process.exit(2);
  }
  return { seconds, rounds, pin: values.pin, students };
}

function checkTools(pin: boolean): void {
  const found = (tool: string) =>
    (process.env.PATH ?? '').split(delimiter).some((dir) => {
      try {
        accessSync(join(dir, tool), constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
  const missing = ['dnsperf', 'knotd', 'dig', ...(pin ? ['taskset'] : [])].filter((tool) => !found(tool));
  if (missing.length) {
    const packages = ['dnsperf', 'knot', 'bind9-dnsutils', ...(pin ? ['util-linux'] : [])].join(' ');
    process.stderr.write(`bench:dns needs ${missing.join(', ')}. Install them with:\n  sudo apt-get install -y ${packages}\n`);
    process.exit(1);
  }
}

// A port that is free for both UDP and TCP on this address.
async function freePort(host: string): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const tcp = createServer();
    const port = await new Promise<number>((done, fail) => {
      tcp.once('error', fail);
      tcp.listen(0, host, () => done((tcp.address() as { port: number }).port));
    });
    const udp = createSocket('udp4');
    const udpFree = await new Promise<boolean>((done) => {
      udp.once('error', () => done(false));
      udp.bind(port, host, () => done(true));
    });
    udp.close();
    await new Promise((done) => tcp.close(done));
    if (udpFree) return port;
  }
  throw new Error(`no free port on ${host}`);
}

async function startOurs(log: { LOG_LEVEL: 'info' | 'silent'; LOG_FORMAT: 'text' | 'json' }, cpu: number | undefined, classroom?: { dir: string; dataDir: string }): Promise<Server & { control: string }> {
  const port = await freePort(OURS_HOST);
  const control = await freePort(OURS_HOST);
  // As the lab runs it: compose.yaml's command (its Node options included),
  // with Node's compile cache, so that type stripping is done once.
  const [node, ...args] = service(readLab(), 'dns').command;
  const env = {
    ...process.env,
    NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE ?? join(tmpdir(), 'node-compile-cache'),
    DNS_LISTEN: `${OURS_HOST}:${port}`,
    DNS_CONTROL_LISTEN: `${OURS_HOST}:${control}`,
    ZONE_DIR: zoneDir,
    ...log,
    ...(classroom && { LAB_CLASS_DIR: classroom.dir, DNS_DATA_DIR: classroom.dataDir }),
  };
  // stdout (the query log) goes to /dev/null: written, then thrown away.
  const child = start(...onCpu(cpu, node, args), { cwd: repo, env, stdio: ['ignore', 'ignore', 'inherit'] });
  const label = log.LOG_LEVEL === 'silent' ? 'LOG_LEVEL=silent' : `LOG_FORMAT=${log.LOG_FORMAT}`;
  return { label: `ours (${label})`, host: OURS_HOST, port, child, results: [], control: `http://${OURS_HOST}:${control}` };
}

// A class of `count` students (student001 ...) in runDir, its credentials issued.
function makeClass(runDir: string, count: number): { dir: string; dataDir: string; teacher: string; domains: string[] } {
  const dir = join(runDir, 'class');
  mkdirSync(dir);
  writeFileSync(join(dir, 'class.yaml'), `name: Benchmark class\nstudents: { count: ${count}, prefix: student }\n`);
  const { classFile, issued } = issueCredentials(dir);
  return { dir, dataDir: join(runDir, 'class-data'), teacher: issued.get('teacher')!, domains: classFile.students.map((s) => s.domain) };
}

// What a student publishes in the lesson: MX, SPF, the mail host's
// addresses, a web name, an RSA DKIM key (two strings), DMARC, TLS-RPT.
function typicalRecords(domain: string, dkim: string): string {
  return [
    '@ 300 MX 10 mx.receiver.test.',
    '@ 300 TXT "v=spf1 ip4:192.0.2.10 -all"',
    'mail 300 A 192.0.2.10',
    'mail 300 AAAA 2001:db8::10',
    'www 300 CNAME mail',
    `s1._domainkey 300 TXT "${dkim}"`,
    `_dmarc 300 TXT "v=DMARC1; p=reject; rua=mailto:postmaster@${domain}"`,
    `_smtp._tls 300 TXT "v=TLSRPTv1; rua=mailto:postmaster@${domain}"`,
  ].join('\n');
}

// Every student's zone gets the typical records, through the control endpoint as a student's edit would.
async function fillClass(control: string, teacher: string, domains: string[], child: ChildProcess): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!(await fetch(`${control}/health`).then((r) => r.ok, () => false))) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error('the DNS with the class did not start');
    await new Promise((done) => setTimeout(done, 100));
  }
  const dkim = `v=DKIM1; k=rsa; p=${generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`;
  for (const domain of domains) {
    const response = await fetch(`${control}/zones/${domain}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${teacher}`, 'content-type': 'application/json' },
      body: JSON.stringify({ records: typicalRecords(domain, dkim) }),
    });
    if (!response.ok) throw new Error(`PUT /zones/${domain}: ${response.status} ${await response.text()}`);
  }
}

// The students' names in the lab mix's shares: A, MX and a two-string TXT.
function studentQuestions(domains: string[]): Question[] {
  return domains.flatMap((d): Question[] => [
    { name: `mail.${d}`, type: 'A' },
    { name: d, type: 'MX' },
    { name: `s1._domainkey.${d}`, type: 'TXT' },
  ]);
}

async function startKnot(runDir: string, zones: ReturnType<typeof loadZoneDir>, cpu: number | undefined): Promise<Server> {
  const port = await freePort(KNOT_HOST);
  const config = join(runDir, 'knot.conf');
  mkdirSync(join(runDir, 'db'));
  writeFileSync(config, knotConfig(zones, { runDir, host: KNOT_HOST, port, zoneDir }));
  const child = start(...onCpu(cpu, 'knotd', ['-c', config]), { stdio: ['ignore', 'inherit', 'inherit'] });
  const { stdout } = await promisify(execFile)('knotd', ['--version']);
  const version = /version (\S+)/.exec(stdout)?.[1] ?? '';
  return { label: `knotd ${version}`.trim(), host: KNOT_HOST, port, child, results: [] };
}

async function waitUntilAnswering(server: Server, question: Question): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (server.child.exitCode !== null) throw new Error(`${server.label} exited with code ${server.child.exitCode}`);
    const answer = await digAnswer(server.host, server.port, question).catch(() => []);
    if (answer.length > 0) return;
    await new Promise((done) => setTimeout(done, 100));
  }
  throw new Error(`${server.label} did not answer within ${START_TIMEOUT_MS / 1000} s`);
}

const number = (n: number) => Math.round(n).toLocaleString('en-US');
const megabytes = (bytes: number | undefined) => (bytes === undefined ? '?' : `${(bytes / 1024 / 1024).toFixed(1)} MB`);
const verdict = (ok: boolean) => (ok ? 'ok' : 'MISSED');
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const qps = (server: Server) => median(server.results.map((r) => r.qps));

function printTable(servers: Server[]): void {
  const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
  const rows = [
    ['server', 'queries/s (median)', 'each round', 'avg latency', 'lost', 'peak RSS'],
    ...servers.map((server) => {
      const { label, results, rss } = server;
      const lost = sum(results.map((r) => r.lost));
      return [
        label,
        number(qps(server)),
        results.map((r) => number(r.qps)).join(' '),
        `${median(results.map((r) => r.avgLatencyMs)).toFixed(2)} ms`,
        `${lost} (${((100 * lost) / Math.max(1, sum(results.map((r) => r.sent)))).toFixed(2)}%)`,
        megabytes(rss),
      ];
    }),
  ];
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  for (const row of rows) {
    process.stdout.write(row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]) : cell.padStart(widths[column]))).join('   ') + '\n');
  }
}

async function main(): Promise<number> {
  const { seconds, rounds, pin, students } = readOptions();
  checkTools(pin);
  const serverCpu = pin ? 0 : undefined;
  const zones = loadZoneDir(zoneDir);
  const questions = queryMix(zones);
  const runDir = mkdtempSync(join(tmpdir(), 'bench-dns-'));
  process.once('exit', () => rmSync(runDir, { recursive: true, force: true }));
  const dataFile = join(runDir, 'queries.txt');
  writeFileSync(dataFile, dnsperfData(questions));

  const servers = [
    await startOurs({ LOG_LEVEL: 'info', LOG_FORMAT: 'text' }, serverCpu),
    await startOurs({ LOG_LEVEL: 'info', LOG_FORMAT: 'json' }, serverCpu),
    await startOurs({ LOG_LEVEL: 'silent', LOG_FORMAT: 'text' }, serverCpu),
    await startKnot(runDir, zones, serverCpu),
  ];
  const [ours, , , knot] = servers;
  if (students > 0) {
    // Logged as the lab logs, like the first of ours: the figures compare.
    const klass = makeClass(runDir, students);
    const withClass = await startOurs({ LOG_LEVEL: 'info', LOG_FORMAT: 'text' }, serverCpu, klass);
    await fillClass(withClass.control, klass.teacher, klass.domains, withClass.child);
    const studentFile = join(runDir, 'students.txt');
    const asked = studentQuestions(klass.domains);
    writeFileSync(studentFile, dnsperfData(asked));
    const label = `ours (class of ${students}, 8 records each)`;
    servers.push({ ...withClass, label }, { ...withClass, label: `${label}, students' names`, results: [], dataFile: studentFile });
    await waitUntilAnswering(servers.at(-1)!, asked[asked.length - 1]);
  }
  for (const server of servers) await waitUntilAnswering(server, questions[0]);

  const types = ['A', 'MX', 'TXT'].map((t) => `${questions.filter((q) => q.type === t).length} ${t}`).join(', ');
  process.stdout.write(`query mix: ${questions.length} questions (${types})\n`);
  const diffs = await compareAnswers(ours, knot, questions);
  if (diffs.length) process.stdout.write(`answers differ between ${ours.label} and ${knot.label}:\n${diffs.join('\n')}\n`);
  else process.stdout.write(`answers: ${ours.label} and ${knot.label} give the same answer section to every question\n`);

  const loadBefore = loadavg()[0];
  for (let round = 1; round <= rounds; round++) {
    for (const server of servers) {
      process.stdout.write(`round ${round}/${rounds}: dnsperf against ${server.label}, ${seconds} s ...\n`);
      server.results.push(await dnsperf(server.host, server.port, server.dataFile ?? dataFile, seconds, pin ? 1 : undefined));
    }
  }
  for (const server of servers) server.rss = peakRssMiB(server.child.pid!) * 1024 * 1024;
  await Promise.all([...new Set(servers.map((server) => server.child))].map((child) => stop(child)));

  const placement = pin ? 'servers on CPU 0, dnsperf on CPU 1' : `${availableParallelism()} CPUs shared`;
  process.stdout.write(`\ndnsperf -c 4 -q 100 -l ${seconds}, ${rounds} rounds, UDP on loopback, ${placement}\n`);
  // Other work on the machine lowers every figure: say how busy it was.
  process.stdout.write(`load average before the runs: ${loadBefore.toFixed(2)}\n`);
  printTable(servers);
  const ratio = qps(knot) / qps(ours);
  process.stdout.write(
    [
      '',
      `${ours.label}: ${number(qps(ours))} q/s   target >= ${number(TARGET_QPS)}   ${verdict(qps(ours) >= TARGET_QPS)}`,
      `knotd / ours: ${ratio.toFixed(2)}   target <= ${TARGET_RATIO}   ${verdict(ratio <= TARGET_RATIO)}`,
      `${ours.label} peak RSS: ${megabytes(ours.rss)}   target < ${megabytes(TARGET_RSS)}   ${verdict(ours.rss !== undefined && ours.rss < TARGET_RSS)}`,
      ...(students > 0
        ? [`with a class of ${students}: ${number(qps(servers[4]))} q/s (the lab's names), ${number(qps(servers[5]))} q/s (the students' names), against ${number(qps(ours))} q/s with today's zones; peak RSS ${megabytes(servers[4].rss)}`]
        : []),
      '',
    ].join('\n'),
  );
  return diffs.length ? 1 : 0;
}

// An explicit exit: it also ends the children that an error left running.
process.exit(
  await main().catch((error: Error) => {
    process.stderr.write(`bench:dns: ${error.message}\n`);
    return 1;
  }),
);
