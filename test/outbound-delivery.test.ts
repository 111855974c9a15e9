// Delivery after the 250: a receiver that is down gets the message once it
// is back (the queue API shows the wait), a permanent refusal turns into a
// bounce (RFC 3464) for the sender, a bounce is never bounced, and the MX
// lookup follows RFC 5321 and RFC 7505: null MX, implicit MX, no such domain.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import { pino } from 'pino';
import { startControl } from '../services/dns/control.ts';
import type { Instance } from '../services/mta/instance.ts';
import type { QueueEntry } from '../services/mta/outbound/queue.ts';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';
import { api, arrival, header, message, submit, waitFor } from './support/mail.ts';

let lab: TestLab;
let sender: LabMta;
let receiver: LabMta;
let control: Server;

// The receiver also serves nomx.receiver.test, a domain with no MX record (the route tests).
const withNoMxDomain = (i: Instance): Instance => ({ ...i, domains: new Map([...i.domains, ['nomx.receiver.test', new Set(['bob', 'postmaster'])]]) });

before(async () => {
  lab = await startLab();
  receiver = await lab.start('receiver', withNoMxDomain);
  // Retries after 1 s, then every 2 s, so that a test sees one.
  sender = await lab.start('sender', (i) => ({ ...i, delivery: { ...i.delivery, retryInitialSeconds: 1, retryMaxSeconds: 2 } }));
  control = await startControl(lab.dns, { host: '127.0.2.53', port: 0 }, pino({ level: 'silent' }));
});
after(async () => {
  control.close();
  await lab.close();
});

const alice = 'alice@sender.test';

// Submits as alice; returns the queue id from "250 ... queued as <id>".
async function send(to: string[], id: string, mailFrom = alice): Promise<string> {
  const reply = await submit(sender, { user: alice, mailFrom, to, data: message(`Alice <${alice}>`, to.join(', '), id) });
  const queueId = /^250 2\.6\.0 Ok: queued as (\w+)$/.exec(reply.text)?.[1];
  assert.ok(queueId, reply.text);
  return queueId;
}

// The message/delivery-status part of a DSN.
function deliveryStatus(bounce: string): string {
  const boundary = /boundary="([^"]+)"/.exec(header(bounce, 'Content-Type'))![1];
  const part = bounce.split(`--${boundary}`).find((p) => p.startsWith('\r\nContent-Type: message/delivery-status\r\n'));
  assert.ok(part, 'no message/delivery-status part');
  return part;
}

const bounceFor = (recipient: string) => arrival(sender, alice, `Final-Recipient: rfc822; ${recipient}\r\n`);

async function override(name: string, type: string, values: string[]): Promise<void> {
  const { port } = control.address() as { port: number };
  const response = await fetch(`http://127.0.2.53:${port}/overrides`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, type, values }) });
  assert.equal(response.status, 200, await response.text());
}

test('receiver stopped, then started: the message waits in the queue (attempts, last error, next try in the API) and arrives after a retry', async () => {
  await lab.stop('receiver');
  const id = await send(['bob@receiver.test'], 'while-down');

  const waiting = await waitFor('a failed attempt', async () => {
    const entry = await api<QueueEntry>(sender, `/api/queue/${id}`);
    // The count goes up as the attempt begins; its error comes when it is over.
    return entry.attempts >= 1 && entry.lastError ? entry : undefined;
  });
  assert.match(waiting.lastError!, /^mx\.receiver\.test \[192\.0\.2\.20\]: .*ECONNREFUSED/);
  assert.deepEqual(waiting.recipients.map((r) => [r.address, r.status]), [['bob@receiver.test', 'queued']]);
  assert.ok(Date.parse(waiting.nextAttemptAt) >= Date.parse(waiting.createdAt) + 1000, `next try ${waiting.nextAttemptAt}: no backoff`);
  assert.ok((await api<QueueEntry[]>(sender, '/api/queue')).some((e) => e.id === id));

  receiver = await lab.start('receiver', withNoMxDomain); // the same ports and data
  await arrival(receiver, 'bob@receiver.test', 'Subject: while-down');
  await waitFor('the queue to empty', async () => ((await api<QueueEntry[]>(sender, '/api/queue')).length === 0 ? true : undefined));
  assert.equal((await fetch(`http://${sender.host}:${sender.apiPort}/api/queue/${id}`)).status, 404);
});

