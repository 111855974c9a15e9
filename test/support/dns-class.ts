// The lab DNS in classroom mode, as a process (node services/dns/main.ts):
// a class of its own in a temporary directory (class.yaml and credentials
// made by issueCredentials), its students' zones in another, ports the
// system chooses on 127.0.2.53. And the control endpoint's client, able to
// speak from a loopback address of the test's choosing (failures are counted
// per client address).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issueCredentials } from '../../services/lib/classroom.ts';

const root = new URL('../../', import.meta.url).pathname;
export const HOST = '127.0.2.53';

export interface TestClass {
  dir: string;
  credentials: Map<string, string>; // login -> credential
}

export function makeClass(classYaml: string): TestClass {
  const dir = mkdtempSync(join(tmpdir(), 'dns-class-'));
  writeFileSync(join(dir, 'class.yaml'), classYaml);
  return { dir, credentials: issueCredentials(dir).issued };
}

export interface RunningDns {
  child: ChildProcess;
  port: number; // UDP and TCP
  control: string; // http://127.0.2.53:PORT
  output: () => string; // its log, JSON lines
  stop(): Promise<void>;
}

// It logs at info (LOG_LEVEL is not the caller's): its lines say where it listens.
export async function startDns(env: Record<string, string>): Promise<RunningDns> {
  const child = spawn(process.execPath, ['services/dns/main.ts'], {
    cwd: root,
    env: { ...process.env, DNS_LISTEN: `${HOST}:0`, DNS_CONTROL_LISTEN: `${HOST}:0`, ...env, LOG_LEVEL: 'info', LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const line = (msg: string) => out.split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((l) => l.msg === msg);
  for (const deadline = Date.now() + 10_000; !line('control endpoint listening'); await new Promise((r) => setTimeout(r, 20))) {
    if (child.exitCode !== null) throw new Error(`the DNS exited (${child.exitCode}): ${err}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the DNS was not ready within 10 s: ${out}${err}`);
    }
  }
  const port = Number(line('DNS server listening (UDP and TCP)').listen.split(':')[1]);
  return {
    child,
    port,
    control: `http://${line('control endpoint listening').control}`,
    output: () => out,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

// The control endpoint's client (scripts/bench/json-request.ts).
export { call, type Answer } from '../../scripts/bench/json-request.ts';
