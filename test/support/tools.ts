// External tools that tests drive come from Debian packages. Under CI a
// missing tool is a failure (.ci/run installs them); elsewhere the test is
// skipped and says what to install.
import { spawnSync } from 'node:child_process';
import type { TestContext } from 'node:test';

const found = new Map<string, boolean>();

export function hasTool(command: string): boolean {
  if (!found.has(command)) {
    found.set(command, spawnSync('sh', ['-c', `command -v ${command}`]).status === 0);
  }
  return found.get(command)!;
}

// Returns false (and skips or fails the test) when the tool is missing.
export function requireTool(t: TestContext, command: string, debianPackage: string): boolean {
  if (hasTool(command)) return true;
  const reason = `${command} not installed (apt-get install ${debianPackage})`;
  if (process.env.CI === 'true') throw new Error(reason);
  t.skip(reason);
  return false;
}
