// npm run lab -- reports --send: the DMARC aggregate reports the lab has not
// sent yet, now, without waiting for the end of the period (README, "DMARC
// reports"): a lesson or a scenario need not wait.
import { parseArgs } from 'node:util';
import { credentialHeader } from './api.ts';
import type { Lab } from './compose.ts';
import { LabError, LabNotAnswering } from './errors.ts';
import { COMPOSE_USAGE } from './published.ts';
import { table } from './table.ts';
import type { Sent } from '../../services/mta/reports/reporter.ts';

export const usage = `npm run lab -- reports --send [--compose]

Makes every MTA that sends DMARC aggregate reports (an instance file with
reports:, the receiver) send now what it has not reported yet, the period
under way included, and prints each report: the policy domain, the messages
and rows it counts, where it went, and any destination refused (an address in
another domain that has not agreed to take the domain's reports). With a
class, LAB_TOKEN is the teacher's credential.

${COMPOSE_USAGE}`;

export async function run(argv: string[], lab: Lab): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { send: { type: 'boolean' } } });
  if (!values.send) throw new LabError('say --send: npm run lab -- reports --send', 2);
  const reporters = lab.services.filter((s) => s.instance?.reports && s.console);
  if (reporters.length === 0) throw new LabError('no MTA of this lab sends DMARC reports (no instance file has reports:)', 2);
  const rows: string[][] = [];
  for (const mta of reporters) {
    const url = `${mta.console}api/reports/send`;
    let response: Response;
    try {
      response = await fetch(url, { method: 'POST', headers: { ...credentialHeader(), 'content-type': 'application/json' }, body: '{}', signal: AbortSignal.timeout(60_000) });
    } catch (error) {
      if ((error as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED') throw new LabNotAnswering(`nothing answers at ${new URL(url).host}: is the lab running?`);
      throw new LabError(`${url}: ${(error as Error).message}`);
    }
    const body = (await response.json().catch(() => ({}))) as { reports?: Sent[]; error?: string };
    if (!response.ok) throw new LabError(`${url}: ${response.status} ${body.error ?? response.statusText}`);
    for (const r of body.reports ?? []) {
      const refused = r.refused.map((x) => `${x.uri}: ${x.reason}`).join('; ');
      rows.push([mta.name, r.policyDomain, String(r.messages), String(r.rows), r.to.join(', ') || '(nowhere)', refused]);
    }
  }
  process.stdout.write(rows.length ? `${table([['reporter', 'domain', 'messages', 'rows', 'sent to', 'refused'], ...rows])}\n` : 'nothing to report: no message with a DMARC record asking for reports since the last report\n');
  return 0;
}
