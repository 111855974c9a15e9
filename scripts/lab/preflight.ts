// Before anything starts: every address the lab listens on must exist and
// every port be free. Checked by binding each one for a moment, so that the
// person is told which service and which address:port, and what to do.
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import type { LabService } from './compose.ts';
import { LabError } from './errors.ts';

export interface PortProblems {
  busy: string[]; // "receiver 127.0.2.20:10025 (mx)"
  missing: string[]; // loopback addresses this machine does not have
}

export async function findPortProblems(services: LabService[]): Promise<PortProblems> {
  const problems: PortProblems = { busy: [], missing: [] };
  const probes = services.flatMap((s) =>
    s.ports.flatMap((p) => [false, ...(p.udp ? [true] : [])].map(async (udp) => {
      const code = await probe(s.address, p.port, udp);
      if (code === 'EADDRINUSE') problems.busy.push(`${s.name} ${s.address}:${p.port}${udp ? '/udp' : ''} (${p.name})`);
      else if (code === 'EADDRNOTAVAIL' && !problems.missing.includes(s.address)) problems.missing.push(s.address);
      else if (code) problems.busy.push(`${s.name} ${s.address}:${p.port} (${p.name}): ${code}`);
    })),
  );
  await Promise.all(probes);
  return problems;
}

export async function checkPorts(services: LabService[]): Promise<void> {
  const { busy, missing } = await findPortProblems(services);
  if (missing.length > 0) throw new LabError(missingAliases(missing));
  if (busy.length > 0) {
    throw new LabError(
      `these ports are in use by another program:\n${busy.map((b) => `  ${b}`).join('\n')}\n` +
        'Is a lab already running? (npm run lab -- status) Otherwise stop what holds them (ss -ltnup, lsof -i).',
    );
  }
}

// Linux routes all of 127.0.0.0/8 to loopback; macOS has only 127.0.0.1.
export function missingAliases(addresses: string[]): string {
  return [
    `this machine has no loopback address ${addresses.join(', ')} (the lab's hosts are 127.0.2.X).`,
    'On macOS only 127.0.0.1 exists; add the others (until the next reboot):',
    ...addresses.map((a) => `  sudo ifconfig lo0 alias ${a} up`),
    'or run the lab in Docker: docker compose up',
  ].join('\n');
}

function probe(host: string, port: number, udp: boolean): Promise<string | undefined> {
  return new Promise((resolve) => {
    const done = (error?: NodeJS.ErrnoException) => resolve(error?.code ?? (error && error.message));
    if (udp) {
      const socket = createSocket('udp4');
      socket.once('error', (error) => {
        socket.close();
        done(error);
      });
      socket.bind(port, host, () => socket.close(() => done()));
    } else {
      const server = createServer();
      server.once('error', done);
      server.listen({ host, port, exclusive: true }, () => server.close(() => done()));
    }
  });
}
