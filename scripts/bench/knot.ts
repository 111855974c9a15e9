// knotd as the reference server: a knot.conf that serves the lab's zone files
// as they are, read-only, from a temporary run directory.
import { basename, resolve } from 'node:path';
import type { Zone } from '../../services/dns/zone-file.ts';

export function knotConfig(zones: Zone[], options: { runDir: string; host: string; port: number; zoneDir: string }): string {
  const zoneEntries = zones.flatMap((z) => [`  - domain: "${z.origin || '.'}"`, `    file: "${basename(z.file)}"`]);
  return [
    'server:',
    `    rundir: "${options.runDir}"`,
    `    listen: ${options.host}@${options.port}`,
    'database:',
    `    storage: "${options.runDir}/db"`,
    'log:',
    '  - target: stderr',
    '    any: warning',
    'template:',
    '  - id: default',
    `    storage: "${resolve(options.zoneDir)}"`,
    '    zonefile-sync: -1 # never write to the lab zone files',
    '    journal-content: none',
    'zone:',
    ...zoneEntries,
    '',
  ].join('\n');
}
