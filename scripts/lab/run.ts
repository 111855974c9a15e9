// npm run lab: the services of compose.yaml as local processes, each on the
// loopback twin of its lab address (DESIGN.md, "Two ways to run, one
// behaviour"). Each starts once the services it depends on are healthy; one
// table when all are; their logs interleaved on stdout, the runner's own
// words on stderr. Ctrl-C or SIGTERM stops them all. One that dies after it
// was healthy is restarted (restarts.ts); one that cannot start, or keeps
// dying, stops them all.
import { Resolver } from 'node:dns/promises';
import { rmSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { health } from './api.ts';
import { defaultDataDir, readLab, service, type Lab, type LabService } from './compose.ts';
import { LabError } from './errors.ts';
import { logStyle } from '../../services/lib/log-line.ts';
import { LogFormat } from './logs.ts';
import { checkPorts, missingAliases } from './preflight.ts';
import { CRASH_LIMIT, CRASH_WINDOW_MS, Crashes } from './restarts.ts';
import { running, startService, stopService, type Child } from './supervise.ts';
import { table } from './table.ts';

export const usage = `npm run lab [-- --fresh] [--data-dir DIR]
npm run lab -- COMMAND [--help]

Without a command: starts the lab without Docker, every service of
compose.yaml as a local process on the loopback twin of its lab address
(192.0.2.X -> 127.0.2.X, ports below 1024 + 10000), waits until all are
healthy and prints where each one listens. Ctrl-C stops it.

  --fresh          start from empty mailboxes, queues and session records
  --data-dir DIR   where the services keep their data (default .lab-data)

Commands, for a lab that is running:
  status                        each service up or down, and its health
  send --from A --to B [--wait] submit a message through a lab MTA, follow it
  lookup NAME [TYPE]            ask the lab DNS
  inbox [MAILBOX]               what arrived, with verdicts
  reports --send                the DMARC aggregate reports not sent yet, now`;

const STARTUP_TIMEOUT_MS = 30_000;
const say = (text: string) => process.stderr.write(`${text}\n`);

export async function runLab(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { fresh: { type: 'boolean' }, 'data-dir': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const dataDir = resolve(values['data-dir'] ?? defaultDataDir);
  const lab = readLab(dataDir);
  await checkPorts(lab.services);
  // Only what the services themselves keep there, never anything else in DIR.
  if (values.fresh) for (const s of lab.services) rmSync(join(dataDir, s.name), { recursive: true, force: true });

  const names = lab.services.map((s) => s.name);
  const format = new LogFormat(names, logStyle(process.env));
  const children = new Map<string, Child>(); // each service's current process
  const wasHealthy = new Set<string>();
  const crashes = new Crashes();
  let stopping = false;
  let exitCode = 0;
  const stopped = Promise.withResolvers<void>();

  async function stopAll(): Promise<void> {
    if (stopping) return;
    stopping = true;
    await Promise.all([...children.values()].map((c) => stopService(c)));
    stopped.resolve();
  }

  function died(child: Child, code: number | null, signal: string | null): void {
    const { name } = child.service;
    say(`lab: ${name} stopped unexpectedly (${signal ? `signal ${signal}` : `exit code ${code}`}); its last lines:`);
    for (const line of child.lastLines) say(`  ${format.line(name, line.text, line.stream)}`);
    const text = child.lastLines.map((l) => l.text).join('\n');
    const busy = /EADDRINUSE\D*(\d+\.\d+\.\d+\.\d+:\d+)/.exec(text);
    const missing = /EADDRNOTAVAIL\D*(\d+\.\d+\.\d+\.\d+)/.exec(text);
    if (busy) say(`lab: ${name} could not listen on ${busy[1]}: another program holds that port`);
    if (missing) say(`lab: ${missingAliases([missing[1]])}`);
    // One that never became healthy cannot start: a restart would fail the same way.
    if (!wasHealthy.has(name)) return giveUp();
    const { count, delayMs } = crashes.record(name);
    const window = `within ${CRASH_WINDOW_MS / 1000} s`;
    if (delayMs === undefined) {
      say(`lab: ${name} stopped unexpectedly ${count} times ${window}: giving up`);
      return giveUp();
    }
    say(`lab: restarting ${name} in ${delayMs} ms (crash ${count} ${window}; at ${CRASH_LIMIT} the lab stops)`);
    void restart(child.service, delayMs);
  }

  function giveUp(): void {
    say('lab: stopping the other services');
    exitCode = 1;
    void stopAll();
  }

  // The same command and environment, the same data directory.
  async function restart(s: LabService, delayMs: number): Promise<void> {
    await sleep(delayMs);
    if (stopping) return;
    const begun = performance.now();
    try {
      if (await healthy(s, start(s))) say(`lab: ${s.name} is healthy again (restarted in ${Math.round(performance.now() - begun)} ms)`);
    } catch (error) {
      say(`lab: ${(error as Error).message}`);
      giveUp();
    }
  }

  function start(s: LabService): Child {
    const child = startService(s, { LAB_EMBEDDED: '1', LOG_FORMAT: 'json' }, (c, text, stream) => {
      process.stdout.write(`${format.line(c.service.name, text, stream)}\n`);
    });
    children.set(s.name, child);
    void child.closed.then(({ code, signal }) => {
      if (!stopping) died(child, code, signal);
    });
    return child;
  }

  // False when it died or the lab is stopping before it was healthy.
  async function healthy(s: LabService, child: Child): Promise<boolean> {
    for (const deadline = Date.now() + STARTUP_TIMEOUT_MS; !stopping && running(child); await sleep(20)) {
      if ((await health(s.health, 500)).up) {
        wasHealthy.add(s.name);
        return true;
      }
      if (Date.now() > deadline) throw new LabError(`${s.name} did not become healthy within ${STARTUP_TIMEOUT_MS / 1000} s (${s.health})`);
    }
    return false;
  }

  // Each service once, after the ones it depends on (compose's depends_on).
  const started = new Map<string, Promise<void>>();
  const up = (s: LabService): Promise<void> => {
    if (!started.has(s.name)) {
      started.set(s.name, (async () => {
        await Promise.all(s.dependsOn.map((d) => up(service(lab, d))));
        if (!stopping) await healthy(s, start(s));
      })());
    }
    return started.get(s.name)!;
  };

  // SIGHUP: the terminal closed.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (!stopping) say(`lab: ${signal}, stopping`);
      void stopAll();
    });
  }
  // The children have process groups of their own: if the runner ends in a
  // way nobody planned, nothing else would stop them.
  process.on('exit', () => [...children.values()].filter(running).forEach((c) => c.process.kill('SIGKILL')));

  const shown = relative(process.cwd(), dataDir);
  say(`lab: starting ${names.join(', ')} from compose.yaml (data in ${shown.startsWith('..') ? dataDir : shown || '.'})`);
  try {
    await Promise.all(lab.services.map(up));
  } catch (error) {
    say(`lab: ${(error as Error).message}`);
    exitCode = 1;
    void stopAll();
  }
  if (!stopping) {
    say(`\n${await readyTable(lab)}\n`);
    say(`lab ready in ${Math.round(performance.now())} ms; Ctrl-C stops it. In another terminal: npm run lab -- --help`);
  }
  await stopped.promise;
  say(exitCode === 0 ? 'lab: stopped' : 'lab: stopped after a failure');
  return exitCode;
}

// Where everything is. The lab name is what the lab DNS says the address
// is called (its PTR record), as any client in the lab would see it.
async function readyTable(lab: Lab): Promise<string> {
  const resolver = new Resolver({ timeout: 1000, tries: 1 });
  resolver.setServers([`${lab.dns.host}:${lab.dns.port}`]);
  const rows = await Promise.all(
    lab.services.map(async (s) => [
      s.name,
      (await resolver.reverse(s.labAddress).catch(() => ['?']))[0],
      s.labAddress,
      [s.address, ...s.ports.map((p) => `${p.name}:${p.port}`)].join(' '),
      s.console ?? '-',
    ]),
  );
  return table([['service', 'lab name', 'lab address', 'local address and ports', 'console'], ...rows]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
