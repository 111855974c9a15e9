#!/usr/bin/env node
// npm run lab: the embedded lab and its command line (scripts/lab/cli.ts).
import { runCommand } from './entry.ts';

await runCommand(() => import('./lab/cli.ts'));
