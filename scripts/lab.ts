#!/usr/bin/env node
// npm run lab: the embedded lab and its command line (scripts/lab/cli.ts).
// The Node check comes before anything else is loaded, so that an old Node
// hears what to do instead of failing somewhere inside a library.
import { enableCompileCache } from 'node:module';

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 19)) {
  process.stderr.write(`lab: Node.js ${process.versions.node} is too old: the lab needs 22.19 or newer (Node 24 LTS recommended)\n`);
  process.exit(1);
}
// Node's compile cache, in its usual place, for the runner and (through the
// environment) every service: from the second start on, all start sooner
// and take less memory.
const { directory } = enableCompileCache();
if (directory) process.env.NODE_COMPILE_CACHE ??= directory;

const { main } = await import('./lab/cli.ts');
process.exit(await main(process.argv.slice(2)));
