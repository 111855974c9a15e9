#!/usr/bin/env node
// npm run scenario: scripted mail-auth scenarios against the lab
// (scripts/scenario/cli.ts). The Node check comes first, as in scripts/lab.ts.
import { enableCompileCache } from 'node:module';

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 19)) {
  process.stderr.write(`scenario: Node.js ${process.versions.node} is too old: the lab needs 22.19 or newer (Node 24 LTS recommended)\n`);
  process.exit(1);
}
const { directory } = enableCompileCache();
if (directory) process.env.NODE_COMPILE_CACHE ??= directory;

const { main } = await import('./scenario/cli.ts');
process.exit(await main(process.argv.slice(2)));
