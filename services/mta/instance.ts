// An MTA instance file (instances/*.yaml): which host this is, which domains
// and mailboxes it holds, its limits and its local policy. Checked whole at
// start; a mistake names the file and the key.
import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { parse } from 'yaml';
import { ConfigError } from '../lib/config.ts';

export type SpfFailAction = 'inbox' | 'junk' | 'reject';
export type AmbiguousFromAction = 'reject' | 'junk';

export interface DkimSelector {
  domain: string; // the signing domain (d=); its key is <keyDir>/<domain>/<selector>.pem
  selector: string;
  canonicalization: string; // header/body: relaxed/relaxed, simple/simple, ...
  headers?: string[]; // header fields to sign; mailauth's default list when absent
}

export interface Instance {
  file: string;
  name: string;
  hostname: string;
  address: string; // lab address
  dns: string; // lab address of the DNS server
  domains: Map<string, Set<string>>; // domain -> mailbox local parts
  ports: { mx: number; submission: number; api: number };
  limits: { messageSize: number; recipients: number; clients: number; clientsPerAddress: number; idleSeconds: number };
  policy: { spfFailWithoutDmarc: SpfFailAction; trustedArcSealers: string[]; ambiguousFrom: AmbiguousFromAction };
  submission: {
    plaintextAuth: boolean; // AUTH without STARTTLS: a lab convenience, off in real life
    senders: 'own' | 'any'; // own: a user sends as its login or its aliases only; any: as anyone
    passwords: Map<string, string>; // local part -> password; login is local@any-of-our-domains
    aliases: Map<string, string[]>; // login address -> the other addresses it may send as (senders: own)
  };
  dkim: Map<string, DkimSelector[]>; // From domain -> its signatures, in order
  delivery: { retryInitialSeconds: number; retryMaxSeconds: number; giveUpAfterSeconds: number };
  forwarding: Forwarding;
  reports?: Reports; // DMARC aggregate reports, when it sends them
  sessionsKept: number;
}

// DMARC aggregate reports (RFC 9990), sent each period by the instance that
// makes the decisions (services/mta/reports/).
export interface Reports {
  periodSeconds: number;
  from: string; // an address of ours: From: and MAIL FROM of the reports
  orgName: string; // the reporter, as the report names it
  failure: boolean; // DMARC failure reports (RFC 9991) to ruf= too: off unless the file says true
}

export interface MailingList {
  members: string[];
  subjectTag?: string; // "[class]" before the Subject, as lists do (breaks DKIM)
  footer?: string; // text appended to the body (breaks DKIM)
}

export interface Forwarding {
  aliases: Map<string, string[]>; // address -> where its mail goes, unchanged
  lists: Map<string, MailingList>;
  srs: boolean; // rewrite the envelope sender of forwarded mail (SRS0)
  srsSecret: string;
  arcSeal: boolean; // ARC-seal forwarded mail with the instance's DKIM key
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

  const top = object(doc, '', ['name', 'hostname', 'address', 'dns', 'domains', 'ports', 'limits', 'policy', 'submission', 'dkim', 'delivery', 'forwarding', 'reports', 'sessionsKept']);
  const required = ['name', 'hostname', 'address', 'dns', 'domains', 'ports', 'limits', 'policy', 'submission', 'delivery'];
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

  const ports = object(top.ports, 'ports', ['mx', 'submission', 'api']);
  const limits = object(top.limits, 'limits', ['messageSize', 'recipients', 'clients', 'clientsPerAddress', 'idleSeconds']);
  const policy = object(top.policy, 'policy', ['spfFailWithoutDmarc', 'trustedArcSealers', 'ambiguousFrom']);
  const actions: SpfFailAction[] = ['inbox', 'junk', 'reject'];
  if (!actions.includes(policy.spfFailWithoutDmarc as SpfFailAction)) {
    fail('policy.spfFailWithoutDmarc', `must be one of ${actions.join(', ')}`);
  }
  // A message whose From: is not one field with one mailbox: refused unless the file says junk.
  const ambiguousFrom = policy.ambiguousFrom ?? 'reject';
  if (ambiguousFrom !== 'reject' && ambiguousFrom !== 'junk') fail('policy.ambiguousFrom', 'must be reject or junk');
  const sealers = policy.trustedArcSealers ?? [];
  if (!Array.isArray(sealers)) fail('policy.trustedArcSealers', 'must be a list of domains');

