// Child processes of the services under test, seen through Linux /proc; and
// an MTA started as the lab starts it (node services/mta/main.ts), on an
// instance file of its own whose ports are free.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';

const root = new URL('../../', import.meta.url).pathname;

// The processes whose parent is pid.
export function childPids(pid: number): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        // pid (comm) state ppid ...: comm may hold spaces, so read after the last ")".
        return Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(')').at(-1)!.trim().split(' ')[1]) === pid;
      } catch {
        return false; // gone meanwhile
      }
    })
    .map(Number);
}

export const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

// instances/<name>.yaml with every port free on host, written into dir.
export async function instanceFile(name: string, host: string, dir: string): Promise<{ file: string; ports: Record<string, number> }> {
  const instance = parse(readFileSync(join(root, `instances/${name}.yaml`), 'utf8'));
  for (const port of Object.keys(instance.ports)) instance.ports[port] = await freePort(host);
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, stringify(instance));
  return { file, ports: instance.ports };
}

// Its stderr is the test's: an MTA that cannot start says why there.
export function startMta(env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ['services/mta/main.ts'], { cwd: root, env: { ...process.env, LOG_LEVEL: 'silent', ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
}
