// npm run lab -- lookup NAME TYPE: ask the lab DNS, as the lab's MTAs do.
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { health } from './api.ts';
import type { Lab } from './compose.ts';
import { LabError, LabNotAnswering } from './errors.ts';
import { COMPOSE_USAGE } from './published.ts';

export const usage = `npm run lab -- lookup NAME [TYPE] [--compose]

Asks the lab DNS and prints the answer, one record a line. TYPE is A (the
default), AAAA, MX, TXT, NS, SOA, CNAME or PTR; for PTR, NAME may be an
address.

${COMPOSE_USAGE}

Examples:
  npm run lab -- lookup sender.test MX
  npm run lab -- lookup _dmarc.sender.test TXT
  npm run lab -- lookup 192.0.2.20 PTR`;

const TYPES = ['A', 'AAAA', 'MX', 'TXT', 'NS', 'SOA', 'CNAME', 'PTR'];
const WHY: Record<string, string> = {
  ENOTFOUND: 'no such name (NXDOMAIN)',
  ESERVFAIL: 'the server failed (SERVFAIL)',
  EREFUSED: 'the server refused (REFUSED)',
};

export async function run(argv: string[], lab: Lab): Promise<number> {
  const { positionals } = parseArgs({ args: argv, options: {}, allowPositionals: true });
  const name = positionals[0];
  const type = (positionals[1] ?? 'A').toUpperCase();
  if (!name || positionals.length > 2) throw new LabError('lookup needs NAME and optionally TYPE (npm run lab -- lookup --help)', 2);
  if (!TYPES.includes(type)) throw new LabError(`lookup: TYPE must be one of ${TYPES.join(', ')}`, 2);

  const server = `${lab.dns.host}:${lab.dns.port}`;
  const resolver = new Resolver({ timeout: 3000, tries: 1 });
  resolver.setServers([server]);
  let answer: unknown;
  try {
    answer = type === 'PTR' && isIP(name) ? await resolver.reverse(name) : await resolver.resolve(name, type);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? '';
    if (code === 'ENODATA') {
      process.stdout.write(`${name} has no ${type} records\n`);
      return 1;
    }
    if (WHY[code]) throw new LabError(`${name} ${type}: ${WHY[code]}`);
    // No answer: either no lab, or a name with a timeout fault (timeout.test).
    const dns = lab.services.find((s) => s.ports.some((p) => p.name === 'dns'));
    if (dns && !(await health(dns.health)).up) throw new LabNotAnswering(`no lab is running: the lab DNS at ${server} does not answer`);
    throw new LabError(`${name} ${type}: no answer from ${server} (${code})`);
  }
  for (const record of [answer].flat()) process.stdout.write(`${name} ${type} ${show(record)}\n`);
  return 0;
}

function show(record: any): string {
  if (typeof record === 'string') return record;
  if (Array.isArray(record)) return JSON.stringify(record.join('')); // TXT: its strings, joined as readers join them
  if ('exchange' in record) return `${record.priority} ${record.exchange}`;
  return `${record.nsname} ${record.hostmaster} ${record.serial} ${record.refresh} ${record.retry} ${record.expire} ${record.minttl}`;
}
