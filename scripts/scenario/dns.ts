// The lab DNS as the runner uses it: MX lookups for direct: steps, and the
// changes a scenario makes through the control endpoint.
//
// A change reaches an MTA only once its resolver has let go of what it was
// told before: each answer is kept for its TTL (5 s in the lab's zones).
// So after each change the runner looks in the DNS's query log for the last
// time the name was asked before it, and waits until that answer has
// expired. Low TTLs on a scenario's overrides (ttl: 1) keep these waits short.
import { Resolver } from 'node:dns/promises';
import type { Endpoint } from '../../services/lib/config.ts';
import { credentialHeader, getJson } from '../lab/api.ts';
import { LabError } from '../lab/errors.ts';
import type { Mx, Target } from './lab.ts';
import type { DnsChange } from './schema.ts';

interface LoggedQuery {
  time: string;
  name: string;
  type: string;
  rcode: string;
  fault?: string;
}

const MARGIN_MS = 50; // the resolver's clock starts a moment after the DNS answered
// How long the lab's zones let an answer be kept: $TTL and SOA minimum are 5 s
// in every zone (dns-zone/README.md). An override's TTL is known when we set it.
const ZONE_TTL_S = 5;

export async function findMx(dns: Endpoint, domain: string): Promise<Mx> {
  const resolver = new Resolver({ timeout: 2000, tries: 1 });
  resolver.setServers([`${dns.host}:${dns.port}`]);
  try {
    const [best] = (await resolver.resolveMx(domain)).sort((a, b) => a.priority - b.priority);
    const [address] = await resolver.resolve4(best.exchange);
    return { hostname: best.exchange, address };
  } catch (error) {
    throw new LabError(`no MX for ${domain} in the lab DNS (${(error as { code?: string }).code ?? (error as Error).message})`);
  }
}

// The changes one scenario makes, and their undoing at its end.
export class ScenarioDns {
  private target: Target;
  private served = new Map<string, number>(); // "name TYPE" -> the TTL our override serves
  private set = new Map<string, { name: string; type: string }>(); // overrides to clear at the end

  constructor(target: Target) {
    this.target = target;
  }

  async apply(changes: DnsChange[]): Promise<void> {
    for (const change of changes) {
      let until: number;
      if ('clear' in change) {
        const query = new URLSearchParams({ name: change.name, ...(change.type && { type: change.type }) });
        until = await this.change(change.name, change.type ? [change.type] : undefined, () => this.call('DELETE', `overrides?${query}`));
        for (const [key, o] of this.set) if (o.name === change.name && (!change.type || o.type === change.type)) this.set.delete(key);
        for (const key of this.served.keys()) if (key.startsWith(`${change.name} `) && (!change.type || key.endsWith(` ${change.type}`))) this.served.delete(key);
      } else {
        const type = 'fault' in change ? 'fault' : change.type;
        until = await this.change(change.name, 'fault' in change ? change.types : [change.type], () => this.call('POST', 'overrides', change));
        this.set.set(`${change.name} ${type}`, { name: change.name, type });
        if ('values' in change) this.served.set(`${change.name} ${change.type}`, change.ttl ?? 5); // 5: the control endpoint's default
      }
      if (until > Date.now()) await new Promise((r) => setTimeout(r, until - Date.now()));
    }
  }

  // Clears what this scenario set. Returns when resolvers will have let go
  // of it: until then, a scenario that uses these names must not start.
  async undo(): Promise<number> {
    let quiet = 0;
    for (const { name, type } of this.set.values()) {
      const until = await this.change(name, type === 'fault' ? undefined : [type], () => this.call('DELETE', `overrides?${new URLSearchParams({ name, type })}`));
      quiet = Math.max(quiet, until);
    }
    this.set.clear();
    return quiet;
  }

  // Makes a change to the name; returns when every answer given for it (of
  // these types) before the change will have expired.
  private async change(name: string, types: string[] | undefined, make: () => Promise<void>): Promise<number> {
    // The TTL of what was served before the change, by type.
    const ttl = (type: string) => this.served.get(`${name} ${type}`) ?? ZONE_TTL_S;
    await make();
    let until = 0;
    for (const q of await this.asked(name, Date.now())) {
      if (types && !types.includes(q.type)) continue;
      // Failures are not cached: nothing to wait for.
      if (q.rcode === 'SERVFAIL' || (q.fault && !q.fault.startsWith('delay'))) continue;
      until = Math.max(until, Date.parse(q.time) + ttl(q.type) * 1000 + MARGIN_MS);
    }
    return until;
  }

  // The newest question of each type asked about the name (before a time).
  private async asked(name: string, before = Infinity): Promise<LoggedQuery[]> {
    const log = await getJson<LoggedQuery[]>(`${this.target.control}queries?${new URLSearchParams({ name, limit: '100' })}`);
    const earlier = log.filter((q) => Date.parse(q.time) <= before).reverse(); // oldest first: the newest of a type wins
    return [...new Map(earlier.map((q) => [q.type, q])).values()];
  }

  private async call(method: string, path: string, body?: unknown): Promise<void> {
    const response = await fetch(`${this.target.control}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...credentialHeader() },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(3000),
    });
    if (!response.ok) {
      const { error } = (await response.json().catch(() => ({}))) as { error?: string };
      throw new LabError(`the DNS control endpoint refused ${method} /${path}: ${error ?? response.status}`);
    }
  }
}
