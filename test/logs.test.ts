// The services' log lines, from a real DNS server process whose stdout is a
// pipe (as under compose) or a terminal: readable lines by default, one per
// event, coloured only on a terminal; JSON lines with LOG_FORMAT=json; every
// line written at once (a process killed outright leaves them all). And the
// lab runner's lines, made from the same JSON lines.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { readableLine } from '../services/lib/log-line.ts';
import { LogFormat } from '../scripts/lab/logs.ts';
import { hasTool } from './support/tools.ts';

const root = new URL('../', import.meta.url).pathname;
const zones = new URL('./fixtures/zones/', import.meta.url).pathname;
const TIME = /^\[\d\d:\d\d:\d\d\.\d{3}\] /;

// The DNS server on loopback ports the system picks; two questions asked
// once it listens; killed with SIGKILL once the second question's log line
// is out. What it wrote to stdout, line by line.
async function dnsLines(env: Record<string, string>): Promise<string[]> {
  const { LOG_FORMAT, ...inherited } = process.env;
  const child = spawn(process.execPath, ['services/dns/main.ts'], {
    cwd: root,
    env: { ...inherited, LOG_LEVEL: 'info', DNS_LISTEN: '127.0.0.1:0', DNS_CONTROL_LISTEN: '127.0.0.1:0', ZONE_DIR: zones, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const closed = new Promise((resolve) => child.once('close', resolve));
  const until = async (what: string, done: () => boolean) => {
    for (const deadline = Date.now() + 10_000; !done(); await new Promise((r) => setTimeout(r, 10))) {
      assert.ok(Date.now() < deadline, `no ${what} in: ${output}`);
    }
  };
  try {
    await until('control endpoint line', () => output.includes('control endpoint listening'));
    const port = /"listen":"127\.0\.0\.1:(\d+)"/.exec(output)![1];
    const resolver = new Resolver({ timeout: 2000, tries: 1 });
    resolver.setServers([`127.0.0.1:${port}`]);
    assert.deepEqual(await resolver.resolve4('host.features.test'), ['192.0.2.22']);
    await assert.rejects(resolver.resolve4('nowhere.features.test'), { code: 'ENOTFOUND' });
    await until('line for nowhere.features.test', () => output.includes('nowhere.features.test'));
  } finally {
    child.kill('SIGKILL');
  }
  await closed;
  return output.split('\n').slice(0, -1);
}

const fields = (text: string) => text.replace(/"listen":"[^"]+"|"control":"[^"]+"/g, (f) => f.replace(/:\d+"$/, ':PORT"'));

test('by default, stdout a pipe: one readable line per event, no colour, the query log too', async () => {
  const lines = await dnsLines({});
  for (const line of lines) assert.match(line, TIME);
  assert.equal(lines.filter((l) => l.includes('\x1b')).length, 0, 'no ANSI escapes');
  assert.deepEqual(
    lines.map((l) => fields(l.replace(TIME, ''))),
    [
      'INFO: DNS server listening (UDP and TCP) {"listen":"127.0.0.1:PORT","zones":5}',
      'INFO: control endpoint listening {"control":"127.0.0.1:PORT"}',
      'INFO: query {"qname":"host.features.test","qtype":"A","client":"127.0.0.1","transport":"udp","rcode":"NOERROR","answers":1}',
      'INFO: query {"qname":"nowhere.features.test","qtype":"A","client":"127.0.0.1","transport":"udp","rcode":"NXDOMAIN","answers":1}',
    ],
  );
});

test('LOG_FORMAT=json: every line is a pino JSON line; the runner makes them the same readable lines', async () => {
  const started = Date.now();
  const lines = await dnsLines({ LOG_FORMAT: 'json' });
  const records = lines.map((l) => JSON.parse(l));
  for (const r of records) {
    assert.equal(r.level, 30);
    assert.ok(r.time >= started && r.time <= Date.now(), `time ${r.time}`);
    assert.equal(r.name, 'dns');
    assert.equal(r.service, 'dns');
  }
  assert.deepEqual(
    records.map((r) => r.msg),
    ['DNS server listening (UDP and TCP)', 'control endpoint listening', 'query', 'query'],
  );
  assert.deepEqual(
    { ...records[3], time: 0 },
    { level: 30, time: 0, name: 'dns', service: 'dns', qname: 'nowhere.features.test', qtype: 'A', client: '127.0.0.1', transport: 'udp', rcode: 'NXDOMAIN', answers: 1, msg: 'query' },
  );

  // The embedded lab's runner: behind the service's name, the line the
  // service writes by itself; with LOG_FORMAT=json, the line as it came.
  const text = new LogFormat(['dns', 'receiver'], { json: false, colour: false });
  assert.equal(text.line('dns', lines[3], 'stdout'), `dns      | ${readableLine(records[3], false)}`);
  assert.match(text.line('dns', lines[3], 'stdout'), /^dns {6}\| \[\d\d:\d\d:\d\d\.\d{3}\] INFO: query \{"qname":"nowhere\.features\.test",/);
  assert.equal(text.line('receiver', 'cannot start: EADDRINUSE', 'stderr'), 'receiver | cannot start: EADDRINUSE');
  const json = new LogFormat(['dns'], { json: true, colour: false });
  assert.equal(json.line('dns', lines[3], 'stdout'), lines[3]);
  assert.deepEqual(
    { ...JSON.parse(json.line('dns', 'cannot start', 'stderr')), time: 0 },
    { level: 50, time: 0, service: 'dns', msg: 'cannot start' },
  );
});

test('on a terminal the readable lines are coloured', async (t) => {
  // script(1) gives the server a terminal of its own.
  if (!hasTool('script')) return t.skip('script not installed (apt-get install bsdutils)');
  // Node turns colours off for NO_COLOR, NODE_DISABLE_COLORS, FORCE_COLOR=0 and CI.
  const { NO_COLOR, NODE_DISABLE_COLORS, FORCE_COLOR, CI, ...inherited } = process.env;
  const env = { ...inherited, LOG_FORMAT: 'text', DNS_LISTEN: '127.0.0.1:0', DNS_CONTROL_LISTEN: '127.0.0.1:0', ZONE_DIR: zones, TERM: 'xterm-256color' };
  const child = spawn('script', ['-qec', `${process.execPath} services/dns/main.ts`, '/dev/null'], { cwd: root, env, stdio: ['ignore', 'pipe', 'ignore'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const closed = new Promise((resolve) => child.once('close', resolve));
  try {
    const done = () => /control endpoint listening.*\r\n/.test(output);
    for (const deadline = Date.now() + 10_000; !done(); await new Promise((r) => setTimeout(r, 10))) {
      assert.ok(Date.now() < deadline, `no control endpoint line in: ${output}`);
    }
  } finally {
    child.kill('SIGTERM'); // the terminal closes: the server ends
  }
  await closed;
  assert.match(output, /\] \x1b\[32mINFO\x1b\[39m: \x1b\[36mcontrol endpoint listening\x1b\[39m \x1b\[90m\{"control":"127\.0\.0\.1:\d+"\}\x1b\[39m\r\n/);
});

test('an event is one line: line breaks and control characters escaped, an error and its stack on the line', () => {
  const records: Record<string, unknown>[] = [];
  const log = pino(
    { name: 'receiver', base: { service: 'receiver' } },
    new Writable({
      write(chunk, _encoding, done) {
        records.push(JSON.parse(String(chunk)));
        done();
      },
    }),
  );
  log.error({ err: new Error('disk full\nor gone'), session: 'S1' }, 'storing failed:\nsee err');
  log.warn('a \x1b[31mred\x1b[0m HELO');
  const [error, warning] = records.map((r) => readableLine(r, false));
  assert.doesNotMatch(error, /\n/);
  assert.match(error, /^\[\d\d:\d\d:\d\d\.\d{3}\] ERROR: "storing failed:\\nsee err" \{"err":\{"type":"Error","message":"disk full\\nor gone","stack":"Error: disk full\\nor gone\\n {4}at /);
  assert.match(error, /,"session":"S1"\}$/);
  assert.match(warning, /^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: "a \\u001b\[31mred\\u001b\[0m HELO"$/);
});

test('LOG_FORMAT other than text or json stops the service, naming the setting', () => {
  const run = spawnSync(process.execPath, ['services/dns/main.ts'], { cwd: root, env: { ...process.env, LOG_FORMAT: 'pretty' }, encoding: 'utf8', timeout: 10_000 });
  assert.equal(run.status, 2);
  assert.equal(run.stderr, 'configuration error: LOG_FORMAT: "pretty" is not one of text, json\n');
});
