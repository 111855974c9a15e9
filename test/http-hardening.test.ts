// The lab's HTTP servers (an MTA's API, the DNS control endpoint) against
// hostile clients: malformed requests, slow clients, requests from web pages
// and through DNS rebinding. Real servers of the test lab, raw TCP where a
// client library would refuse to send such a request.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import type { Server } from 'node:http';
import { pino } from 'pino';
import { startControl } from '../services/dns/control.ts';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';

let lab: TestLab;
let receiver: LabMta;
let control: Server;
let api: string; // host:port of the receiver's API
let controlAt: string; // host:port of the DNS control endpoint

before(async () => {
  lab = await startLab();
  receiver = await lab.start('receiver');
  control = await startControl(lab.dns, { host: '127.0.2.53', port: 0 }, pino({ level: 'silent' }));
  api = `${receiver.host}:${receiver.apiPort}`;
  controlAt = `127.0.2.53:${(control.address() as { port: number }).port}`;
});
after(async () => {
  control.close();
  await lab.close();
});

function open(at: string, localAddress?: string): Promise<Socket> {
  const [host, port] = at.split(':');
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port: Number(port), localAddress }, () => resolve(socket));
    socket.once('error', reject);
  });
}

// Sends raw bytes; resolves with all the server wrote until it closed.
async function raw(at: string, request: string): Promise<{ status: number; body: string }> {
  const socket = await open(at);
  let text = '';
  socket.on('data', (chunk) => (text += chunk));
  socket.end(request);
  await new Promise((resolve) => socket.once('close', resolve));
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
  return { status, body: text.slice(text.indexOf('\r\n\r\n') + 4) };
}

// Resolves when the server closes the connection, with how long it took
// (what it wrote is read and dropped: an unread end is never seen).
function closed(socket: Socket): Promise<number> {
  const start = Date.now();
  return new Promise((resolve) => {
    if (socket.destroyed) resolve(0);
    socket.once('close', () => resolve(Date.now() - start));
    socket.resume();
  });
}

