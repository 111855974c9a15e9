// Which Compose runs the lab in Docker: `docker compose` (v2) when it
// answers, else `docker-compose` (v1, all that Debian 12 packages), or the
// command COMPOSE names (e.g. COMPOSE=docker-compose). Used by the lab CLI and
// the scenario runner alike, for what they run and what they tell a person.
import { spawnSync } from 'node:child_process';
import { LabError } from './errors.ts';

let found: string[] | undefined;

export function composeCommand(env: NodeJS.ProcessEnv = process.env): string[] {
  if (found) return found;
  const chosen = env.COMPOSE?.trim();
  if (chosen) {
    const words = chosen.split(/\s+/);
    const check = answers(words);
    if (check !== true) throw new LabError(`COMPOSE=${chosen}: "${chosen} version" failed: ${check}`);
    return (found = words);
  }
  for (const words of [['docker', 'compose'], ['docker-compose']]) {
    if (answers(words) === true) return (found = words);
  }
  throw new LabError(
    'neither "docker compose" (Compose v2) nor "docker-compose" (v1) works here: install one ' +
      '(Debian 12: apt-get install docker-compose), or name yours in COMPOSE',
  );
}

// true, or why not.
function answers([command, ...args]: string[]): true | string {
  const result = spawnSync(command, [...args, 'version'], { encoding: 'utf8', timeout: 10_000 });
  if (result.error) return (result.error as NodeJS.ErrnoException).code === 'ENOENT' ? `${command}: not installed` : result.error.message;
  return result.status === 0 ? true : (result.stderr || result.stdout).trim().split('\n')[0];
}
