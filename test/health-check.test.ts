// compose.yaml's healthcheck script (services/lib/health-check.sh), run by
// bash as Docker runs it, against a real HTTP server: healthy on 200 only,
// quick until the first "healthy", then each check waits before it looks.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { root } from '../scripts/lab/compose.ts';

const script = join(root, 'services/lib/health-check.sh');
const work = mkdtempSync(join(tmpdir(), 'health-check-'));
const mark = join(work, 'healthy-since');
let server: Server;
let base: string;
let status = 200;

before(async () => {
  server = createServer((request, response) => {
    response.writeHead(request.url === '/api/health' ? status : 404, { 'content-type': 'application/json' });
    response.end('{"status":"ok"}\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
after(() => {
  server.close();
  rmSync(work, { recursive: true, force: true });
});

// Run as a child, not synchronously: the server answers from this process.
function check(url: string): Promise<{ code: number | null; stderr: string; ms: number }> {
  const started = performance.now();
  const env = { PATH: process.env.PATH, HEALTH_MARK: mark, SLOW_CHECK_SECONDS: '1' };
  return new Promise((resolve) => {
    const child = execFile('bash', [script, url], { encoding: 'utf8', env, timeout: 10_000 }, (_error, _stdout, stderr) =>
      resolve({ code: child.exitCode, stderr, ms: performance.now() - started }),
    );
  });
}

// Field 22 of /proc/1/stat: when PID 1 started (the container's process, in Docker).
const startOfPid1 = () => readFileSync('/proc/1/stat', 'utf8').split(') ')[1].split(' ')[19];

test('healthy on 200, quick the first time, then each check waits before it looks', async () => {
  rmSync(mark, { force: true });
  const first = await check(`${base}/api/health`);
  assert.equal(first.code, 0, first.stderr);
  assert.ok(first.ms < 900, `the first check took ${first.ms.toFixed(0)} ms`);
  assert.equal(readFileSync(mark, 'utf8').trim(), startOfPid1(), 'the mark holds the start of PID 1');

  const later = await check(`${base}/api/health`);
  assert.equal(later.code, 0, later.stderr);
  assert.ok(later.ms >= 1000, `a later check waited ${later.ms.toFixed(0)} ms, not SLOW_CHECK_SECONDS`);

  // A mark from an earlier start of the container (a restart): quick again.
  writeFileSync(mark, '1\n');
  const restarted = await check(`${base}/api/health`);
  assert.equal(restarted.code, 0, restarted.stderr);
  assert.ok(restarted.ms < 900, `after a restart the check took ${restarted.ms.toFixed(0)} ms`);
});

test('unhealthy when the endpoint says so, or nothing listens; a malformed URL is a usage error', async () => {
  rmSync(mark, { force: true });
  status = 503;
  const failing = await check(`${base}/api/health`);
  status = 200;
  assert.equal(failing.code, 1);
  assert.match(failing.stderr, /HTTP\/1\.1 503/);
  assert.equal((await check(`${base}/elsewhere`)).code, 1, '404 is not healthy');

  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as { port: number }).port;
  await new Promise((resolve) => closed.close(resolve));
  assert.equal((await check(`http://127.0.0.1:${port}/api/health`)).code, 1);

  const usage = await check('https://127.0.0.1/health');
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /usage: .*health-check\.sh http:\/\/HOST:PORT\/PATH/);
});
