// An MTA instance file (instances/*.yaml): which host this is, which domains
// and mailboxes it holds, its limits and its local policy. Checked whole at
// start; a mistake names the file and the key.
import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { parse } from 'yaml';
import { ConfigError } from '../lib/config.ts';

export type SpfFailAction = 'inbox' | 'junk' | 'reject';

export interface Instance {
  file: string;
  name: string;
  hostname: string;
  address: string; // lab address
  dns: string; // lab address of the DNS server
  domains: Map<string, Set<string>>; // domain -> mailbox local parts
  ports: { mx: number; api: number };
  limits: { messageSize: number; recipients: number; clients: number; idleSeconds: number };
  policy: { spfFailWithoutDmarc: SpfFailAction; trustedArcSealers: string[] };
  sessionsKept: number;
}

const HOSTNAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$/i;

export function loadInstance(file: string): Instance {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`MTA_CONFIG: cannot read ${file}: ${(error as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (error) {
    throw new ConfigError(`${file}: not valid YAML: ${(error as Error).message}`);
  }
  return checkInstance(doc, file);
}

export function checkInstance(doc: unknown, file: string): Instance {
  const fail = (key: string, message: string): never => {
    throw new ConfigError(`${file}: ${key}: ${message}`);
  };
  const object = (value: unknown, key: string, keys: string[]): Record<string, unknown> => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail(key || '(top)', 'must be a mapping');
    for (const k of Object.keys(value)) {
      if (!keys.includes(k)) fail(key ? `${key}.${k}` : k, `unknown setting (expected one of ${keys.join(', ')})`);
    }
    return value as Record<string, unknown>;
  };
  const hostname = (value: unknown, key: string): string => {
    if (typeof value !== 'string' || !HOSTNAME.test(value)) return fail(key, `must be a host name, found ${JSON.stringify(value)}`);
    return value.toLowerCase();
  };
  const address = (value: unknown, key: string): string => {
    if (typeof value !== 'string' || !isIPv4(value)) return fail(key, `must be an IPv4 address, found ${JSON.stringify(value)}`);
    return value;
  };
  const integer = (value: unknown, key: string, min: number, max: number): number => {
    if (!Number.isInteger(value) || (value as number) < min || (value as number) > max) {
      return fail(key, `must be a whole number from ${min} to ${max}, found ${JSON.stringify(value)}`);
    }
    return value as number;
  };

  const top = object(doc, '', ['name', 'hostname', 'address', 'dns', 'domains', 'ports', 'limits', 'policy', 'sessionsKept']);
  const required = ['name', 'hostname', 'address', 'dns', 'domains', 'ports', 'limits', 'policy'];
  for (const key of required) if (top[key] === undefined) fail(key, 'missing');
  if (typeof top.name !== 'string' || !/^[a-z][a-z0-9-]*$/.test(top.name)) fail('name', 'must be a lower-case word (a-z, 0-9, -)');

  const domains = new Map<string, Set<string>>();
  for (const [domain, mailboxes] of Object.entries(object(top.domains, 'domains', Object.keys(top.domains ?? {})))) {
    const key = `domains.${domain}`;
    hostname(domain, key);
    if (!Array.isArray(mailboxes) || !mailboxes.every((m) => typeof m === 'string' && /^[a-z0-9._-]+$/i.test(m))) {
      fail(key, 'must be a list of mailbox names (the part before @)');
    }
    // postmaster@ exists for every domain (RFC 5321 section 4.5.1).
    domains.set(domain.toLowerCase(), new Set([...(mailboxes as string[]).map((m) => m.toLowerCase()), 'postmaster']));
  }
  if (domains.size === 0) fail('domains', 'at least one domain');

  const ports = object(top.ports, 'ports', ['mx', 'api']);
  const limits = object(top.limits, 'limits', ['messageSize', 'recipients', 'clients', 'idleSeconds']);
  const policy = object(top.policy, 'policy', ['spfFailWithoutDmarc', 'trustedArcSealers']);
  const actions: SpfFailAction[] = ['inbox', 'junk', 'reject'];
  if (!actions.includes(policy.spfFailWithoutDmarc as SpfFailAction)) {
    fail('policy.spfFailWithoutDmarc', `must be one of ${actions.join(', ')}`);
  }
  const sealers = policy.trustedArcSealers ?? [];
  if (!Array.isArray(sealers)) fail('policy.trustedArcSealers', 'must be a list of domains');

  return {
    file,
    name: top.name as string,
    hostname: hostname(top.hostname, 'hostname'),
    address: address(top.address, 'address'),
    dns: address(top.dns, 'dns'),
    domains,
    ports: { mx: integer(ports.mx, 'ports.mx', 1, 65535), api: integer(ports.api, 'ports.api', 1, 65535) },
    limits: {
      messageSize: integer(limits.messageSize, 'limits.messageSize', 1024, 1 << 30),
      recipients: integer(limits.recipients, 'limits.recipients', 1, 10000),
      clients: integer(limits.clients, 'limits.clients', 1, 10000),
      idleSeconds: integer(limits.idleSeconds, 'limits.idleSeconds', 1, 3600),
    },
    policy: {
      spfFailWithoutDmarc: policy.spfFailWithoutDmarc as SpfFailAction,
      trustedArcSealers: (sealers as unknown[]).map((s, i) => hostname(s, `policy.trustedArcSealers[${i}]`)),
    },
    sessionsKept: top.sessionsKept === undefined ? 10000 : integer(top.sessionsKept, 'sessionsKept', 1, 1_000_000),
  };
}