describe('a malformed request gets a 400 with a JSON error, and the server lives', () => {
  for (const [name, at] of [
    ['the MTA API', () => api],
    ['the DNS control endpoint', () => controlAt],
  ] as const) {
    test(name, async () => {
      // A request target that is no URL threw outside the handler and ended the process.
      const target = await raw(at(), 'GET http://[ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      assert.equal(target.status, 400);
      assert.match(JSON.parse(target.body).error, /malformed request target/);
      // Bytes that are no HTTP at all: Node's parser refuses them, in JSON here too.
      const garbage = await raw(at(), 'HELLO\r\n\r\n');
      assert.equal(garbage.status, 400);
      assert.match(JSON.parse(garbage.body).error, /malformed request/);
      const health = await fetch(`http://${at()}${at() === api ? '/api/health' : '/health'}`);
      assert.equal(health.status, 200);
    });
  }

  test('malformed percent-encoding in a path is a 400, not a 500', async () => {
    for (const path of ['/api/sessions/%E0%A4%A', '/api/messages/%E0%A4%A', '/api/messages/%ZZ/raw', '/api/queue/%E0%A4%A', '/api/mailboxes/%E0%A4%A/INBOX']) {
      const response = await fetch(`http://${api}${path}`);
      assert.equal(response.status, 400, path);
      assert.match((await response.json()).error, /URI malformed/, path);
    }
  });
});

describe('slow clients', () => {
  test('a client that sends no whole request header is dropped within seconds; the event stream stays open', async () => {
    const start = Date.now();
    const events = new AbortController();
    const stream = (await fetch(`http://${api}/api/events`, { signal: events.signal })).body!.getReader();
    assert.match(new TextDecoder().decode((await stream.read()).value), /^retry: /);

    const slow = await Promise.all(Array.from({ length: 8 }, () => open(api)));
    for (const socket of slow) socket.write('GET /api/health HTTP/1.1\r\nHost: x\r\n'); // and never the end of the header
    const times = await Promise.all(slow.map(closed));
    assert.ok(Math.max(...times) < 5000, `dropped after ${Math.max(...times)} ms`);

    // Past the time allowed for a whole request, the stream is still open:
    // timeouts apply to reading requests, never to a long answer.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, 11_000 - (Date.now() - start))));
    const next = stream.read();
    const state = await Promise.race([next.then(() => 'data', () => 'closed'), new Promise((resolve) => setTimeout(() => resolve('open'), 200))]);
    assert.equal(state, 'open');
    events.abort();
    await next.catch(() => {});
  });

  test('one client address holds at most 32 connections of the 64; another address is still served', async () => {
    const held = await Promise.all(Array.from({ length: 32 }, () => open(api, '127.0.0.5')));
    try {
      const extra = await open(api, '127.0.0.5');
      assert.ok((await closed(extra)) < 1000, 'the 33rd connection of one address is closed at once');
      const other = await open(api, '127.0.0.6');
      other.end(`GET /api/health HTTP/1.1\r\nHost: ${api}\r\nConnection: close\r\n\r\n`);
      let text = '';
      other.on('data', (chunk) => (text += chunk));
      await closed(other);
      assert.match(text, /^HTTP\/1\.1 200 /);
    } finally {
      for (const socket of held) socket.destroy();
    }
  });
});

describe('who may use the servers', () => {
  // GET with a given Host header (fetch would send the URL's own).
  const withHost = (at: string, path: string, host: string) => raw(at, `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);

  test('the APIs answer only for an address, localhost or their own name (DNS rebinding)', async () => {
    const port = api.split(':')[1];
    for (const host of [api, `127.0.0.1:${port}`, `localhost:${port}`, `mx.receiver.test:${port}`, `192.0.2.20:${port}`, `[::1]:${port}`]) {
      assert.equal((await withHost(api, '/api/health', host)).status, 200, host);
    }
    for (const host of [`attacker.example:${port}`, `mta.attacker.test:${port}`, 'rebind.127.0.2.20.nip.io']) {
      const refused = await withHost(api, '/api/mailboxes', host);
      assert.equal(refused.status, 421, host);
      assert.match(JSON.parse(refused.body).error, /does not answer for the name/);
    }
    const controlPort = controlAt.split(':')[1];
    assert.equal((await withHost(controlAt, '/health', `ns.lab.test:${controlPort}`)).status, 200);
    assert.equal((await withHost(controlAt, '/overrides', `attacker.example:${controlPort}`)).status, 421);
  });

  test('the DNS control endpoint takes changes only as JSON, never from a page of another origin', async () => {
    const body = JSON.stringify({ name: '_dmarc.sender.test', type: 'TXT', values: ['v=DMARC1; p=none'] });
    const post = (headers: Record<string, string>) => fetch(`http://${controlAt}/overrides`, { method: 'POST', headers, body });
    // What a page elsewhere can send without a preflight: a form or text/plain, with its Origin.
    const crossOrigin = await post({ origin: 'http://evil.example', 'content-type': 'application/json' });
    assert.equal(crossOrigin.status, 403);
    assert.match((await crossOrigin.json()).error, /not taken from web pages of other origins/);
    assert.equal((await post({ 'content-type': 'text/plain' })).status, 415);
    assert.equal((await post({ 'content-type': 'application/x-www-form-urlencoded' })).status, 415);
    const remove = await fetch(`http://${controlAt}/overrides`, { method: 'DELETE', headers: { origin: 'http://evil.example' } });
    assert.equal(remove.status, 403);
    assert.deepEqual(await (await fetch(`http://${controlAt}/overrides`)).json(), []);
    // The endpoint's own origin, and the lab's tools (no Origin), may.
    assert.equal((await post({ origin: `http://${controlAt}`, 'content-type': 'application/json; charset=utf-8' })).status, 200);
    assert.equal((await fetch(`http://${controlAt}/overrides`, { method: 'DELETE' })).status, 200);
  });

  test('at most 1,000 overrides are in force; one more is refused with the reason, a replacement is not', async () => {
    const post = (name: string, value = '192.0.2.99') =>
      fetch(`http://${controlAt}/overrides`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, type: 'A', values: [value] }) });
    try {
      for (let i = 0; i < 1000; i++) assert.equal((await post(`h${i}.sender.test`)).status, 200);
      const more = await post('h1000.sender.test');
      assert.equal(more.status, 429);
      assert.match((await more.json()).error, /at most 1000 overrides at once/);
      assert.equal((await post('h0.sender.test', '192.0.2.98')).status, 200);
    } finally {
      await fetch(`http://${controlAt}/overrides`, { method: 'DELETE' });
    }
  });
});

test('the DNS server alone opens its control endpoint on loopback unless told otherwise', async () => {
  const main = new URL('../services/dns/main.ts', import.meta.url).pathname;
  const { DNS_CONTROL_LISTEN: _, ...env } = process.env;
  const child = spawn(process.execPath, [main], {
    env: { ...env, LOG_LEVEL: 'info', LOG_FORMAT: 'json', DNS_LISTEN: '127.0.0.1:0', ZONE_DIR: new URL('./fixtures/zones/', import.meta.url).pathname },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  try {
    // Listening, or refused because another program holds the port: either way, where it tried.
    for (const deadline = Date.now() + 5000; !/control endpoint/.test(output); ) {
      assert.ok(Date.now() < deadline, `no word of the control endpoint: ${output}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.match(output, /"control":"127\.0\.0\.1:8053"|control endpoint 127\.0\.0\.1:8053:/);
  } finally {
    child.kill('SIGKILL');
  }
});
