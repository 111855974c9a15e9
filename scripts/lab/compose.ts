// compose.yaml read for the embedded lab (DESIGN.md, "Two ways to run, one
// behaviour"): each service's command, environment, lab address and health
// endpoint, translated to its loopback twin. compose.yaml and the instance
// files it names are the only description of the lab; nothing is repeated here.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { embeddedPort, loopbackTwin } from '../../services/lib/addressing.ts';
import type { Endpoint } from '../../services/lib/config.ts';
import { loadInstance, type Instance } from '../../services/mta/instance.ts';
import { LabError } from './errors.ts';

export const root = new URL('../../', import.meta.url).pathname;
export const composeFile = join(root, 'compose.yaml');
export const defaultDataDir = join(root, '.lab-data');

export interface Port {
  name: string; // mx, submission, api, dns, control
  port: number; // where it is reached: in the embedded lab, or as compose publishes it
  container: number; // the port in the container
  udp: boolean; // also UDP (DNS)
}

export interface LabService {
  name: string;
  labAddress: string; // 192.0.2.X
  address: string; // where it is reached: its loopback twin 127.0.2.X, or 127.0.0.1 through compose's published ports
  command: string[];
  env: Record<string, string>; // compose's environment, translated
  dependsOn: string[];
  ports: Port[];
  health: string; // the URL its compose healthcheck fetches, where it is reached
  healthCheck: { port: number; path: string }; // that URL's port and path in the container
  console?: string; // an MTA's web console and API
  instance?: Instance; // an MTA's instance file
}

export interface Lab {
  mode: 'embedded' | 'compose';
  services: LabService[];
  dns: Endpoint; // the lab DNS, as the containers' `dns:` option names it
}

type Doc = Record<string, any>;

// dataDir: where services keep what compose keeps in volumes.
export function readLab(dataDir = defaultDataDir, file = composeFile): Lab {
  let doc: Doc;
  try {
    doc = readComposeFile(file);
  } catch (error) {
    throw new LabError(`${file}: ${(error as Error).message}`);
  }
  const services = Object.entries<Doc>(doc?.services ?? {}).map(([name, spec]) => readService(name, spec, dataDir, file));
  if (services.length === 0) throw new LabError(`${file}: no services`);
  const dnsAddress = Object.values<Doc>(doc.services).find((s) => s.dns)?.dns;
  if (!dnsAddress) throw new LabError(`${file}: no service names the lab DNS (dns: [192.0.2.53])`);
  return { mode: 'embedded', services, dns: { host: loopbackTwin([dnsAddress].flat()[0]), port: embeddedPort(53) } };
}

// compose.yaml as Compose reads it: ${NAME} and ${NAME:-default} replaced
// from the environment (LAB_PUBLISH, LAB_CLASS), then parsed.
export function readComposeFile(file: string): Doc {
  const text = readFileSync(file, 'utf8').replace(/\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}/g, (_, name: string, fallback = '') => process.env[name] || fallback);
  return parse(text, { merge: true });
}

function readService(name: string, spec: Doc, dataDir: string, file: string): LabService {
  const fail = (message: string): never => {
    throw new LabError(`${file}: services.${name}: ${message}`);
  };
  const labAddress = Object.values<Doc>(spec.networks ?? {}).find((n) => n?.ipv4_address)?.ipv4_address;
  if (typeof labAddress !== 'string') fail('no networks.<network>.ipv4_address');
  const address = loopbackTwin(labAddress);
  if (!Array.isArray(spec.command) || spec.command.length === 0) fail('command must be a list, e.g. ["node", "services/mta/main.ts"]');
  // Node runs the service here as it does in the container, but this Node.
  const command = (spec.command as string[]).map((word, i) => (i === 0 && word === 'node' ? process.execPath : word));

  // What lives in a volume in the container lives under the data directory
  // here; a directory of the project mounted into it (./classroom) is that directory.
  const mounts = ((spec.volumes ?? []) as string[]).map((v) => {
    const [source, target] = v.split(':');
    return { target, host: /^\.{0,2}\//.test(source) ? resolve(root, source) : undefined };
  });
  const ports: Port[] = [];
  const udp = new Set(((spec.ports ?? []) as string[]).filter((p) => p.endsWith('/udp')).map((p) => Number(p.split(':').at(-1)!.split('/')[0])));
  const env: Record<string, string> = {};
  for (const [key, raw] of Object.entries(spec.environment ?? {})) {
    const value = String(raw);
    const listen = /^0\.0\.0\.0:(\d+)$/.exec(value);
    const mount = mounts.find((m) => value === m.target || value.startsWith(`${m.target}/`));
    if (listen) {
      // "listen on every address" in a container is "listen on the twin" here.
      const port = embeddedPort(Number(listen[1]));
      env[key] = `${address}:${port}`;
      ports.push({ name: key.replace(/_LISTEN$/, '').split('_').at(-1)!.toLowerCase(), port, container: Number(listen[1]), udp: udp.has(Number(listen[1])) });
    } else if (mount) {
      env[key] = join(mount.host ?? join(dataDir, name), value.slice(mount.target.length));
    } else {
      env[key] = value;
    }
  }

  let instance: Instance | undefined;
  if (env.MTA_CONFIG) {
    instance = loadInstance(join(root, env.MTA_CONFIG));
    for (const [portName, port] of Object.entries(instance.ports)) ports.push({ name: portName, port: embeddedPort(port), container: port, udp: false });
  }

  const check = JSON.stringify(spec.healthcheck?.test ?? '');
  const health = /http:\/\/127\.0\.0\.1:(\d+)(\/[^'"\s]*)/.exec(check);
  if (!health) fail('healthcheck.test must fetch http://127.0.0.1:PORT/PATH (the lab waits for it)');
  const healthCheck = { port: Number(health![1]), path: health![2] };
  return {
    name,
    labAddress,
    address,
    command,
    env,
    dependsOn: Array.isArray(spec.depends_on) ? spec.depends_on : Object.keys(spec.depends_on ?? {}),
    ports,
    health: `http://${address}:${embeddedPort(healthCheck.port)}${healthCheck.path}`,
    healthCheck,
    console: instance && `http://${address}:${embeddedPort(instance.ports.api)}/`,
    instance,
  };
}

// The MTA that holds a domain's mailboxes, and so receives its mail and
// submits mail in its name.
export function owner(lab: Lab, domain: string): LabService | undefined {
  return lab.services.find((s) => s.instance?.domains.has(domain.toLowerCase()));
}

export function service(lab: Lab, name: string): LabService {
  const found = lab.services.find((s) => s.name === name);
  if (!found) throw new LabError(`no service "${name}" in compose.yaml (there are: ${lab.services.map((s) => s.name).join(', ')})`, 2);
  return found;
}
