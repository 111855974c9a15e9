// node services/dns/main.ts: the lab's authoritative DNS server.
//   DNS_LISTEN          host:port for UDP and TCP (default 0.0.0.0:53)
//   ZONE_DIR            directory of *.zone master files (default dns-zone)
//   DNS_CONTROL_LISTEN  host:port of the HTTP control endpoint (default 127.0.0.1:8053:
//                       it changes the lab's DNS, so it is opened wider only on purpose,
//                       as compose.yaml does inside the container)
//   DNS_TCP_CLIENTS, DNS_TCP_CLIENTS_PER_ADDRESS, DNS_TCP_IDLE_MS
//                       TCP connections at once in all and from one address, and the
//                       idle timeout (defaults 256, 64, 10000; RFC 7766 section 6.2.3)
//   LAB_CLASS_DIR       a class directory (class.yaml, credentials.json): classroom
//                       mode, every student's zone served beside the files' (none: no class)
//   DNS_DATA_DIR        where the students' zones are kept (default .lab-data/dns)
import { existsSync, statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { ConfigError, exitOnConfigError, readEndpoint, readInteger, readString } from '../lib/config.ts';
import { ClassError, loadClass } from '../lib/classroom.ts';
import { createLogger } from '../lib/log.ts';
import { startControl } from './control.ts';
import { DEFAULT_TCP_LIMITS, DnsServer } from './server.ts';
import { StudentZones } from './student-zones.ts';
import { EditError } from './zone-edit.ts';
import { ZoneSyntaxError } from './zone-file.ts';

const log = createLogger('dns');

function readConfig(env: NodeJS.ProcessEnv) {
  const clients = readInteger(env, 'DNS_TCP_CLIENTS', DEFAULT_TCP_LIMITS.clients, 1, 65_535);
  const config = {
    listen: readEndpoint(env, 'DNS_LISTEN', '0.0.0.0:53'),
    controlListen: readEndpoint(env, 'DNS_CONTROL_LISTEN', '127.0.0.1:8053'),
    zoneDir: readString(env, 'ZONE_DIR', 'dns-zone'),
    tcp: {
      clients,
      clientsPerAddress: readInteger(env, 'DNS_TCP_CLIENTS_PER_ADDRESS', Math.min(DEFAULT_TCP_LIMITS.clientsPerAddress, clients), 1, clients),
      idleMs: readInteger(env, 'DNS_TCP_IDLE_MS', DEFAULT_TCP_LIMITS.idleMs, 100, 600_000),
    },
    dataDir: readString(env, 'DNS_DATA_DIR', '.lab-data/dns'),
    classroom: readClass(env.LAB_CLASS_DIR),
  };
  if (!existsSync(config.zoneDir) || !statSync(config.zoneDir).isDirectory()) {
    throw new ConfigError(`ZONE_DIR: "${config.zoneDir}" is not a directory`);
  }
  return config;
}

function readClass(dir: string | undefined) {
  try {
    return loadClass(dir);
  } catch (error) {
    if (error instanceof ClassError) throw new ConfigError(`LAB_CLASS_DIR: ${error.message}`);
    throw error;
  }
}

let config: ReturnType<typeof readConfig>;
try {
  config = readConfig(process.env);
} catch (error) {
  exitOnConfigError(error);
}

const dns = new DnsServer({ listen: config.listen, zoneDir: config.zoneDir, tcp: config.tcp, logger: log });
try {
  await dns.start();
} catch (error) {
  // A broken zone file or a busy port: say which, and stop.
  const reason = error instanceof ZoneSyntaxError ? error.message : `${config.listen.host}:${config.listen.port}: ${(error as Error).message}`;
  process.stderr.write(`dns: cannot start: ${reason}\n`);
  process.exit(1);
}
let students: StudentZones | undefined;
if (config.classroom) {
  try {
    students = await StudentZones.open(config.classroom, config.dataDir, dns.zones, log);
  } catch (error) {
    // A student's domain that is a lab zone, a stored zone that does not read.
    if (!(error instanceof ClassError || error instanceof ZoneSyntaxError || error instanceof EditError)) throw error;
    process.stderr.write(`dns: cannot start: ${error.message}\n`);
    process.exit(1);
  }
}
const control = await startControl(dns, config.controlListen, log, students).catch((error: Error) => {
  process.stderr.write(`dns: control endpoint ${config.controlListen.host}:${config.controlListen.port}: ${error.message}\n`);
  process.exit(1);
});
const { address, port } = control.address() as AddressInfo;
log.info({ control: `${address}:${port}` }, 'control endpoint listening');

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, async () => {
    log.info({ signal }, 'stopping');
    control.close();
    await dns.close();
    log.flush();
    process.exit(0);
  });
}
