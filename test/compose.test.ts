// compose.yaml is valid for Docker, agrees with the zone files (the single
// source of truth for names and addresses), and reads into the embedded lab
// that DESIGN.md describes: the same services on their loopback twins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { isLabAddress } from '../services/lib/addressing.ts';
import { parseZoneFile } from '../services/dns/zone-file.ts';
import { composeFile, readLab, root } from '../scripts/lab/compose.ts';
import { publishedLab } from '../scripts/lab/published.ts';
import { requireTool } from './support/tools.ts';

const lab = readLab('/lab-data');
const dns = lab.services.find((s) => s.env.ZONE_DIR)!;
const zoneDir = join(root, dns.env.ZONE_DIR);
const records = readdirSync(zoneDir)
  .filter((f) => f.endsWith('.zone'))
  .flatMap((f) => parseZoneFile(readFileSync(join(zoneDir, f), 'utf8'), f).records);
const labA = records.flatMap((r) => (r.type === 'A' && isLabAddress(r.address) ? [{ name: r.name, address: r.address }] : []));
const ptr = new Map(records.flatMap((r) => (r.type === 'PTR' ? [[r.name.split('.').slice(0, 4).reverse().join('.'), r.domain] as const] : [])));
// A service's name in the lab: its instance's hostname, or (the DNS server) what its address's PTR says.
const nameOf = (s: (typeof lab.services)[number]) => s.instance?.hostname ?? ptr.get(s.labAddress);

