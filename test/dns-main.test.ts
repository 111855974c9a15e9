// The server as a process: `node services/dns/main.ts` with its environment.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Resolver } from 'node:dns/promises';

const main = new URL('../services/dns/main.ts', import.meta.url).pathname;
const fixtures = new URL('./fixtures/zones/', import.meta.url).pathname;

function runMain(env: Record<string, string>) {
  return spawnSync(process.execPath, [main], { env: { ...process.env, LOG_LEVEL: 'silent', ...env }, encoding: 'utf8', timeout: 10_000 });
}

test('a bad setting stops the server with a message naming the variable', () => {
  const listen = runMain({ DNS_LISTEN: 'nonsense', ZONE_DIR: fixtures });
  assert.equal(listen.status, 2);
  assert.match(listen.stderr, /configuration error: DNS_LISTEN: "nonsense" is not host:port/);
  const dir = runMain({ DNS_LISTEN: '127.0.0.1:0', ZONE_DIR: '/nonexistent' });
  assert.equal(dir.status, 2);
  assert.match(dir.stderr, /ZONE_DIR: "\/nonexistent" is not a directory/);
});

test('a broken zone file stops the start with file:line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dns-main-'));
  try {
    cpSync(fixtures, dir, { recursive: true });
    writeFileSync(join(dir, 'bad.test.zone'), '$ORIGIN bad.test.\n$TTL 5\n@ SOA ns.lab.test. h.lab.test. 1 2 3 4 5\nwww MX ten mx\n');
    const result = runMain({ DNS_LISTEN: '127.0.0.1:0', DNS_CONTROL_LISTEN: '127.0.0.1:0', ZONE_DIR: dir });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /bad\.test\.zone:4: MX preference must be a number from 0 to 65535, found "ten"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('serves, answers its control endpoint, and stops cleanly on SIGTERM', async () => {
  // Port 0 for both: a fixed port may be held by another test's socket; the
  // log says which ports the system picked.
  const child = spawn(process.execPath, [main], {
    env: { ...process.env, LOG_LEVEL: 'info', LOG_FORMAT: 'json', DNS_LISTEN: '127.0.0.1:0', DNS_CONTROL_LISTEN: '127.0.0.1:0', ZONE_DIR: fixtures },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let errors = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (errors += chunk));
  try {
    // Generous: under a loaded CI (the Docker test beside it) a start took over 5 s.
    const deadline = Date.now() + 20_000;
    while (!output.includes('control endpoint listening')) {
      assert.ok(Date.now() < deadline && child.exitCode === null, `not ready: ${output}${errors}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const lines = () => output.split('\n').filter(Boolean).map((line) => JSON.parse(line));
    const listen = lines().find((l) => l.listen).listen as string;
    const control = lines().find((l) => l.control).control as string;
    const resolver = new Resolver({ timeout: 1000, tries: 1 });
    resolver.setServers([listen]);
    assert.deepEqual(await resolver.resolve4('host.features.test'), ['192.0.2.22']);
    const health = await (await fetch(`http://${control}/health`)).json();
    assert.equal(health.status, 'ok');
    const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.ok(lines().some((l) => l.msg === 'query' && l.qname === 'host.features.test' && l.qtype === 'A' && l.rcode === 'NOERROR' && l.answers === 1));
  } finally {
    child.kill('SIGKILL');
  }
});
