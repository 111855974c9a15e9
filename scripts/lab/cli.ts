// The lab's command line. Without a command it runs the lab; with one it
// talks to the lab that is running. --help works on both.
import { ConfigError } from '../../services/lib/config.ts';
import { LabError } from './errors.ts';
import { runLab } from './run.ts';

interface Command {
  usage: string;
  run(argv: string[]): Promise<number>;
}

// Loaded when asked for: the runner itself needs none of them (nor nodemailer).
const commands: Record<string, () => Promise<Command>> = {
  status: () => import('./status.ts'),
  send: () => import('./send.ts'),
  lookup: () => import('./lookup.ts'),
  inbox: () => import('./inbox.ts'),
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  try {
    if (name === undefined || name.startsWith('-')) return await runLab(argv);
    if (!Object.hasOwn(commands, name)) throw new LabError(`unknown command "${name}" (npm run lab -- --help lists them)`, 2);
    const command = await commands[name]();
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(`${command.usage}\n`);
      return 0;
    }
    return await command.run(rest);
  } catch (error) {
    // Mistakes a person can fix are one line, without a stack trace.
    const code = (error as { code?: string }).code ?? '';
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
