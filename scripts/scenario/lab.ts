// Where the lab is, for the runner. The embedded lab: the services on their
// loopback twins (127.0.2.X), used when one is running, else started here in
// a temporary data directory and stopped after. A compose lab (--compose):
// the ports compose.yaml publishes on 127.0.0.1; there the runner cannot
// speak from a lab address, so a direct: step runs inside that service's
// container (docker compose exec).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { embeddedPort, loopbackTwin } from '../../services/lib/addressing.ts';
import type { Endpoint } from '../../services/lib/config.ts';
import type { Instance } from '../../services/mta/instance.ts';
import { health } from '../lab/api.ts';
import { composeFile, readLab, root, type LabService } from '../lab/compose.ts';
import { LabError } from '../lab/errors.ts';
import { smtpSend, type Envelope, type Reply } from './smtp.ts';

export interface Mta {
  name: string; // the compose service
  instance: Instance;
  api: string; // base URL of its API, ending in /
  submission?: Endpoint; // where the runner reaches its submission port (compose may not publish it)
}

// The MX a direct: step hands the message to, as the lab DNS names it.
export interface Mx {
  hostname: string;
  address: string; // lab address, 192.0.2.X
}

export interface Target {
  mode: 'embedded' | 'compose';
  started: boolean; // by this runner, which stops it after
  mtas: Mta[];
  dns: Endpoint;
  control: string; // base URL of the DNS control endpoint, ending in /
  ca: Buffer; // the lab CA, for STARTTLS
  // SMTP from `from`'s lab address to the MX; the final reply.
  sendDirect(from: Mta, mx: Mx, envelope: Envelope, raw: Buffer): Promise<Reply>;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 30_000;
const caFile = join(root, 'instances', 'certs', 'ca.pem');

// The embedded lab: the one running, or a new one.
export async function embeddedLab(say: (text: string) => void): Promise<Target> {
  const lab = readLab();
  const states = await Promise.all(lab.services.map((s) => health(s.health)));
  let stop = async (): Promise<void> => undefined;
  const started = states.some((s) => !s.up);
  if (started) {
    if (states.some((s) => s.up)) {
      const down = lab.services.filter((_, i) => !states[i].up).map((s) => s.name);
      throw new LabError(`a lab is partly running: ${down.join(', ')} do not answer (npm run lab -- status); stop it, or start it whole`);
    }
    stop = await startLab(say);
  }
  const mtas = lab.services.filter((s) => s.instance).map((s) => embeddedMta(s));
  const dns = lab.services.find((s) => s.env.DNS_CONTROL_LISTEN)!;
  const ca = readFileSync(caFile);
  return {
    mode: 'embedded',
    started,
    mtas,
    dns: lab.dns,
    control: `http://${dns.env.DNS_CONTROL_LISTEN}/`,
    ca,
    sendDirect: (from, mx, envelope, raw) =>
      smtpSend({
        host: loopbackTwin(mx.address),
        port: embeddedPort(25),
        localAddress: loopbackTwin(from.instance.address),
        name: from.instance.hostname,
        servername: mx.hostname,
        ca,
        envelope,
        raw,
      }),
    stop,
  };
}

function embeddedMta(s: LabService): Mta {
  const port = s.ports.find((p) => p.name === 'submission')!.port;
  return { name: s.name, instance: s.instance!, api: s.console!, submission: { host: s.address, port } };
}

// node scripts/lab.ts --fresh in a temporary data directory; resolves once
// it says it is ready, with the function that stops it and removes the data.
async function startLab(say: (text: string) => void): Promise<() => Promise<void>> {
  const dataDir = mkdtempSync(join(tmpdir(), 'mail-lab-scenario-'));
  say(`scenario: no lab is running: starting the embedded lab (data in ${dataDir})`);
  const child = spawn(process.execPath, [join(root, 'scripts', 'lab.ts'), '--fresh', '--data-dir', dataDir], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited; // the lab runner stops its services before it exits
    rmSync(dataDir, { recursive: true, force: true });
  };
  // Ctrl-C or a kill of the runner: the lab goes too.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void stop().then(() => process.exit(130)));
  for (const deadline = Date.now() + START_TIMEOUT_MS; ; await sleep(20)) {
    const ready = /lab ready in (\d+) ms/.exec(stderr);
    if (ready) {
      say(`scenario: lab ready in ${ready[1]} ms`);
      return stop;
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new LabError(`the embedded lab did not start:\n${stderr.trim()}`);
    }
  }
}

// A lab started with docker compose up: the ports it publishes on the host.
export async function composeLab(): Promise<Target> {
  const lab = readLab();
  const published = publishedPorts();
  const port = (service: string, inside: number) => published.get(service)?.get(inside);
  const mtas = lab.services
    .filter((s) => s.instance)
    .map((s): Mta => {
      const api = port(s.name, s.instance!.ports.api);
      if (!api) throw new LabError(`${composeFile}: services.${s.name}: its API (port ${s.instance!.ports.api}) is not published: the runner reads every MTA's decisions there`);
      const submission = port(s.name, s.instance!.ports.submission);
      return { name: s.name, instance: s.instance!, api: `http://127.0.0.1:${api}/`, submission: submission ? { host: '127.0.0.1', port: submission } : undefined };
    });
  const dnsService = lab.services.find((s) => s.env.DNS_CONTROL_LISTEN)!;
  const [dnsPort, controlPort] = [port(dnsService.name, 53), port(dnsService.name, Number(dnsService.env.DNS_CONTROL_LISTEN.split(':')[1]))];
  if (!dnsPort || !controlPort) throw new LabError(`${composeFile}: services.${dnsService.name}: the runner needs its DNS (53) and control endpoint published`);
  const control = `http://127.0.0.1:${controlPort}/`;
  const down = [];
  for (const url of [`${control}health`, ...mtas.map((m) => `${m.api}api/health`)]) if (!(await health(url)).up) down.push(url);
  if (down.length > 0) throw new LabError(`the compose lab does not answer at ${down.join(', ')} (start it with: docker compose up -d)`);
  return {
    mode: 'compose',
    started: false,
    mtas,
    dns: { host: '127.0.0.1', port: dnsPort },
    control,
    ca: readFileSync(caFile),
    sendDirect: (from, mx, envelope, raw) => sendInContainer(from, mx, envelope, raw),
    stop: async () => undefined,
  };
}

// service -> container port -> host port, from "127.0.0.1:HOST:CONTAINER[/udp]".
function publishedPorts(): Map<string, Map<number, number>> {
  const doc = parse(readFileSync(composeFile, 'utf8'), { merge: true });
  const result = new Map<string, Map<number, number>>();
  for (const [name, spec] of Object.entries<{ ports?: string[] }>(doc.services ?? {})) {
    const ports = new Map<number, number>();
    for (const entry of spec.ports ?? []) {
      const [host, inside] = String(entry).replace(/\/(tcp|udp)$/, '').split(':').slice(-2).map(Number);
      ports.set(inside, host);
    }
    result.set(name, ports);
  }
  return result;
}

// Inside the container the MTA's own address is the source and the MX is
// reached at its lab address, port 25, as between real hosts.
const IN_CONTAINER = `
import { createTransport } from 'nodemailer';
import { readFileSync } from 'node:fs';
const [address, servername, name, envelope] = process.argv.slice(1);
const transport = createTransport({ host: address, port: 25, name, tls: { servername, ca: readFileSync('instances/certs/ca.pem') } });
transport.sendMail({ envelope: JSON.parse(envelope), raw: readFileSync(0) }).then(
  (info) => console.log(JSON.stringify({ code: Number(info.response.slice(0, 3)), text: info.response })),
  (error) => console.log(JSON.stringify({ code: error.responseCode ?? 0, text: error.response ?? error.message })),
);`;

async function sendInContainer(from: Mta, mx: Mx, envelope: Envelope, raw: Buffer): Promise<Reply> {
  const service = from.name;
  const args = ['compose', 'exec', '-T', service, 'node', '--input-type=module', '-e', IN_CONTAINER, mx.address, mx.hostname, from.instance.hostname, JSON.stringify(envelope)];
  const child = spawn('docker', args, { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stdin.end(raw);
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  try {
    return JSON.parse(out.trim().split('\n').at(-1)!) as Reply;
  } catch {
    throw new LabError(`docker compose exec ${service} failed (exit ${code}): ${out.trim()}`);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
