// The lab started with Docker (`docker compose up`), as the host reaches it:
// through the ports compose.yaml publishes on 127.0.0.1. The same services
// as readLab() gives, with the addresses, ports, health endpoints and
// consoles of the host's side; what compose does not publish is left out
// (the receiver's submission port, say).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { composeFile, readComposeFile, readLab, root, type Lab, type LabService } from './compose.ts';
import { composeCommand } from './compose-command.ts';
import { LabError, START_HINT } from './errors.ts';

const HOST = '127.0.0.1';

// The option every lab CLI command takes, as its --help shows it.
export const COMPOSE_USAGE = `  --compose        talk to the lab that Docker runs (docker compose up), through
                   the ports compose.yaml publishes on 127.0.0.1`;

// The lab as the CLI and the scenario runner reach it, with --compose or without.
export function reachLab(compose: boolean): Lab {
  return compose ? publishedLab(readLab()) : readLab();
}

export function publishedLab(lab: Lab, file = composeFile): Lab {
  const published = publishedPorts(file);
  const services = lab.services.map((s): LabService => {
    const host = (container: number) => published.get(s.name)?.get(container);
    const ports = s.ports.flatMap((p) => {
      const port = host(p.container);
      return port ? [{ ...p, port }] : [];
    });
    const healthPort = host(s.healthCheck.port);
    if (!healthPort) throw new LabError(`${file}: services.${s.name}: its health endpoint (port ${s.healthCheck.port}) is not published, so nothing here can tell whether it is up`);
    const api = s.instance && host(s.instance.ports.api);
    return {
      ...s,
      address: HOST,
      ports,
      health: `http://${HOST}:${healthPort}${s.healthCheck.path}`,
      console: api ? `http://${HOST}:${api}/` : undefined,
    };
  });
  const dns = services.find((s) => s.ports.some((p) => p.name === 'dns' && p.container === 53));
  const dnsPort = dns?.ports.find((p) => p.name === 'dns')!.port;
  if (!dnsPort) throw new LabError(`${file}: the lab DNS's port 53 is not published`);
  return { mode: 'compose', services, dns: { host: HOST, port: dnsPort } };
}

// service -> container port -> host port, from "127.0.0.1:HOST:CONTAINER[/udp]".
function publishedPorts(file: string): Map<string, Map<number, number>> {
  const doc = readComposeFile(file);
  const result = new Map<string, Map<number, number>>();
  for (const [name, spec] of Object.entries<{ ports?: string[] }>(doc.services ?? {})) {
    const ports = new Map<number, number>();
    for (const entry of spec.ports ?? []) {
      const [host, container] = String(entry).replace(/\/(tcp|udp)$/, '').split(':').slice(-2).map(Number);
      ports.set(container, host);
    }
    result.set(name, ports);
  }
  return result;
}

// What to tell a person when the lab does not answer: how to start it; or,
// when the containers of a compose lab are running all the same, the usual
// cause: a host whose own network overlaps the lab's 192.0.2.0/24 (README,
// Troubleshooting).
export function notRunningHint(lab: Lab): string {
  if (lab.mode === 'embedded') return START_HINT;
  const up = runningContainers();
  if (up.length > 0) {
    return (
      `but Docker runs the lab's containers, ${up.join(', ')}: when this host's own network overlaps ` +
      `192.0.2.0/24, no published port answers; check with: ip route get 192.0.2.20 (README, Troubleshooting)`
    );
  }
  return `start it with: ${composeCommand().join(' ')} up -d`;
}

function runningContainers(): string[] {
  const result = spawnSync('docker', ['ps', '--filter', `label=com.docker.compose.project=${projectName()}`, '--format', '{{.Names}}'], { encoding: 'utf8', timeout: 10_000 });
  return result.status === 0 ? result.stdout.split('\n').filter(Boolean).sort() : [];
}

// As Compose names it: COMPOSE_PROJECT_NAME, from the environment or .env.
function projectName(): string {
  if (process.env.COMPOSE_PROJECT_NAME) return process.env.COMPOSE_PROJECT_NAME;
  const env = readFileSync(join(root, '.env'), 'utf8');
  return /^COMPOSE_PROJECT_NAME=(.+)$/m.exec(env)?.[1].trim() ?? 'mail-lab';
}
