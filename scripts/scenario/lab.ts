// Where the lab is, for the runner. The embedded lab: the services on their
// loopback twins (127.0.2.X), used when one is running, else started here in
// a temporary data directory and stopped after. A compose lab (--compose):
// the ports compose.yaml publishes on 127.0.0.1; there the runner cannot
// speak from a lab address, so for a direct: step the sending instance
// speaks for it (its POST /api/direct).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { embeddedPort, loopbackTwin } from '../../services/lib/addressing.ts';
import type { Endpoint } from '../../services/lib/config.ts';
import type { Instance } from '../../services/mta/instance.ts';
import { credentialHeader, health } from '../lab/api.ts';
import { composeFile, readLab, root, type LabService } from '../lab/compose.ts';
import { LabError } from '../lab/errors.ts';
import { notRunningHint, publishedLab } from '../lab/published.ts';
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
  const lab = publishedLab(readLab());
  const mtas = lab.services
    .filter((s) => s.instance)
    .map((s): Mta => {
      if (!s.console) throw new LabError(`${composeFile}: services.${s.name}: its API (port ${s.instance!.ports.api}) is not published: the runner reads every MTA's decisions there`);
      const submission = s.ports.find((p) => p.name === 'submission');
      return { name: s.name, instance: s.instance!, api: s.console, submission: submission && { host: s.address, port: submission.port } };
    });
  const dnsService = lab.services.find((s) => s.env.DNS_CONTROL_LISTEN)!;
  const controlPort = dnsService.ports.find((p) => p.name === 'control')?.port;
  if (!controlPort) throw new LabError(`${composeFile}: services.${dnsService.name}: the runner needs its control endpoint published`);
  const control = `http://${dnsService.address}:${controlPort}/`;
  const down = [];
  for (const s of lab.services) if (!(await health(s.health)).up) down.push(s.health);
  if (down.length > 0) throw new LabError(`the compose lab does not answer at ${down.join(', ')} (${notRunningHint(lab)})`);
  return {
    mode: 'compose',
    started: false,
    mtas,
    dns: lab.dns,
    control,
    ca: readFileSync(caFile),
    sendDirect: (from, mx, envelope, raw) => sendThrough(from, mx, envelope, raw),
    stop: async () => undefined,
  };
}

// In Docker only the sending instance has its lab address: it speaks for the
// runner, from that address to the MX's lab address, port 25, as between
// real hosts (services/mta/api/direct.ts).
async function sendThrough(from: Mta, mx: Mx, envelope: Envelope, raw: Buffer): Promise<Reply> {
  const url = `${from.api}api/direct`;
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...credentialHeader() },
      body: JSON.stringify({ mx, envelope, message: raw.toString('base64') }),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (error) {
    throw new LabError(`${url}: ${(error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message}`);
  }
  const body = (await response.json().catch(() => ({}))) as Reply & { error?: string };
  if (!response.ok) throw new LabError(`${from.name} could not send for a direct: step: ${response.status} ${body.error ?? response.statusText}`);
  return { code: body.code, text: body.text };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
