// The lab's command line. Without a command it runs the lab; with one it
// talks to the lab that is running: the embedded one, or with --compose the
// one Docker runs, through the ports compose.yaml publishes. --help works on
// both.
import { ConfigError } from '../../services/lib/config.ts';
import type { Lab } from './compose.ts';
import { composeCommand } from './compose-command.ts';
import { LabError, LabNotAnswering } from './errors.ts';
import { notRunningHint, reachLab } from './published.ts';
import { runLab } from './run.ts';

interface Command {
  usage: string;
  run(argv: string[], lab: Lab): Promise<number>;
}

// Loaded when asked for: the runner itself needs none of them (nor nodemailer).
const commands: Record<string, () => Promise<Command>> = {
  status: () => import('./status.ts'),
  send: () => import('./send.ts'),
  lookup: () => import('./lookup.ts'),
  inbox: () => import('./inbox.ts'),
  class: () => import('./class.ts'),
  zone: () => import('./zone.ts'),
  reports: () => import('./reports.ts'),
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  const compose = argv.includes('--compose');
  const rest = args.filter((a) => a !== '--compose');
  let lab: Lab | undefined;
  try {
    if (name === undefined || name.startsWith('-')) {
      if (compose) throw new LabError(`--compose is for the commands (status, send, lookup, inbox): under Docker the lab runs with ${composeCommand().join(' ')} up -d`, 2);
      return await runLab(argv);
    }
    if (!Object.hasOwn(commands, name)) throw new LabError(`unknown command "${name}" (npm run lab -- --help lists them)`, 2);
    const command = await commands[name]();
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(`${command.usage}\n`);
      return 0;
    }
    lab = reachLab(compose);
    return await command.run(rest, lab);
  } catch (error) {
    // Mistakes a person can fix are one line, without a stack trace.
    const code = (error as { code?: string }).code ?? '';
    if (error instanceof LabNotAnswering && lab) {
      process.stderr.write(`lab: ${error.message} (${notRunningHint(lab)})\n`);
      return error.exitCode;
    }
    if (error instanceof LabError || error instanceof ConfigError) {
      process.stderr.write(`lab: ${error.message}\n`);
      return error instanceof LabError ? error.exitCode : 2;
    }
    if (code.startsWith('ERR_PARSE_ARGS')) {
      const help = name === undefined || name.startsWith('-') ? '--help' : `${name} --help`;
      process.stderr.write(`lab: ${(error as Error).message.split('. ')[0]} (npm run lab -- ${help})\n`);
      return 2;
    }
    throw error;
  }
}
