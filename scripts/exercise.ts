#!/usr/bin/env node
// npm run exercise: a class's exercises, checked by the lab (scripts/exercise/cli.ts).
import { runCommand } from './entry.ts';

await runCommand(() => import('./exercise/cli.ts'));
