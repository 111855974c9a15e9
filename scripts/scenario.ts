#!/usr/bin/env node
// npm run scenario: scripted mail-auth scenarios against the lab (scripts/scenario/cli.ts).
import { runCommand } from './entry.ts';

await runCommand(() => import('./scenario/cli.ts'));
