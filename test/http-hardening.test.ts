// The lab's HTTP servers (an MTA's API, the DNS control endpoint) against
// hostile clients: malformed requests, slow clients, requests from web pages
// and through DNS rebinding. Real servers of the test lab, raw TCP where a
// client library would refuse to send such a request.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
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

