// npm run lab -- zone ...: a student's zone in the lab DNS (classroom mode),
// through the DNS's control endpoint (README, "Students' zones").
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Lab } from './compose.ts';
import { LabError, LabNotAnswering } from './errors.ts';
import { COMPOSE_USAGE } from './published.ts';

export const usage = `npm run lab -- zone show|add|delete|set|history [--domain D] [--token T] [--compose]

Reads and changes a student's zone in the lab DNS, when the lab serves a class.
The credential is --token, or LAB_TOKEN in the environment; the zone is that
credential's student's, or --domain D (the teacher's credential names one).

  zone show               the zone's records, as zone-file text (the SOA and the
                          NS are the lab's and not shown)
  zone add LINE...        adds records, one zone-file line each
  zone delete LINE...     deletes records: "NAME TYPE DATA", or "NAME TYPE" for
                          every record of that type at NAME
  zone set FILE           replaces the zone's records with those of FILE (- reads
                          standard input)
  zone history            the changes, newest first, each with its diff

Names are relative to the domain (@ is the domain itself: @, mail, _dmarc,
s1._domainkey) or absolute inside it; a record without a TTL gets 5 s. Every
change is checked before it is served, and a refusal names the line.

${COMPOSE_USAGE}

Examples:
  export LAB_TOKEN=ana-...   (the credential the teacher gave you)
  npm run lab -- zone add '@ MX 10 mx.receiver.test.' '@ TXT "v=spf1 ip4:192.0.2.10 -all"'
  npm run lab -- zone delete '_dmarc TXT'
  npm run lab -- zone show > my.zone; (edit my.zone); npm run lab -- zone set my.zone`;

const ACTIONS = ['show', 'add', 'delete', 'set', 'history'];

export async function run(argv: string[], lab: Lab): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    options: { domain: { type: 'string' }, token: { type: 'string' } },
    allowPositionals: true,
  });
  const [action, ...rest] = positionals;
  if (!ACTIONS.includes(action)) throw new LabError(`zone: say what to do: ${ACTIONS.join(', ')} (npm run lab -- zone --help)`, 2);
  if ((action === 'add' || action === 'delete') && rest.length === 0) throw new LabError(`zone ${action}: give one or more record lines (npm run lab -- zone --help)`, 2);
  if (action === 'set' && rest.length !== 1) throw new LabError('zone set: give one FILE (- for standard input)', 2);
  if ((action === 'show' || action === 'history') && rest.length > 0) throw new LabError(`zone ${action} takes no arguments`, 2);
  const token = values.token ?? process.env.LAB_TOKEN;
  if (!token) throw new LabError('zone: give your credential with --token or in LAB_TOKEN (the teacher hands them out)', 2);

  const control = controlEndpoint(lab);
  const call = (method: string, path: string, body?: unknown) => request(control, token, method, path, body);
  const domain = values.domain?.toLowerCase().replace(/\.$/, '') ?? (await ownDomain(call));
  const zone = `/zones/${encodeURIComponent(domain)}`;

  switch (action) {
    case 'show': {
      const view = await call('GET', zone);
      process.stdout.write(`; ${view.domain}, ${view.student}'s zone, serial ${view.serial} (the SOA and NS are the lab's)\n${view.records}`);
      return 0;
    }
    case 'history': {
      const view = await call('GET', zone);
      if (view.history.length === 0) process.stdout.write(`${domain}: no changes yet (serial ${view.serial})\n`);
      for (const change of view.history) process.stdout.write(`serial ${change.serial}, ${change.at}, by ${change.by}\n${change.diff}\n`);
      return 0;
    }
    case 'set': {
      const text = readFileSync(rest[0] === '-' ? 0 : rest[0], 'utf8');
      return changed(domain, await call('PUT', zone, { records: text }));
    }
    default:
      return changed(domain, await call('POST', `${zone}/records`, { [action]: rest }));
  }
}

function changed(domain: string, result: { serial: number; diff: string }): number {
  process.stdout.write(result.diff ? `${domain}: serial ${result.serial}\n${result.diff}` : `${domain}: no change (serial ${result.serial})\n`);
  return 0;
}

// The DNS's control endpoint, where the lab serves it (embedded or published by compose).
function controlEndpoint(lab: Lab): string {
  const dns = lab.services.find((s) => s.ports.some((p) => p.name === 'dns'));
  const control = dns?.ports.find((p) => p.name === 'control');
  if (!dns || !control) throw new LabError("the lab's DNS control endpoint is not in compose.yaml (DNS_CONTROL_LISTEN)");
  return `http://${dns.address}:${control.port}`;
}

type Call = (method: string, path: string, body?: unknown) => Promise<any>;

// A student's credential names their zone; the teacher's names none.
async function ownDomain(call: Call): Promise<string> {
  const { students } = await call('GET', '/classroom');
  if (students.length !== 1) throw new LabError("zone: the teacher's credential is for every zone: name one with --domain D", 2);
  return students[0].domain;
}

async function request(control: string, token: string, method: string, path: string, body?: unknown): Promise<any> {
  let response: Response;
  try {
    response = await fetch(`${control}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (error) {
    const code = (error as { cause?: { code?: string } }).cause?.code;
    if (code === 'ECONNREFUSED') throw new LabNotAnswering(`nothing answers at ${new URL(control).host}: is the lab running?`);
    throw new LabError(`${control}${path}: ${code ?? (error as Error).message}`);
  }
  const answer = await response.json().catch(() => undefined);
  if (!response.ok) throw new LabError(`zone: ${answer?.error ?? `${response.status} ${response.statusText}`}`);
  return answer;
}
