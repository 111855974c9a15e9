// A small lab for tests: the DNS server over the real zones, and MTA
// instances from the real instance files, each in this process on its
// loopback twin with a port the system chooses, data in a temp directory.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loopbackTwin } from '../../services/lib/addressing.ts';
import { DnsServer } from '../../services/dns/server.ts';
import { loadInstance, type Instance } from '../../services/mta/instance.ts';
import { startMta, type RunningMta } from '../../services/mta/mta.ts';

const root = new URL('../../', import.meta.url).pathname;
const silent = pino({ level: 'silent' });

export interface TestLab {
  dns: DnsServer;
  dnsPort: number;
  dataDir: string;
  start(name: string, change?: (instance: Instance) => Instance): Promise<RunningMta & { host: string; instance: Instance }>;
  close(): Promise<void>;
}

export async function startLab(zoneDir = join(root, 'dns-zone')): Promise<TestLab> {
  const dns = new DnsServer({ listen: { host: '127.0.2.53', port: 0 }, zoneDir, logger: silent });
  await dns.start();
  const dataDir = mkdtempSync(join(tmpdir(), 'lab-test-'));
  const running: RunningMta[] = [];
  // Where each started instance's MX listens, by its loopback twin: how the
  // others reach it (the embedded lab's rule, with ports the system chose).
  const mxPorts = new Map<string, number>();
  return {
    dns,
    dnsPort: dns.port,
    dataDir,
    async start(name, change = (i) => i) {
      const instance = change(loadInstance(join(root, 'instances', `${name}.yaml`)));
      const host = loopbackTwin(instance.address);
      const mta = await startMta({
        instance,
        dataDir: join(dataDir, instance.name),
        keyDir: join(root, 'dns-zone', 'dkim'),
        mx: { host, port: 0 },
        submission: { host, port: 0 },
        api: { host, port: 0 },
        dns: { host: '127.0.2.53', port: dns.port },
        outbound: {
          connect: (address) => ({ host: loopbackTwin(address), port: mxPorts.get(loopbackTwin(address)) ?? 1 }),
          localAddress: host,
        },
        tls: certificates(instance.hostname),
        log: silent,
      });
      running.push(mta);
      mxPorts.set(host, mta.mxPort);
      return { ...mta, host, instance };
    },
    async close() {
      await Promise.all(running.map((m) => m.close()));
      await dns.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export function certificates(hostname: string) {
  const dir = join(root, 'instances', 'certs');
  return { key: readFileSync(join(dir, `${hostname}.key`)), cert: readFileSync(join(dir, `${hostname}.pem`)) };
}

