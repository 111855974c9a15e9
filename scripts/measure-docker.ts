// npm run measure:docker [-- --rounds N]: the figures of the lab under Docker,
// on the engine as this machine has it (scripts/lab/docker.ts: a private
// daemon in its own namespace). Root, Linux, a while (about 5 minutes):
//   - the image: build time without the layer cache (the base image kept), size;
//   - `up` to every service healthy, median of N (default 5): with the lab
//     daemon cold (started just before: no network, containers or volumes,
//     nothing of the lab in its memory) and warm (the same daemon after
//     `down -v`);
//   - the idle lab's CPU over 60 s: the containers' cgroups, and beside them
//     the daemon's side (dockerd, containerd, the shims), which runs the
//     healthchecks;
//   - memory per container (docker stats --no-stream);
//   - the scenario library against compose (--compose) and against the
//     embedded lab, N rounds each, taking turns: medians and their ratio.
// Everything started is stopped: the lab, its daemon, and the main daemon if
// this script started it.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { readLab } from './lab/compose.ts';
import { composeCommand } from './lab/compose-command.ts';
import { buildImage, compose, containers, inNamespace, labDaemonDown, labDaemonUp, LAB_SOCKET, mainDaemon, run, untilHealthy, whyNoDocker } from './lab/docker.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' } } });
const rounds = Number(values.rounds);
const services = readLab().services.length;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const say = (line: string) => process.stdout.write(`${line}\n`);

const why = await whyNoDocker();
if (why) {
  process.stderr.write(`measure:docker: ${why}\n`);
  process.exit(1);
}
const daemon = await mainDaemon();
let labUp = false;
try {
  say(`Compose: ${composeCommand().join(' ')}; Docker ${(await run('docker', ['version', '--format', '{{.Server.Version}}'])).stdout.trim()}`);
  const build = await buildImage({ noCache: true });
  const size = Number((await run('docker', ['image', 'inspect', 'mail-lab:latest', '--format', '{{.Size}}'])).stdout);
  say(`image: built in ${seconds(build)} (docker-compose build --no-cache; the base image kept), ${(size / 1e6).toFixed(0)} MB`);

  const up = async () => {
    const started = performance.now();
    await compose(['up', '-d']);
    return untilHealthy(services, started);
  };
  const cold: number[] = [];
  const warm: number[] = [];
  for (let i = 0; i < rounds; i++) {
    await labDaemonDown();
    await labDaemonUp();
    labUp = true;
    cold.push(await up());
    await compose(['down', '-v']);
    warm.push(await up());
    await compose(['down', '-v']);
  }
  say(`up to all ${services} healthy, median of ${rounds}: daemon cold ${seconds(median(cold))} (${cold.map(seconds).join(', ')}); warm ${seconds(median(warm))} (${warm.map(seconds).join(', ')})`);

  await up();
  await new Promise((r) => setTimeout(r, 25_000)); // past the first slow healthcheck of each service
  const idle = await idleCpu(60_000);
  say(`idle lab over 60 s: containers ${idle.containers.toFixed(2)}% of one core; the daemon's side (dockerd, containerd, shims) ${idle.daemon.toFixed(2)}%`);
  const stats = await run('docker', ['stats', '--no-stream', '--format', '{{.Name}}\t{{.MemUsage}}\t{{.CPUPerc}}'], { env: { ...process.env, DOCKER_HOST: `unix://${LAB_SOCKET}` } });
  say(`memory per container (docker stats --no-stream):\n${stats.stdout.trim().split('\n').sort().map((l) => `  ${l}`).join('\n')}`);

  const composeRuns: number[] = [];
  const embeddedRuns: number[] = [];
  for (let i = 0; i < Math.min(rounds, 3); i++) {
    composeRuns.push(libraryMs(await inNamespace(process.execPath, ['scripts/scenario.ts', 'all', '--compose', '--json'], { timeoutMs: 600_000 })));
    embeddedRuns.push(libraryMs(await run(process.execPath, ['scripts/scenario.ts', 'all', '--json'], { timeoutMs: 600_000 })));
  }
  say(
    `scenario library: compose ${seconds(median(composeRuns))} (${composeRuns.map(seconds).join(', ')}), ` +
      `embedded ${seconds(median(embeddedRuns))} (${embeddedRuns.map(seconds).join(', ')}): ${(median(composeRuns) / median(embeddedRuns)).toFixed(2)}x`,
  );
} finally {
  if (labUp || (await containers().catch(() => [])).length > 0) await compose(['down', '-v']).catch(() => undefined);
  await labDaemonDown();
  await daemon.stop();
}

function libraryMs(result: { code: number | null; stdout: string; stderr: string }): number {
  const library = JSON.parse(result.stdout || '{}') as { ms?: number; failed?: number };
  if (library.ms === undefined) throw new Error(`the scenario library did not run:\n${result.stderr}`);
  if (library.failed) process.stderr.write(`measure:docker: ${library.failed} scenarios failed in a run (its time is still counted)\n`);
  return library.ms;
}

// CPU time over a span, as % of one core: the lab containers' cgroups (all
// under the lab daemon's cgroup parent), and the daemon's own processes.
async function idleCpu(ms: number): Promise<{ containers: number; daemon: number }> {
  const cgroup = () => {
    for (const [file, scale] of [['/sys/fs/cgroup/cpuacct/docker-lab/cpuacct.usage', 1e-9], ['/sys/fs/cgroup/docker-lab/cpu.stat', 1e-6]] as const) {
      try {
        const text = readFileSync(file, 'utf8');
        return Number(/usage_usec (\d+)/.exec(text)?.[1] ?? text) * scale;
      } catch {
        // the other cgroup version
      }
    }
    throw new Error('no cgroup docker-lab (the lab daemon runs with --cgroup-parent docker-lab)');
  };
  const daemonSide = async () => {
    const pids = (await run('pgrep', ['-f', 'docker-lab|containerd-shim'])).stdout.split('\n').filter(Boolean);
    const ticks = pids.reduce((sum, pid) => {
      try {
        const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
        return sum + fields.slice(11, 15).reduce((a, b) => a + Number(b), 0); // utime stime cutime cstime
      } catch {
        return sum;
      }
    }, 0);
    return ticks / 100; // USER_HZ
  };
  const [c0, d0] = [cgroup(), await daemonSide()];
  await new Promise((r) => setTimeout(r, ms));
  const [c1, d1] = [cgroup(), await daemonSide()];
  return { containers: ((c1 - c0) / (ms / 1000)) * 100, daemon: ((d1 - d0) / (ms / 1000)) * 100 };
}