  const submission = object(top.submission, 'submission', ['plaintextAuth', 'senders', 'passwords', 'aliases']);
  if (typeof submission.plaintextAuth !== 'boolean') fail('submission.plaintextAuth', 'must be true or false');
  if (submission.senders !== 'own' && submission.senders !== 'any') fail('submission.senders', 'must be own or any');
  const passwords = new Map<string, string>();
  for (const [user, password] of Object.entries(object(submission.passwords, 'submission.passwords', Object.keys(submission.passwords ?? {})))) {
    if (typeof password !== 'string' || password === '') fail(`submission.passwords.${user}`, 'must be a non-empty string');
    passwords.set(user.toLowerCase(), password as string);
  }

  const dkim = new Map<string, DkimSelector[]>();
  for (const [domain, list] of Object.entries(object(top.dkim ?? {}, 'dkim', Object.keys(top.dkim ?? {})))) {
    const key = `dkim.${domain}`;
    hostname(domain, key);
    if (!Array.isArray(list) || list.length === 0) fail(key, 'must be a list of selectors');
    dkim.set(
      domain.toLowerCase(),
      (list as unknown[]).map((item, i) => {
        const entry = object(item, `${key}[${i}]`, ['selector', 'domain', 'canonicalization', 'headers']);
        const signingDomain = entry.domain === undefined ? domain.toLowerCase() : hostname(entry.domain, `${key}[${i}].domain`);
        if (typeof entry.selector !== 'string' || !/^[a-z0-9_.-]+$/i.test(entry.selector)) fail(`${key}[${i}].selector`, 'must be a selector name');
        const canonicalization = entry.canonicalization ?? 'relaxed/relaxed';
        if (!/^(relaxed|simple)\/(relaxed|simple)$/.test(String(canonicalization))) fail(`${key}[${i}].canonicalization`, 'must be relaxed/relaxed, relaxed/simple, simple/relaxed or simple/simple');
        const headers = entry.headers;
        if (headers !== undefined && (!Array.isArray(headers) || !headers.every((h) => typeof h === 'string' && /^[\x21-\x39\x3b-\x7e]+$/.test(h)) || !headers.some((h) => String(h).toLowerCase() === 'from'))) {
          fail(`${key}[${i}].headers`, 'must be a list of header field names that includes From');
        }
        return { domain: signingDomain, selector: entry.selector as string, canonicalization: String(canonicalization), headers: headers as string[] | undefined };
      }),
    );
  }

  const delivery = object(top.delivery, 'delivery', ['retryInitialSeconds', 'retryMaxSeconds', 'giveUpAfterSeconds']);

  const forwardingDoc = object(top.forwarding ?? {}, 'forwarding', ['aliases', 'lists', 'srs', 'srsSecret', 'arcSeal']);
  const mailAddress = (value: unknown, key: string): string => {
    if (typeof value !== 'string' || !/^[^@\s]+@[^@\s]+$/.test(value)) return fail(key, `must be an e-mail address, found ${JSON.stringify(value)}`);
    return value.toLowerCase();
  };
  const localAddress = (value: string, key: string): string => {
    const result = mailAddress(value, key);
    if (!domains.has(result.slice(result.lastIndexOf('@') + 1))) fail(key, `${result} is not in one of this instance's domains`);
    return result;
  };
  const addresses = (value: unknown, key: string): string[] => {
    if (!Array.isArray(value) || value.length === 0) return fail(key, 'must be a list of e-mail addresses');
    return value.map((v, i) => mailAddress(v, `${key}[${i}]`));
  };
  const aliases = new Map<string, string[]>();
  for (const [from, to] of Object.entries(object(forwardingDoc.aliases ?? {}, 'forwarding.aliases', Object.keys(forwardingDoc.aliases ?? {})))) {
    aliases.set(localAddress(from, `forwarding.aliases.${from}`), addresses(to, `forwarding.aliases.${from}`));
  }
  // A login's other sending addresses: in this instance's domains, since it signs for them.
  const senderAliases = new Map<string, string[]>();
  for (const [login, list] of Object.entries(object(submission.aliases ?? {}, 'submission.aliases', Object.keys(submission.aliases ?? {})))) {
    const key = `submission.aliases.${login}`;
    const address = localAddress(login, key);
    if (!passwords.has(address.slice(0, address.lastIndexOf('@')))) fail(key, `${address} is not a login: submission.passwords has no ${address.slice(0, address.lastIndexOf('@'))}`);
    if (!Array.isArray(list) || list.length === 0) fail(key, 'must be a list of e-mail addresses');
    senderAliases.set(address, (list as unknown[]).map((a, i) => localAddress(a as string, `${key}[${i}]`)));
  }
  const lists = new Map<string, MailingList>();
  for (const [name, value] of Object.entries(object(forwardingDoc.lists ?? {}, 'forwarding.lists', Object.keys(forwardingDoc.lists ?? {})))) {
    const key = `forwarding.lists.${name}`;
    const list = object(value, key, ['members', 'subjectTag', 'footer']);
    for (const text of ['subjectTag', 'footer'] as const) {
      if (list[text] !== undefined && typeof list[text] !== 'string') fail(`${key}.${text}`, 'must be text');
    }
    lists.set(localAddress(name, key), { members: addresses(list.members, `${key}.members`), subjectTag: list.subjectTag as string | undefined, footer: list.footer as string | undefined });
  }
  for (const flag of ['srs', 'arcSeal'] as const) {
    if (forwardingDoc[flag] !== undefined && typeof forwardingDoc[flag] !== 'boolean') fail(`forwarding.${flag}`, 'must be true or false');
  }
  if (forwardingDoc.srs && (typeof forwardingDoc.srsSecret !== 'string' || forwardingDoc.srsSecret.length < 8)) {
    fail('forwarding.srsSecret', 'must be a secret of at least 8 characters when srs is on');
  }
  if (forwardingDoc.arcSeal && !dkim.has([...domains.keys()][0])) {
    fail('forwarding.arcSeal', `needs a dkim entry for ${[...domains.keys()][0]}: its first selector's key seals`);
  }

