// node services/mta/main.ts: one MTA instance.
//   MTA_CONFIG    the instance file (instances/receiver.yaml, ...)        required
//   MTA_DATA_DIR  where Maildirs and session records go      default .lab-data/<name>
//   MTA_CERT_DIR  lab TLS certificates (<hostname>.pem/.key) default instances/certs
//   DKIM_KEY_DIR  DKIM private keys (<domain>/<selector>.pem)  default dns-zone/dkim
//   LAB_EMBEDDED  1: the embedded lab, on the loopback twin of the lab address,
//                 privileged ports + 10000 (DESIGN.md); otherwise all addresses
//   LAB_DNS       host:port of the lab DNS, instead of the instance file's
//   LAB_DNS_CONTROL  host:port of the lab DNS's control endpoint (the console's
//                 DNS view)                          default: the DNS host, port 8053
//   MTA_MX_WORKERS  processes for the MX (1 to 16); more than 1 uses that many
//                 cores for verifying (mx-workers.ts)                default 1
//   LAB_CLASS_DIR the class directory (class.yaml, credentials.json): with a
//                 class file, classroom mode (services/lib/classroom.ts)  default: none
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { embeddedPort, loopbackTwin } from '../lib/addressing.ts';
import { ClassError, loadClass } from '../lib/classroom.ts';
import { ConfigError, exitOnConfigError, readChoice, readEndpoint, readInteger, readString } from '../lib/config.ts';
import { createLogger } from '../lib/log.ts';
import { loadInstance } from './instance.ts';
import { startMta } from './mta.ts';
import { runMxWorker } from './inbound/mx-workers.ts';

function readConfig(env: NodeJS.ProcessEnv) {
  const file = env.MTA_CONFIG;
  if (!file) throw new ConfigError('MTA_CONFIG: not set (the instance file, e.g. instances/receiver.yaml)');
  const instance = loadInstance(file);
  const embedded = readChoice(env, 'LAB_EMBEDDED', '0', ['0', '1']) === '1';
  const host = embedded ? loopbackTwin(instance.address) : '0.0.0.0';
  const port = (p: number) => (embedded ? embeddedPort(p) : p);
  const dnsDefault = embedded ? `${loopbackTwin(instance.dns)}:${embeddedPort(53)}` : `${instance.dns}:53`;
  const dns = readEndpoint(env, 'LAB_DNS', dnsDefault);
  const certDir = readString(env, 'MTA_CERT_DIR', 'instances/certs');
  const certificate = (file: string) => {
    const path = join(certDir, file);
    try {
      return readFileSync(path);
    } catch {
      throw new ConfigError(`MTA_CERT_DIR: ${path} is missing (make the lab certificates: node scripts/make-certs.ts)`);
    }
  };
  return {
    instance,
    dataDir: readString(env, 'MTA_DATA_DIR', join('.lab-data', instance.name)),
    keyDir: readString(env, 'DKIM_KEY_DIR', 'dns-zone/dkim'),
    mx: { host, port: port(instance.ports.mx) },
    mxWorkers: readInteger(env, 'MTA_MX_WORKERS', 1, 1, 16),
    submission: { host, port: port(instance.ports.submission) },
    api: { host, port: port(instance.ports.api) },
    // Lab addresses are reached as themselves, or embedded as their loopback twins.
    outbound: {
      connect: (address: string, labPort = 25) => ({ host: embedded ? loopbackTwin(address) : address, port: port(labPort) }),
      localAddress: embedded ? host : undefined,
    },
    dns,
    dnsControl: env.LAB_DNS_CONTROL ? readEndpoint(env, 'LAB_DNS_CONTROL', '') : undefined, // else the DNS host, port 8053
    tls: { key: certificate(`${instance.hostname}.key`), cert: certificate(`${instance.hostname}.pem`), ca: certificate('ca.pem') },
    classroom: readClass(env.LAB_CLASS_DIR),
  };
}

// A wrong class file stops the MTA with its file:line message.
function readClass(dir: string | undefined) {
  try {
    return loadClass(dir);
  } catch (error) {
    if (error instanceof ClassError) throw new ConfigError(error.message);
    throw error;
  }
}

let config: ReturnType<typeof readConfig>;
try {
  config = readConfig(process.env);
} catch (error) {
  exitOnConfigError(error);
}

const log = createLogger(config.instance.name);
if (cluster.isWorker) {
  // A worker the first process started: the MX alone (mx-workers.ts).
  await runMxWorker({ ...config, log: log.child({ mxWorker: cluster.worker!.id }) }).catch((error: Error) => {
    process.stderr.write(`${config.instance.name}: MX worker cannot start: ${error.message}\n`);
    process.exit(1);
  });
} else {
  const mta = await startMta({ ...config, log }).catch((error: Error) => {
    if (error instanceof ConfigError) exitOnConfigError(error);
    process.stderr.write(`${config.instance.name}: cannot start: ${error.message}\n`);
    process.exit(1);
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, async () => {
      log.info({ signal }, 'stopping');
      await mta.close();
      log.flush();
      process.exit(0);
    });
  }
}
