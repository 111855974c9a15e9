// npm run lab -- status: each service up or down, from the same health
// endpoints that compose.yaml's healthchecks use.
import { parseArgs } from 'node:util';
import { health } from './api.ts';
import { readLab } from './compose.ts';
import { LabError, START_HINT } from './errors.ts';
import { table } from './table.ts';

export const usage = `npm run lab -- status

Asks every service of the lab for its health and prints up or down for each,
with what its health endpoint says. Exit code 0 when all are up.`;

export async function run(argv: string[]): Promise<number> {
  parseArgs({ args: argv, options: {} });
  const lab = readLab();
  const results = await Promise.all(lab.services.map((s) => health(s.health)));
  if (results.every((r) => !r.up)) throw new LabError(`no lab is running: no service answers (${START_HINT})`);
  const rows = lab.services.map((s, i) => {
    const r = results[i];
    const detail = r.up ? Object.entries(r.detail).map(([k, v]) => `${k}=${v}`).join(' ') : r.reason;
    return [s.name, r.up ? 'up' : 'DOWN', s.health, detail];
  });
  process.stdout.write(`${table([['service', 'state', 'health endpoint', 'says'], ...rows])}\n`);
  return results.every((r) => r.up) ? 0 : 1;
}
