// The lab's compose.yaml run for real, for its Docker test and for
// `npm run measure:docker`, on machines like the project's own: a Docker
// engine that may need starting, no Docker Hub (the base image is made
// offline), and a host whose own uplink may be the lab's 192.0.2.0/24. The
// lab therefore runs on a second daemon in its own network namespace
// (the workplace's shared/docker/labd.sh): there 192.0.2.0/24 exists only on
// the lab bridge, nothing can leave the machine, and the published ports
// are reached from inside that namespace.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { root } from './compose.ts';
import { composeCommand } from './compose-command.ts';

export const NAMESPACE = 'docklab';
export const LAB_SOCKET = '/var/run/docker-lab.sock';
const PROJECT = 'mail-lab';

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export function run(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Ran> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: root, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], timeout: options.timeoutMs ?? 600_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', (error) => (stderr += error.message));
    child.on('close', (code) => resolve({ code, stdout, stderr, ms: performance.now() - started }));
  });
}

async function ok(command: string, args: string[], options: Parameters<typeof run>[2] = {}): Promise<Ran> {
  const result = await run(command, args, options);
  if (result.code !== 0) throw new Error(`${[command, ...args].join(' ')} failed (exit ${result.code}):\n${(result.stderr || result.stdout).trim().split('\n').slice(-20).join('\n')}`);
  return result;
}

// The workplace's Docker tools (base-image.sh, labd.sh) beside the project.
export function dockerTools(): string | undefined {
  return [join(root, '..', 'shared', 'docker'), '/work/shared/docker'].find((dir) => existsSync(join(dir, 'labd.sh')));
}

// Why the lab cannot run in Docker here, or undefined when it can.
export async function whyNoDocker(): Promise<string | undefined> {
  if (process.platform !== 'linux') return 'the Docker test runs on Linux';
  if (process.getuid?.() !== 0) return 'the Docker test needs root (a second daemon, a network namespace)';
  for (const tool of ['docker', 'dockerd', 'ip', 'debootstrap', 'iptables']) {
    if ((await run('sh', ['-c', `command -v ${tool}`])).code !== 0) return `${tool} is not installed (apt-get install docker.io docker-compose debootstrap iptables)`;
  }
  if (!dockerTools()) return 'the workplace Docker tools (shared/docker: base-image.sh, labd.sh) are not beside the project';
  return undefined;
}

// The main daemon: the one answering, or one started here (stop() stops only that one).
export async function mainDaemon(): Promise<{ started: boolean; stop(): Promise<void> }> {
  if ((await run('docker', ['info'], { timeoutMs: 20_000 })).code === 0) return { started: false, stop: async () => undefined };
  const child = spawn('dockerd', [], { detached: true, stdio: 'ignore' });
  child.unref();
  for (const deadline = Date.now() + 60_000; (await run('docker', ['info'], { timeoutMs: 20_000 })).code !== 0; await sleep(500)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('dockerd did not start within 60 s');
  }
  return {
    started: true,
    async stop() {
      child.kill('SIGTERM');
      for (const deadline = Date.now() + 30_000; child.exitCode === null && child.signalCode === null && Date.now() < deadline; ) await sleep(200);
    },
  };
}

// node:24-slim made offline when it cannot be pulled, then the lab's image,
// both with the main daemon. Returns the build's time.
export async function buildImage({ noCache = false } = {}): Promise<number> {
  await ok('bash', [join(dockerTools()!, 'base-image.sh')], { timeoutMs: 900_000 });
  // The main daemon builds (the classic builder: no buildx here); labd.sh copies the image over.
  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_BUILDKIT: '0', COMPOSE_DOCKER_CLI_BUILD: '0' };
  delete env.DOCKER_HOST;
  const [command, ...args] = composeCommand();
  return (await ok(command, [...args, 'build', ...(noCache ? ['--no-cache'] : [])], { env, timeoutMs: 900_000 })).ms;
}

export async function labDaemonUp(): Promise<void> {
  await ok('bash', [join(dockerTools()!, 'labd.sh'), 'up'], { timeoutMs: 300_000 });
}

export async function labDaemonDown(): Promise<void> {
  await ok('bash', [join(dockerTools()!, 'labd.sh'), 'down'], { timeoutMs: 120_000 });
}

// Compose against the lab daemon.
export function compose(args: string[], timeoutMs = 300_000): Promise<Ran> {
  const [command, ...first] = composeCommand();
  return ok(command, [...first, ...args], { env: { ...process.env, DOCKER_HOST: `unix://${LAB_SOCKET}` }, timeoutMs });
}

// A command run inside the lab daemon's namespace, where the published ports are.
export function inNamespace(command: string, args: string[], options: Parameters<typeof run>[2] = {}): Promise<Ran> {
  return run('ip', ['netns', 'exec', NAMESPACE, command, ...args], { ...options, env: { ...(options.env ?? process.env), DOCKER_HOST: `unix://${LAB_SOCKET}` } });
}

export interface Container {
  Id: string;
  Names: string[];
  State: string;
  Status: string; // "Up 3 seconds (healthy)"
  Labels: Record<string, string>;
}

// The lab's containers, from the lab daemon's Engine API: cheap enough to
// ask every 100 ms, where a docker command would cost a process each time.
export function containers(): Promise<Container[]> {
  const filters = encodeURIComponent(JSON.stringify({ label: [`com.docker.compose.project=${PROJECT}`] }));
  return engine(`/containers/json?all=1&filters=${filters}`);
}

export function inspect(id: string): Promise<{ State: { Pid: number; Status: string; Health?: { Status: string } }; RestartCount: number }> {
  return engine(`/containers/${id}/json`);
}

export function containerOf(all: Container[], service: string): Container {
  const found = all.find((c) => c.Labels['com.docker.compose.service'] === service);
  if (!found) throw new Error(`no container of service ${service}`);
  return found;
}

// Resolves with the time until every service's container is healthy.
export async function untilHealthy(services: number, since: number, timeoutMs = 60_000): Promise<number> {
  for (const deadline = Date.now() + timeoutMs; ; await sleep(100)) {
    const all = await containers().catch(() => []);
    if (all.length === services && all.every((c) => c.Status.includes('(healthy)'))) return performance.now() - since;
    if (Date.now() > deadline) throw new Error(`not all healthy within ${timeoutMs / 1000} s: ${all.map((c) => `${c.Names[0]} ${c.Status}`).join(', ')}`);
  }
}

function engine<T>(path: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: LAB_SOCKET, path, timeout: 10_000 }, (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      response.on('end', () => (response.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(`${path}: ${response.statusCode} ${body}`))));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`${path}: no answer`)));
    req.end();
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
