// What the command-line scripts (npm run lab, npm run scenario) do first:
// check Node before anything heavy is loaded (node-version.cjs, the one place
// of that rule; npm runs it before every script, and this covers `node
// scripts/lab.ts` run by hand), so that an old Node hears what to do instead
// of failing inside a library; then turn on Node's compile cache, in its usual
// place, for the script and (through the environment) every service it
// starts: from the second start on, all start sooner and take less memory.
import './node-version.cjs';
import { enableCompileCache } from 'node:module';

export async function runCommand(load: () => Promise<{ main(argv: string[]): Promise<number> }>): Promise<never> {
  const { directory } = enableCompileCache();
  if (directory) process.env.NODE_COMPILE_CACHE ??= directory;
  const { main } = await load();
  const code = await main(process.argv.slice(2));
  // Into a pipe, output is written after write() returns: exit once it is
  // out, or a large --json document is cut short.
  await Promise.all([process.stdout, process.stderr].map((stream) => new Promise((resolve) => stream.write('', resolve))));
  process.exit(code);
}
