// The classroom lesson (classroom-flow.ts) against the lab that Docker runs,
// through compose.yaml's published ports: test/docker.test.ts runs this
// inside the lab daemon's network namespace, where those ports are.
//   node test/support/classroom-in-lab.ts CREDENTIALS_JSON lesson|after-restart
// The lesson prints its message's Message-ID; after-restart takes it back.
// After the lesson, ana checks an exercise with npm run exercise -- --compose.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readLab } from '../../scripts/lab/compose.ts';
import { publishedLab } from '../../scripts/lab/published.ts';
import { afterRestart, classroomFlow } from './classroom-flow.ts';

const [file, phase, messageId] = process.argv.slice(2);
const credentials = new Map(Object.entries(JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>));
const c = { lab: publishedLab(readLab()), credentials, clientAddress: '127.0.0.1' };
if (phase === 'lesson') {
  const { messageId } = await classroomFlow(c);
  // The exercise CLI through the published ports (--compose), as ana: her SPF passes.
  const checked = spawnSync(process.execPath, ['scripts/exercise.ts', 'check', 'spf', '--compose'], { env: { ...process.env, LAB_TOKEN: credentials.get('ana') }, encoding: 'utf8', timeout: 60_000 });
  if (checked.status !== 0 || !/^  pass   The attacker's spoof fails SPF$/m.test(checked.stdout)) throw new Error(`npm run exercise -- check spf --compose: exit ${checked.status}\n${checked.stdout}${checked.stderr}`);
  process.stdout.write(`${messageId}\n`);
} else if (phase === 'after-restart') await afterRestart(c, { messageId });
else throw new Error(`phase: lesson or after-restart, not ${phase}`);
