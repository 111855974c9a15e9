// npm run bench:dns [-- --seconds N --rounds N --pin]: how many queries a
// second the lab DNS server answers, next to knotd serving the same zone
// files, both measured by dnsperf on loopback. Our server runs as in the lab:
// its own process, with compose.yaml's command, every query logged (to
// /dev/null here) as readable lines, the default; a second server logs JSON
// lines (LOG_FORMAT=json), a third nothing: what each form of the log costs.
// The servers take turns, round after round, and each one's median counts:
// a shared machine's slow moments then fall on all of them alike. --pin puts
// each server on CPU 0 and dnsperf on CPU 1: steadier figures, one core each
// (our server uses one anyway).
import { execFile, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { loadZoneDir } from '../services/dns/zones.ts';
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
}

function readOptions(): { seconds: number; rounds: number; pin: boolean } {
  const { values } = parseArgs({
    options: { seconds: { type: 'string', default: '8' }, rounds: { type: 'string', default: '3' }, pin: { type: 'boolean', default: false } },
  });
  const whole = (option: string, text: string, max: number) => {
    const n = Number(text);
    if (Number.isInteger(n) && n >= 1 && n <= max) return n;
    process.stderr.write(`--${option}: "${text}" is not a whole number from 1 to ${max}\n`);
    process.exit(2);
  };
  const seconds = whole('seconds', values.seconds, 600);
  const rounds = whole('rounds', values.rounds, 20);
  if (values.pin && availableParallelism() < 2) {
    process.stderr.write('--pin needs at least two CPUs\n');
    process.exit(2);
  }
  return { seconds, rounds, pin: values.pin };
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

async function startOurs(log: { LOG_LEVEL: 'info' | 'silent'; LOG_FORMAT: 'text' | 'json' }, cpu: number | undefined): Promise<Server> {
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
  };
  // stdout (the query log) goes to /dev/null: written, then thrown away.
  const child = start(...onCpu(cpu, node, args), { cwd: repo, env, stdio: ['ignore', 'ignore', 'inherit'] });
  const label = log.LOG_LEVEL === 'silent' ? 'LOG_LEVEL=silent' : `LOG_FORMAT=${log.LOG_FORMAT}`;
  return { label: `ours (${label})`, host: OURS_HOST, port, child, results: [] };
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
  const { seconds, rounds, pin } = readOptions();
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
      server.results.push(await dnsperf(server.host, server.port, dataFile, seconds, pin ? 1 : undefined));
    }
  }
  for (const server of servers) server.rss = peakRssMiB(server.child.pid!) * 1024 * 1024;
  await Promise.all(servers.map((server) => stop(server.child)));

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
