// What the command-line scripts (npm run lab, npm run scenario) do first:
// check Node before anything heavy is loaded, so that an old Node hears what
// to do instead of failing inside a library; then turn on Node's compile
// cache, in its usual place, for the script and (through the environment)
// every service it starts: from the second start on, all start sooner and
// take less memory.
import { enableCompileCache } from 'node:module';

export async function runCommand(name: string, load: () => Promise<{ main(argv: string[]): Promise<number> }>): Promise<never> {
  const [major, minor] = process.versions.node.split('.').map(Number);
  if (major < 22 || (major === 22 && minor < 19)) {
    process.stderr.write(`${name}: Node.js ${process.versions.node} is too old: the lab needs 22.19 or newer (Node 24 LTS recommended)\n`);
    process.exit(1);
  }
  const { directory } = enableCompileCache();
  if (directory) process.env.NODE_COMPILE_CACHE ??= directory;
  const { main } = await load();
  process.exit(await main(process.argv.slice(2)));
}
