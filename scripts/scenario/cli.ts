// npm run scenario: runs scenario files against the lab, prints what each
// step expected and got, and exits 0 only when every check passed.
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '../../services/lib/config.ts';
import { readLab, root } from '../lab/compose.ts';
import { LabError } from '../lab/errors.ts';
import { table } from '../lab/table.ts';
import { explain } from './explain.ts';
import { composeLab, embeddedLab } from './lab.ts';
import { resultJson, resultJunit, resultTable } from './report.ts';
import { runAll } from './run.ts';
import { loadScenario, ScenarioError, type Scenario } from './schema.ts';

export const scenarioDir = join(root, 'scripts', 'scenarios');

export const usage = `npm run scenario -- NAME... | all [options]

Runs scenarios (scripts/scenarios/NAME.yaml, or a path to a .yaml file)
against the lab: each step sends a message, the runner reads the decision
of the MTA that received it and checks it against what the file expects.
Without --compose it uses the embedded lab at 127.0.2.X when one is running,
else starts one in a temporary data directory and stops it after.
Exit code 0 when every check passed, 1 when one did not, 2 for a mistake
in the command or in a scenario file.

  --list         the scenarios, with their titles
  --explain      tell each message's story: the SMTP exchange, the DNS
                 questions and answers, each verdict and why, the alignment,
                 the policy and the decision
  --json         print one JSON document instead of the table
  --junit FILE   also write the results as JUnit XML
  --compose      use a lab started with docker compose up, through the ports
                 compose.yaml publishes on 127.0.0.1

Examples:
  npm run scenario -- all
  npm run scenario -- spoof-reject dkim-replay --explain`;

export async function main(argv: string[]): Promise<number> {
  const say = (text: string) => process.stderr.write(`${text}\n`);
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        list: { type: 'boolean' },
        explain: { type: 'boolean' },
        json: { type: 'boolean' },
        junit: { type: 'string' },
        compose: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    const instances = readLab().services.filter((s) => s.instance).map((s) => s.name);
    if (values.list) {
      const all = files(['all']).map((f) => loadScenario(f, instances));
      process.stdout.write(`${table([['scenario', 'title'], ...all.map((s) => [s.name, s.title])])}\n`);
      return 0;
    }
    if (positionals.length === 0) throw new LabError('which scenarios? Name them, or say all (npm run scenario -- --help)', 2);
    const scenarios: Scenario[] = files(positionals).map((f) => loadScenario(f, instances));

    const target = values.compose ? await composeLab() : await embeddedLab(say);
    try {
      const started = performance.now();
      const run = await runAll(scenarios, target, (r) => say(`scenario: ${r.passed ? 'pass' : 'FAIL'} ${r.scenario.name} (${r.ms} ms)`));
      const ms = performance.now() - started;
      if (values.explain) {
        // One after another: an API takes 32 connections from one address.
        const stories: string[] = [];
        for (const r of run.results) stories.push(await explain(r));
        (values.json ? say : (t: string) => process.stdout.write(`${t}\n`))(`${stories.join('\n\n')}\n`);
      }
      if (values.junit) writeFileSync(values.junit, resultJunit(run.results, ms));
      process.stdout.write(`${values.json ? resultJson(run.results, ms) : resultTable(run.results, ms)}\n`);
      // A lab that stays up is left as it was found: with no DNS change of
      // this run in any resolver's cache.
      const linger = run.quietAt - Date.now();
      if (!target.started && linger > 0) {
        say(`scenario: waiting ${(linger / 1000).toFixed(1)} s until the lab's resolvers have forgotten this run's DNS changes`);
        await new Promise((r) => setTimeout(r, linger));
      }
      return run.results.every((r) => r.passed) ? 0 : 1;
    } finally {
      await target.stop();
    }
  } catch (error) {
    if (error instanceof ScenarioError) {
      say(`scenario: ${error.message}`);
      return 2;
    }
    if (error instanceof LabError || error instanceof ConfigError) {
      say(`scenario: ${error.message}`);
      return error instanceof LabError ? error.exitCode : 2;
    }
    if ((error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      say(`scenario: ${(error as Error).message.split('. ')[0]} (npm run scenario -- --help)`);
      return 2;
    }
    throw error;
  }
}

// The files named: "all", scenario names, or paths to .yaml files.
function files(names: string[]): string[] {
  const known = readdirSync(scenarioDir).filter((f) => f.endsWith('.yaml')).sort();
  return names.flatMap((name) => {
    if (name === 'all') return known.map((f) => join(scenarioDir, f));
    if (/\.ya?ml$/.test(name)) return [name];
    if (!known.includes(`${name}.yaml`)) throw new LabError(`no scenario "${name}" (npm run scenario -- --list)`, 2);
    return [join(scenarioDir, `${name}.yaml`)];
  });
}
