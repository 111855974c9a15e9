// Every npm script, run by a Node older than 22.19 (the system's Node 20 on
// the project's machines), says so in the README's one line and exits 1,
// without a stack trace: each script's command is run as npm runs it (sh -c,
// node_modules/.bin on PATH) with the old Node first on PATH.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

const root = new URL('../', import.meta.url).pathname;
const scripts: Record<string, string> = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).scripts;

const tooOld = (version: string) => {
  const [major, minor] = version.split('.').map(Number);
  return major < 22 || (major === 22 && minor < 19);
};

// The first Node older than 22.19 among the usual places and those on PATH.
function oldNode(): { path: string; version: string } | undefined {
  const candidates = ['/usr/bin/node', '/usr/local/bin/node', ...(process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'node'))];
  for (const path of new Set(candidates)) {
    const run = spawnSync(path, ['-p', 'process.versions.node'], { encoding: 'utf8', timeout: 10_000 });
    const version = run.status === 0 ? run.stdout.trim() : '';
    if (version && tooOld(version)) return { path, version };
  }
  return undefined;
}

test('with a Node older than 22.19, every npm script prints the one-line message and exits 1', (t) => {
  const old = oldNode();
  if (!old) return t.skip('no Node.js older than 22.19 found (looked at /usr/bin/node, /usr/local/bin/node and PATH)');
  // A directory whose only entry is `node`: the old one.
  const bin = mkdtempSync(join(tmpdir(), 'old-node-'));
  try {
    symlinkSync(old.path, join(bin, 'node'));
    const PATH = [bin, join(root, 'node_modules', '.bin'), process.env.PATH].join(delimiter);
    for (const [name, command] of Object.entries(scripts)) {
      const run = spawnSync('sh', ['-c', command], { cwd: root, env: { ...process.env, PATH }, encoding: 'utf8', timeout: 20_000 });
      assert.deepEqual(
        { script: name, status: run.status, stdout: run.stdout, stderr: run.stderr },
        { script: name, status: 1, stdout: '', stderr: `Node.js ${old.version} is too old: the lab needs 22.19 or newer\n` },
      );
    }
  } finally {
    rmSync(bin, { recursive: true, force: true });
  }
});

test('a Node of 22.19 or newer passes the check without a word', () => {
  const run = spawnSync(process.execPath, ['-r', './scripts/node-version.cjs', '-p', '"ok"'], { cwd: root, encoding: 'utf8' });
  assert.deepEqual([run.status, run.stdout, run.stderr], [0, 'ok\n', '']);
});
