// npm run attack: the adversarial run of issue 13 again, against a fresh
// embedded lab, one attack at a time; a table of what each was expected to
// meet (the hardened behaviour) against what it met, with memory figures
// where the attack was on memory. Exit code 0 only when every attack met it.
import { parseArgs } from 'node:util';
import { LabError } from '../lab/errors.ts';
import { attacks as auth } from './auth.ts';
import { attacks as crash } from './crash.ts';
import { attacks as delivery } from './delivery.ts';
import { attacks as dnsControl } from './dns-control.ts';
import { attacks as http } from './http.ts';
import { attacks as input } from './input.ts';
import { AttackLab } from './lab.ts';
import { closeAll } from './net.ts';
import { attacks as queue } from './queue.ts';
import { jsonReport, markdownReport, outcome, textReport, type Attack, type Row } from './report.ts';
import { attacks as slots } from './slots.ts';
import { attacks as smtpMemory } from './smtp-memory.ts';
import { attacks as storage } from './storage.ts';
import { attacks as submission } from './submission.ts';

export const usage = `npm run attack [-- options]

Runs the attacks of issue 13 against an embedded lab of its own (npm run lab
in a temporary data directory, on the lab's fixed addresses and ports: no
other lab may be running), and prints for each what was expected of the
hardened lab and what was observed. Memory attacks read the attacked
service's RSS and peak from /proc (Linux). Exit code 0 when every attack
met what was expected, 1 otherwise, 2 when the lab could not start.

  --json         the rows as JSON
  --markdown     the rows as a Markdown table (for an issue's closing note)
  --item N       only the attacks of issue 13's item N (repeatable)`;

const DEFAULT_TIMEOUT_MS = 15_000;

// In the order of the issue's items. Not here: the console's part of item 11
// (wrapping, RFC 2047, bidi), which needs a browser (test/console.test.ts).
// Item 6 on a real full disk needs root: test/mx-storage-failure.test.ts.
const ATTACKS: Attack[] = [...http, ...smtpMemory, ...dnsControl, ...delivery, ...submission, ...storage, ...queue, ...crash, ...slots, ...auth, ...input].sort((a, b) => a.item - b.item);

// After everything: item 1's other half. Any service that died used to stop
// the whole lab; the runner now restarts it, and none should have died but
// the one an attack killed on purpose.
const afterwards: Attack = {
  item: 1,
  name: 'the lab after all the attacks',
  expected: 'every service healthy; none stopped unexpectedly but those killed on purpose (items 7 and 8: the sender)',
  async run(lab) {
    const health = await Promise.all(lab.services.map(async (s) => [s.name, (await fetch(s.health, { signal: AbortSignal.timeout(2000) }).catch(() => undefined))?.status] as const));
    const unhealthy = health.filter(([, status]) => status !== 200).map(([name, status]) => `${name} ${status ?? 'no answer'}`);
    const crashed = [...lab.said().matchAll(/lab: (\S+) stopped unexpectedly/g)].map((m) => m[1]);
    const unplanned = crashed.filter((name, i) => crashed.indexOf(name) === i && !lab.killed.includes(name));
    return outcome(
      unhealthy.length === 0 && unplanned.length === 0 && crashed.length === lab.killed.length,
      `${unhealthy.length ? `not healthy: ${unhealthy.join(', ')}` : `all ${health.length} healthy`}; stopped unexpectedly: ${crashed.join(', ') || 'none'} (killed on purpose: ${lab.killed.join(', ') || 'none'})`,
    );
  },
};

export async function main(argv: string[]): Promise<number> {
  const say = (text: string) => process.stderr.write(`${text}\n`);
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { json: { type: 'boolean' }, markdown: { type: 'boolean' }, item: { type: 'string', multiple: true }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (error) {
    say(`${(error as Error).message}\n\n${usage}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const items = (values.item ?? []).map(Number);
  const chosen = items.length ? ATTACKS.filter((a) => items.includes(a.item)) : ATTACKS;
  if (chosen.length === 0) {
    say(`no attack for item ${items.join(', ')}; there are: ${[...new Set(ATTACKS.map((a) => a.item))].join(', ')}`);
    return 2;
  }

  const started = performance.now();
  say('attack: starting the embedded lab');
  let lab: AttackLab;
  try {
    lab = await AttackLab.start();
  } catch (error) {
    say(`attack: ${(error as Error).message}`);
    return error instanceof LabError ? 2 : 1;
  }
  // Ctrl-C: the lab stops first (the runner, in this process group, heard it too).
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void lab.stop().then(() => process.exit(130)));
  say(`attack: lab ready in ${((performance.now() - started) / 1000).toFixed(1)} s; ${chosen.length} attacks`);

  const rows: Row[] = [];
  try {
    for (const attack of [...chosen, afterwards]) {
      const row = await run(attack, lab);
      say(`attack: ${row.ok ? 'ok  ' : 'FAIL'} ${row.item} ${row.name} (${row.seconds.toFixed(1)} s)`);
      rows.push(row);
    }
  } finally {
    await lab.stop();
  }
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(`${values.json ? jsonReport(rows) : values.markdown ? markdownReport(rows, seconds) : textReport(rows, seconds)}\n`);
  return rows.every((r) => r.ok) ? 0 : 1;
}

// One attack, bounded in time: an error or a timeout is a failure with its
// reason as what was observed. Whatever it opened is closed after.
async function run(attack: Attack, lab: AttackLab): Promise<Row> {
  const timeoutMs = attack.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no result within ${timeoutMs / 1000} s`)), timeoutMs);
  });
  let result;
  try {
    result = await Promise.race([attack.run(lab), timeout]);
  } catch (error) {
    result = outcome(false, `error: ${(error as Error).message}`);
  } finally {
    clearTimeout(timer);
    closeAll();
  }
  const { item, name, expected } = attack;
  return { item, name, expected, ...result, seconds: (performance.now() - started) / 1000 };
}
