// A small lab for tests: the DNS server over the real zones, and MTA
// instances from the real instance files, each in this process on its
// loopback twin with a port the system chooses, data in a temp directory.
// An instance can be stopped and started again: it comes back on the same
// ports with the same data, as a restarted host would.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loopbackTwin } from '../../services/lib/addressing.ts';
import { startControl } from '../../services/dns/control.ts';
import { DnsServer } from '../../services/dns/server.ts';
import { StudentZones } from '../../services/dns/student-zones.ts';
import type { Classroom } from '../../services/lib/classroom.ts';
import { loadInstance, type Instance } from '../../services/mta/instance.ts';
import { startMta, type RunningMta } from '../../services/mta/mta.ts';

const root = new URL('../../', import.meta.url).pathname;
const silent = pino({ level: 'silent' });

export type LabMta = RunningMta & { host: string; instance: Instance };

export interface TestLab {
  dns: DnsServer;
  dnsPort: number;
  dataDir: string;
  start(name: string, change?: (instance: Instance) => Instance): Promise<LabMta>;
  // By instance name; others then find its ports closed. Clients still
  // connected (other MTAs' pooled connections) get 421 after 3 s.
  stop(name: string): Promise<void>;
  close(): Promise<void>;
}

export interface LabOptions {
  classroom?: Classroom; // classroom mode (services/lib/classroom.ts), as LAB_CLASS_DIR gives it: the DNS serves the students' zones
}

export async function startLab(zoneDir = join(root, 'dns-zone'), options: LabOptions = {}): Promise<TestLab> {
  const dns = new DnsServer({ listen: { host: '127.0.2.53', port: 0 }, zoneDir, logger: silent });
  await dns.start();
  const dataDir = mkdtempSync(join(tmpdir(), 'lab-test-'));
  const students = options.classroom && (await StudentZones.open(options.classroom, join(dataDir, 'dns'), dns.zones, silent));
  const control = await startControl(dns, { host: '127.0.2.53', port: 0 }, silent, students); // its query log feeds the console
  const running = new Map<string, RunningMta>(); // by instance name
  // The ports each instance got the first time, by instance name.
  const ports = new Map<string, { mx: number; submission: number; api: number }>();
  // Where each started instance listens, by its loopback twin and the lab
  // port (25, 587, 8025) the port stands for: how the others reach it (the
  // embedded lab's rule, with ports the system chose).
  const labPorts = new Map<string, number>();
  return {
    dns,
    dnsPort: dns.port,
    dataDir,
    async start(name, change = (i) => i) {
      const instance = change(loadInstance(join(root, 'instances', `${name}.yaml`)));
      if (running.has(instance.name)) throw new Error(`${instance.name} is already running`);
      const host = loopbackTwin(instance.address);
      const before = ports.get(instance.name);
      const mta = await startMta({
        instance,
        dataDir: join(dataDir, instance.name),
        keyDir: join(root, 'dns-zone', 'dkim'),
        mx: { host, port: before?.mx ?? 0 },
        submission: { host, port: before?.submission ?? 0 },
        api: { host, port: before?.api ?? 0 },
        dns: { host: '127.0.2.53', port: dns.port },
        dnsControl: { host: '127.0.2.53', port: (control.address() as { port: number }).port },
        outbound: {
          connect: (address, labPort = 25) => ({ host: loopbackTwin(address), port: labPorts.get(`${loopbackTwin(address)}:${labPort}`) ?? 1 }),
          localAddress: host,
        },
        tls: certificates(instance.hostname),
        log: silent,
        classroom: options.classroom,
      });
      running.set(instance.name, mta);
      ports.set(instance.name, { mx: mta.mxPort, submission: mta.submissionPort, api: mta.apiPort });
      for (const [labPort, port] of [[instance.ports.mx, mta.mxPort], [instance.ports.submission, mta.submissionPort], [instance.ports.api, mta.apiPort]]) labPorts.set(`${host}:${labPort}`, port);
      return { ...mta, host, instance };
    },
    async stop(name) {
      const mta = running.get(name);
      if (!mta) throw new Error(`${name} is not running`);
      running.delete(name);
      await mta.close();
    },
    async close() {
      await Promise.all([...running.values()].map((m) => m.close()));
      control.close();
      await dns.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export function certificates(hostname: string) {
  const dir = join(root, 'instances', 'certs');
  return { key: readFileSync(join(dir, `${hostname}.key`)), cert: readFileSync(join(dir, `${hostname}.pem`)), ca: readFileSync(join(dir, 'ca.pem')) };
}


// A DMARC aggregate report covers one period of the receiver's (periodSeconds,
// counted from the epoch, as the MTA counts them): messages sent across the
// end of one are in two reports. A test that counts the reports of the mail it
// sends calls this first: when the period ends within needMs, it waits for
// the next one to begin.
export async function inOneReportPeriod(receiver: LabMta, needMs: number): Promise<void> {
  const periodMs = receiver.instance.reports!.periodSeconds * 1000;
  const left = periodMs - (Date.now() % periodMs);
  if (left < needMs) await new Promise((resolve) => setTimeout(resolve, left + 100));
}