test('compose.yaml passes docker-compose config', (t) => {
  if (!requireTool(t, 'docker-compose', 'docker-compose')) return;
  const result = spawnSync('docker-compose', ['config', '-q'], { cwd: root, encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
});

test("every service's address is its A record and its PTR, and every lab host in the zones is a service", () => {
  assert.equal(lab.services.length, 5);
  for (const s of lab.services) {
    const name = nameOf(s);
    assert.ok(name, `${s.name}: no name (no instance hostname, no PTR for ${s.labAddress})`);
    const addresses = labA.filter((a) => a.name === name).map((a) => a.address);
    assert.ok(addresses.length > 0, `${s.name}: ${name} has no A record`);
    assert.deepEqual(new Set(addresses), new Set([s.labAddress]), `${s.name}: ${name} A ${addresses} but compose says ${s.labAddress}`);
    assert.equal(ptr.get(s.labAddress), name, `${s.name}: the PTR of ${s.labAddress}`);
  }
  for (const a of labA) {
    const s = lab.services.find((x) => x.labAddress === a.address);
    assert.ok(s, `${a.name} A ${a.address}: no service in compose.yaml has that address`);
    assert.equal(nameOf(s), a.name, `${a.address} is ${a.name} in the zones but service ${s.name} in compose.yaml`);
  }
});

test('published ports are on the host loopback only, unless LAB_PUBLISH opens them on purpose', () => {
  const doc = parse(readFileSync(composeFile, 'utf8'), { merge: true });
  for (const [name, spec] of Object.entries<{ ports?: string[] }>(doc.services)) {
    for (const port of spec.ports ?? []) assert.match(port, /^\$\{LAB_PUBLISH:-127\.0\.0\.1\}:\d+:\d+(\/udp|\/tcp)?$/, `${name}: ${port}`);
  }
});

test('the embedded lab: loopback twins, privileged ports + 10000, data under the data directory', () => {
  const byName = new Map(lab.services.map((s) => [s.name, s]));
  const d = byName.get('dns')!;
  assert.equal(d.env.DNS_LISTEN, '127.0.2.53:10053');
  assert.equal(d.env.DNS_CONTROL_LISTEN, '127.0.2.53:8053');
  assert.deepEqual(d.ports, [
    { name: 'dns', port: 10053, container: 53, udp: true },
    { name: 'control', port: 8053, container: 8053, udp: false },
  ]);
  assert.equal(d.health, 'http://127.0.2.53:8053/health');
  assert.deepEqual(lab.dns, { host: '127.0.2.53', port: 10053 });

  const r = byName.get('receiver')!;
  assert.equal(r.address, '127.0.2.20');
  assert.equal(r.command[0], process.execPath);
  assert.deepEqual(r.command.slice(1), ['--max-semi-space-size=1', 'services/mta/main.ts'], "compose's node options kept");
  assert.equal(r.env.MTA_CONFIG, 'instances/receiver.yaml');
  assert.equal(r.env.MTA_DATA_DIR, '/lab-data/receiver');
  assert.deepEqual(r.ports.map((p) => `${p.name}:${p.port}`), ['mx:10025', 'submission:10587', 'api:8025']);
  assert.equal(r.health, 'http://127.0.2.20:8025/api/health');
  assert.equal(r.console, 'http://127.0.2.20:8025/');
  for (const name of ['sender', 'receiver', 'attacker', 'forwarder']) assert.deepEqual(byName.get(name)!.dependsOn, ['dns']);
});

test('the compose lab as the host reaches it: the ports compose.yaml publishes on 127.0.0.1', () => {
  const published = publishedLab(lab);
  assert.equal(published.mode, 'compose');
  assert.deepEqual(published.dns, { host: '127.0.0.1', port: 10053 });
  const byName = new Map(published.services.map((s) => [s.name, s]));
  const d = byName.get('dns')!;
  assert.equal(d.address, '127.0.0.1');
  assert.equal(d.labAddress, '192.0.2.53', 'the lab address stays');
  assert.equal(d.health, 'http://127.0.0.1:8053/health');
  const sender = byName.get('sender')!;
  assert.deepEqual(sender.ports.map((p) => `${p.name}:${p.port}`), ['submission:10587', 'api:8026'], 'its MX port is not published');
  assert.equal(sender.health, 'http://127.0.0.1:8026/api/health');
  assert.equal(sender.console, 'http://127.0.0.1:8026/');
  const receiver = byName.get('receiver')!;
  assert.deepEqual(receiver.ports.map((p) => `${p.name}:${p.port}`), ['mx:10025', 'api:8025'], 'its submission port is not published');
  assert.equal(byName.get('attacker')!.ports.find((p) => p.name === 'submission')!.port, 11587);
  assert.equal(byName.get('forwarder')!.console, 'http://127.0.0.1:8028/');
});

test("Compose is found: docker compose (v2), else docker-compose (v1), or COMPOSE's; none is said plainly", (t) => {
  const find = (env: NodeJS.ProcessEnv) =>
    spawnSync(process.execPath, ['--input-type=module', '-e', `import { composeCommand } from './scripts/lab/compose-command.ts'; try { console.log(composeCommand().join(' ')); } catch (e) { console.log('error: ' + e.message); }`], {
      cwd: root,
      encoding: 'utf8',
      env,
    }).stdout.trim();
  // A PATH with node alone: no Compose of either kind.
  const bare = mkdtempSync(join(tmpdir(), 'no-compose-'));
  symlinkSync(process.execPath, join(bare, 'node'));
  try {
    assert.match(find({ PATH: bare }), /^error: neither "docker compose" \(Compose v2\) nor "docker-compose" \(v1\) works here: install one \(Debian 12: apt-get install docker-compose\), or name yours in COMPOSE$/);
    assert.match(find({ PATH: bare, COMPOSE: 'podman-compose' }), /^error: COMPOSE=podman-compose: "podman-compose version" failed: podman-compose: not installed$/);
  } finally {
    rmSync(bare, { recursive: true, force: true });
  }
  if (!requireTool(t, 'docker-compose', 'docker-compose')) return;
  const v2 = spawnSync('docker', ['compose', 'version']).status === 0;
  assert.equal(find({ ...process.env, COMPOSE: '' }), v2 ? 'docker compose' : 'docker-compose');
  assert.equal(find({ ...process.env, COMPOSE: 'docker-compose' }), 'docker-compose');
});

test('the lab CLI with --compose, when no compose lab answers: what to start, and with which Compose', async (t) => {
  if (!requireTool(t, 'docker-compose', 'docker-compose')) return;
  const published = publishedLab(lab);
  const answering = await Promise.all(published.services.map((s) => fetch(s.health, { signal: AbortSignal.timeout(500) }).then(() => s.health, () => undefined)));
  if (answering.some(Boolean)) return t.skip(`a compose lab answers here (${answering.filter(Boolean).join(', ')})`);
  const cli = (...args: string[]) => spawnSync(process.execPath, ['scripts/lab.ts', ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, DOCKER_HOST: 'unix:///nonexistent.sock' } });
  const compose = spawnSync('docker', ['compose', 'version']).status === 0 ? 'docker compose' : 'docker-compose';

  const status = cli('status', '--compose');
  assert.equal(status.status, 1);
  assert.equal(status.stderr, `lab: no lab is running: no service answers (start it with: ${compose} up -d)\n`);
  const inbox = cli('inbox', '--compose');
  // The first MTA it asks is the sender, whose API compose publishes on 8026.
  assert.equal(inbox.stderr, `lab: nothing answers at 127.0.0.1:8026: is the lab running? (start it with: ${compose} up -d)\n`);
  const viaReceiver = cli('send', '--compose', '--via', 'receiver', '--from', 'alice@receiver.test', '--to', 'bob@receiver.test');
  assert.equal(viaReceiver.status, 2);
  assert.match(viaReceiver.stderr, /receiver's submission port is not published by compose\.yaml/);
  const runner = cli('--compose');
  assert.equal(runner.status, 2);
  assert.equal(runner.stderr, `lab: --compose is for the commands (status, send, lookup, inbox): under Docker the lab runs with ${compose} up -d\n`);
});
