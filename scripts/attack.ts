#!/usr/bin/env node
// npm run attack: issue 13's adversarial run against a lab of its own (scripts/attack/cli.ts).
import { runCommand } from './entry.ts';

await runCommand(() => import('./attack/cli.ts'));