test('a 550 for one recipient: the other gets the message, and alice gets a DSN (RFC 3464) naming the failed one with the remote reply', async () => {
  await send(['nobody@receiver.test', 'bob@receiver.test'], 'one-unknown');
  await arrival(receiver, 'bob@receiver.test', 'Subject: one-unknown');

  const bounce = await bounceFor('nobody@receiver.test');
  assert.equal(header(bounce, 'Return-Path'), '<>');
  assert.equal(header(bounce, 'Auto-Submitted'), 'auto-replied');
  assert.match(header(bounce, 'Content-Type'), /^multipart\/report; report-type=delivery-status; boundary=/);
  const status = deliveryStatus(bounce);
  assert.match(status, /\r\nReporting-MTA: dns; mta\.sender\.test\r\n/);
  assert.match(status, /\r\nAction: failed\r\n/);
  assert.match(status, /\r\nStatus: 5\.1\.1\r\n/);
  assert.match(status, /\r\nRemote-MTA: dns; mx\.receiver\.test\r\n/);
  assert.match(status, /\r\nDiagnostic-Code: smtp; 550 5\.1\.1 No such mailbox: nobody@receiver\.test/);
  assert.doesNotMatch(status, /bob@receiver\.test/, 'the delivered recipient is not in the DSN');
  assert.match(bounce, /\r\nContent-Type: text\/rfc822-headers\r\n[\s\S]*\r\nMessage-ID: <one-unknown@client\.example>\r\n/);
});

test('a bounce is never bounced: the attacker\'s spoof of ceo@sender.test is refused, its bounce to ceo@sender.test too, and then dropped', async () => {
  const attacker = await lab.start('attacker');
  const data = message('CEO <ceo@sender.test>', 'bob@receiver.test', 'spoof-ceo');
  const reply = await submit(attacker, { user: 'mallory@attacker.test', mailFrom: 'ceo@sender.test', to: ['bob@receiver.test'], data });
  assert.match(reply.text, /^250 /);
  await waitFor('the refusal at the receiver', async () => {
    const [session] = await api<{ dispositions: string[] }[]>(receiver, `/api/sessions?messageId=${encodeURIComponent('<spoof-ceo@client.example>')}`);
    return session?.dispositions.includes('reject') ? true : undefined;
  });
  // The spoof failed, its bounce failed: nothing is left. A bounce of the
  // bounce would be addressed to <>, undeliverable, and wait in the queue.
  await waitFor('the attacker\'s queue to empty', async () => ((await api<QueueEntry[]>(attacker, '/api/queue')).length === 0 ? true : undefined));

  // The sender's MX refused the bounce; its record is complete once the
  // attacker's pooled connection is closed.
  await lab.stop('attacker');
  const transcript = await waitFor('the bounce session at the sender', async () => {
    for (const { id } of await api<{ id: string; client: string }[]>(sender, '/api/sessions')) {
      const record = await api<{ client: { address: string }; endedAt?: string; transcript: { line: string }[] }>(sender, `/api/sessions/${id}`);
      if (record.client.address === '192.0.2.66' && record.endedAt) return record.transcript.map((t) => t.line);
    }
  });
  assert.ok(transcript.includes('C: MAIL FROM:<>'), transcript.join('\n'));
  assert.ok(transcript.includes('C: RCPT TO:<ceo@sender.test>'), transcript.join('\n'));
  assert.ok(transcript.some((line) => line.startsWith('S: 550 5.1.1 No such mailbox: ceo@sender.test')), transcript.join('\n'));
});