  return {
    file,
    name: top.name as string,
    hostname: hostname(top.hostname, 'hostname'),
    address: address(top.address, 'address'),
    dns: address(top.dns, 'dns'),
    domains,
    ports: {
      mx: integer(ports.mx, 'ports.mx', 1, 65535),
      submission: integer(ports.submission, 'ports.submission', 1, 65535),
      api: integer(ports.api, 'ports.api', 1, 65535),
    },
    limits: {
      messageSize: integer(limits.messageSize, 'limits.messageSize', 1024, 1 << 30),
      recipients: integer(limits.recipients, 'limits.recipients', 1, 10000),
      clients: integer(limits.clients, 'limits.clients', 1, 10000),
      // MX sessions at once from one client address (per MX process), so that
      // one client cannot hold every slot. 30 by default: bench:mx opens 20 from
      // one address, and from a lab MTA's address come up to 16 scenario-runner
      // sessions besides the 10 of that MTA's delivery pool.
      clientsPerAddress: integer(limits.clientsPerAddress ?? Math.min(30, limits.clients as number), 'limits.clientsPerAddress', 1, limits.clients as number),
      idleSeconds: integer(limits.idleSeconds, 'limits.idleSeconds', 1, 3600),
    },
    policy: {
      spfFailWithoutDmarc: policy.spfFailWithoutDmarc as SpfFailAction,
      trustedArcSealers: (sealers as unknown[]).map((s, i) => hostname(s, `policy.trustedArcSealers[${i}]`)),
      ambiguousFrom: ambiguousFrom as AmbiguousFromAction,
    },
    submission: { plaintextAuth: submission.plaintextAuth as boolean, senders: submission.senders as 'own' | 'any', passwords, aliases: senderAliases },
    dkim,
    delivery: {
      retryInitialSeconds: integer(delivery.retryInitialSeconds, 'delivery.retryInitialSeconds', 1, 3600),
      retryMaxSeconds: integer(delivery.retryMaxSeconds, 'delivery.retryMaxSeconds', 1, 86400),
      giveUpAfterSeconds: integer(delivery.giveUpAfterSeconds, 'delivery.giveUpAfterSeconds', 1, 30 * 86400),
    },
    forwarding: {
      aliases,
      lists,
      srs: forwardingDoc.srs === true,
      srsSecret: String(forwardingDoc.srsSecret ?? ''),
      arcSeal: forwardingDoc.arcSeal === true,
    },
    ...(top.reports !== undefined && { reports: reports(object(top.reports, 'reports', ['periodSeconds', 'from', 'orgName', 'failure'])) }),
    sessionsKept: top.sessionsKept === undefined ? 10000 : integer(top.sessionsKept, 'sessionsKept', 1, 1_000_000),
  };

  function reports(doc: Record<string, unknown>): Reports {
    const from = String(doc.from ?? '');
    if (!/^[^@\s]+@[^@\s]+$/.test(from) || !domains.has(from.slice(from.indexOf('@') + 1).toLowerCase())) fail('reports.from', `must be an address at one of this instance's domains (${[...domains.keys()].join(', ')})`);
    if (typeof doc.orgName !== 'string' || doc.orgName.trim() === '') fail('reports.orgName', "must be the reporter's name, as text");
    if (doc.failure !== undefined && typeof doc.failure !== 'boolean') fail('reports.failure', 'must be true or false');
    return { periodSeconds: integer(doc.periodSeconds, 'reports.periodSeconds', 10, 86400), from: from.toLowerCase(), orgName: (doc.orgName as string).trim(), failure: doc.failure === true };
  }
}
