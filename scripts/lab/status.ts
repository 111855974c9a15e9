// npm run lab -- status: each service up or down, from the same health
// endpoints that compose.yaml's healthchecks use.
import { parseArgs } from 'node:util';
import { health } from './api.ts';
import { COMPOSE_USAGE } from './published.ts';
import type { Lab } from './compose.ts';
import { LabNotAnswering } from './errors.ts';
import { table } from './table.ts';

export const usage = `npm run lab -- status [--compose]

Asks every service of the lab for its health and prints up or down for each,
with what its health endpoint says. Exit code 0 when all are up.

${COMPOSE_USAGE}`;

export async function run(argv: string[], lab: Lab): Promise<number> {
  parseArgs({ args: argv, options: {} });
  const results = await Promise.all(lab.services.map((s) => health(s.health)));
  if (results.every((r) => !r.up)) throw new LabNotAnswering('no lab is running: no service answers');
  const rows = lab.services.map((s, i) => {
    const r = results[i];
    const detail = r.up ? Object.entries(r.detail).map(([k, v]) => `${k}=${v}`).join(' ') : r.reason;
    return [s.name, r.up ? 'up' : 'DOWN', s.health, detail];
  });
  process.stdout.write(`${table([['service', 'state', 'health endpoint', 'says'], ...rows])}\n`);
  return results.every((r) => r.up) ? 0 : 1;
}