test('null MX (RFC 7505): a permanent failure without a connection (no Remote-MTA), and a bounce that says why', async () => {
  await override('nullmx.receiver.test', 'MX', ['0 .']);
  await send(['bob@nullmx.receiver.test'], 'null-mx');
  const status = deliveryStatus(await bounceFor('bob@nullmx.receiver.test'));
  assert.match(status, /\r\nStatus: 5\.1\.10\r\n/);
  assert.match(status, /\r\nDiagnostic-Code: smtp; 556 5\.1\.10 nullmx\.receiver\.test does not accept mail \(null MX, RFC 7505\)\r\n/);
  assert.doesNotMatch(status, /Remote-MTA/);
});

test('no MX record: the domain\'s own address is its implicit MX (RFC 5321 section 5.1), and the message is delivered there', async () => {
  await override('nomx.receiver.test', 'A', ['192.0.2.20']);
  await send(['bob@nomx.receiver.test'], 'implicit-mx');
  const stored = await arrival(receiver, 'bob@nomx.receiver.test', 'Subject: implicit-mx');
  assert.match(header(stored, 'Authentication-Results'), /dmarc=pass/);
});

test('a domain that does not exist (NXDOMAIN): a permanent failure and a bounce', async () => {
  await send(['bob@nowhere.test'], 'nxdomain');
  const status = deliveryStatus(await bounceFor('bob@nowhere.test'));
  assert.match(status, /\r\nStatus: 5\.1\.2\r\n/);
  assert.match(status, /\r\nDiagnostic-Code: smtp; 550 5\.1\.2 nowhere\.test: no such domain \(NXDOMAIN\)\r\n/);
});

test('a domain with neither MX nor address record: a permanent failure and a bounce, not retries', async () => {
  await override('noaddress.receiver.test', 'TXT', ['a name with no MX and no A record']);
  await send(['bob@noaddress.receiver.test'], 'no-address');
  const status = deliveryStatus(await bounceFor('bob@noaddress.receiver.test'));
  assert.match(status, /\r\nStatus: 5\.4\.4\r\n/);
  assert.match(status, /\r\nDiagnostic-Code: smtp; 550 5\.4\.4 noaddress\.receiver\.test: no MX and no address record \(RFC 5321 section 5\.1\)\r\n/);
});

test('an MX outside the lab network (192.0.2.0/24) is never connected to: a permanent failure and a bounce that says why', async () => {
  // The stand-in for a host on the internet: an MTA on 127.1.0.25, which
  // accepts mail for gmail.com. Its address is not a lab address, so the
  // lab's twin mapping leaves it as it is and a sender that connected
  // wherever DNS says would reach this stand-in (on loopback: nothing leaves
  // the machine, even then).
  const outside = await lab.start('receiver', (i) => ({ ...i, name: 'outside', address: '127.1.0.25', domains: new Map([['gmail.com', new Set(['bob', 'postmaster'])]]) }));
  await override('gmail.com', 'MX', ['10 mx.gmail.com.']);
  await override('mx.gmail.com', 'A', ['127.1.0.25']);
  const id = await send(['bob@gmail.com'], 'outside-mx');
  await waitFor('the message to leave the queue', async () => ((await fetch(`http://${sender.host}:${sender.apiPort}/api/queue/${id}`)).status === 404 ? true : undefined));

  assert.deepEqual(await api(outside, '/api/sessions'), [], 'the sender connected to the host outside the lab');
  const status = deliveryStatus(await bounceFor('bob@gmail.com'));
  assert.match(status, /\r\nStatus: 5\.4\.4\r\n/);
  assert.match(status, /\r\nDiagnostic-Code: smtp; 550 5\.4\.4 mx\.gmail\.com \[127\.1\.0\.25\] is outside the lab network \(192\.0\.2\.0\/24\): the lab delivers only to lab hosts\r\n/);
  assert.doesNotMatch(status, /Remote-MTA/);
});
