// The API routes behind the web console: pages of sessions and of folders,
// the message's parts and its sandboxed HTML, the lab DNS's query log, the
// event stream, and the console's own files with their policy.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import { startApi } from '../services/mta/api/api.ts';
import { loadInstance } from '../services/mta/instance.ts';
import { Maildir } from '../services/mta/store/maildir.ts';
import { Queue } from '../services/mta/outbound/queue.ts';
import { pino } from 'pino';
import { SessionStore } from '../services/mta/store/sessions.ts';
import { WriteAheadLog } from '../services/mta/store/write-ahead-log.ts';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';
import { waitFor } from './support/mail.ts';
import { RawSmtp } from './support/smtp.ts';

let lab: TestLab;
let receiver: LabMta;

before(async () => {
  lab = await startLab();
  receiver = await lab.start('receiver');
});
after(() => lab.close());

const get = (path: string) => fetch(`http://${receiver.host}:${receiver.apiPort}${path}`);
const json = async (path: string) => {
  const response = await get(path);
  return { status: response.status, body: await response.json() };
};

// One SMTP session from the attacker's address with one message to alice.
async function send(subject: string, body = 'Hello.', contentType = 'text/plain'): Promise<void> {
  const { smtp } = await RawSmtp.open(receiver.host, receiver.mxPort, '127.0.2.66');
  await smtp.command('EHLO mta.attacker.test');
  await smtp.command('MAIL FROM:<mallory@attacker.test>');
  await smtp.command('RCPT TO:<alice@receiver.test>');
  await smtp.command('DATA');
  const reply = await smtp.command(`From: mallory@attacker.test\r\nTo: alice@receiver.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@attacker.test>\r\nContent-Type: ${contentType}\r\n\r\n${body}\r\n.`);
  assert.equal(reply.code, 250, reply.text);
  await smtp.command('QUIT');
  await smtp.closed;
}

test('sessions and folders come in pages, newest first, with verdicts and codes', async () => {
  for (const n of [1, 2, 3]) await send(`paged-${n}`);
  // A session refused at RCPT TO: no message, but the code it heard.
  const { smtp } = await RawSmtp.open(receiver.host, receiver.mxPort, '127.0.2.66');
  await smtp.command('EHLO mta.attacker.test');
  await smtp.command('MAIL FROM:<mallory@attacker.test>');
  assert.equal((await smtp.command('RCPT TO:<nobody@receiver.test>')).code, 550);
  await smtp.command('QUIT');
  await smtp.closed;
  await waitFor('4 sessions', async () => ((await json('/api/sessions/page')).body.total >= 4 ? true : undefined));

  const first = (await json('/api/sessions/page?limit=2')).body;
  assert.equal(first.items.length, 2);
  assert.equal(first.items[0].transactions.length, 0);
  assert.match(first.items[0].refusal, /^550 5\.1\.1 No such mailbox/);
  assert.equal(first.items[1].transactions[0].subject, 'paged-3');
  assert.deepEqual(first.items[1].transactions[0].verdicts, { spf: 'pass', dkim: 'none', dmarc: 'pass', arc: 'none' });
  assert.equal(first.next, first.items[1].id);
  const second = (await json(`/api/sessions/page?limit=2&before=${first.next}`)).body;
  assert.deepEqual(second.items.map((s: { transactions: { subject: string }[] }) => s.transactions[0].subject), ['paged-2', 'paged-1']);
  assert.equal(second.total, first.total);

  const folder = (await json('/api/mailboxes/alice@receiver.test/INBOX?limit=2')).body;
  assert.deepEqual(folder.items.map((m: { subject: string }) => m.subject), ['paged-3', 'paged-2']);
  assert.equal(folder.items[0].disposition, 'inbox');
  assert.equal(folder.items[0].client, '192.0.2.66');
  const rest = (await json(`/api/mailboxes/alice@receiver.test/INBOX?limit=2&before=${folder.next}`)).body;
  assert.equal(rest.items[0].subject, 'paged-1');

  assert.equal((await json('/api/sessions/page?limit=0')).status, 400);
  assert.equal((await json('/api/sessions/page?limit=201')).status, 400);
  assert.equal((await json('/api/sessions/page?before=nosuchsession')).status, 404);
  assert.equal((await json('/api/mailboxes/alice@receiver.test/Drafts')).status, 404);
});

test('an HTML message: its parts, and its HTML as a page under a policy that forbids scripts, loads and forms', async () => {
  const alternative = [
    '--b',
    'Content-Type: text/plain; charset=utf-8',
    '',
    'The text part.',
    '--b',
    'Content-Type: text/html; charset=utf-8',
    '',
    '<p>The <b>HTML</b> part.</p><script>alert(1)</script>',
    '--b--',
  ].join('\r\n');
  await send('html-parts', alternative, 'multipart/alternative; boundary=b');
  const [session] = (await json(`/api/sessions?messageId=${encodeURIComponent('<html-parts@attacker.test>')}`)).body;
  const id = session.deliveries[0].id;

  assert.deepEqual((await json(`/api/messages/${id}/parts`)).body, { text: 'The text part.', html: true, attachments: [] });
  const page = await get(`/api/messages/${id}/html`);
  assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
  const policy = page.headers.get('content-security-policy')!;
  for (const directive of ["default-src 'none'", 'img-src data:', "form-action 'none'", 'sandbox']) assert.ok(policy.split('; ').includes(directive), directive);
  assert.doesNotMatch(policy, /script-src|allow-scripts|allow-same-origin/);
  assert.match(await page.text(), /<p>The <b>HTML<\/b> part\.<\/p>/);
  // The raw message is never a page either.
  const raw = await get(`/api/messages/${id}/raw`);
  assert.equal(raw.headers.get('content-type'), 'message/rfc822');
  assert.match(raw.headers.get('content-security-policy')!, /sandbox/);

  await send('text-only');
  const [plain] = (await json(`/api/sessions?messageId=${encodeURIComponent('<text-only@attacker.test>')}`)).body;
  assert.equal((await json(`/api/messages/${plain.deliveries[0].id}/html`)).status, 404);
});

test("the console's files: served by plain name, with a policy that runs only the console's own scripts", async () => {
  const page = await get('/');
  assert.equal(page.status, 200);
  assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
  const policy = page.headers.get('content-security-policy')!;
  assert.match(policy, /default-src 'none'/);
  assert.match(policy, /script-src 'self'/);
  assert.match(policy, /frame-ancestors 'none'/);
  assert.match(await page.text(), /<script type="module" src="\/console\/console\.js">/);
  assert.equal((await get('/console/console.js')).headers.get('content-type'), 'text/javascript; charset=utf-8');
  for (const path of ['/console/nothing.js', '/console/..%2Fapi.ts', '/console/%2e%2e%2fapi.ts', '/console/API.TS']) {
    assert.equal((await get(path)).status, 404, path);
  }
});

test("the lab DNS's recent queries, through the API; a clear error when its control endpoint does not answer", async () => {
  await send('dns-log');
  const { status, body } = await json('/api/dns/queries?limit=500&name=_dmarc.attacker.test');
  assert.equal(status, 200);
  assert.ok(body.queries.length >= 1);
  assert.ok(body.queries.every((q: { name: string }) => q.name === '_dmarc.attacker.test'));
  assert.equal((await json('/api/dns/queries?limit=5000')).status, 400);

  // An API whose DNS control endpoint is a closed port.
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((resolve) => closed.close(resolve));
  const dir = join(lab.dataDir, 'no-dns');
  const server = await startApi(
    { host: '127.0.0.1', port: 0 },
    {
      instance: loadInstance(new URL('../instances/receiver.yaml', import.meta.url).pathname),
      maildir: new Maildir(join(dir, 'mail')),
      sessions: new SessionStore(join(dir, 'sessions'), 10, new WriteAheadLog(join(dir, 'wal'), pino({ level: 'silent' }))),
      queue: new Queue(join(dir, 'queue')),
      dnsControl: { host: '127.0.0.1', port },
    },
  );
  try {
    const response = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/api/dns/queries`);
    assert.equal(response.status, 502);
    assert.equal((await response.json()).error, `the lab DNS control endpoint at 127.0.0.1:${port} does not answer (ECONNREFUSED)`);
  } finally {
    server.close();
  }
});

test('the event stream: a new session arrives as an event; the number of streams is bounded', async () => {
  const controller = new AbortController();
  const stream = await get('/api/events').then(async (response) => {
    assert.equal(response.headers.get('content-type'), 'text/event-stream');
    return response.body!.pipeThrough(new TextDecoderStream()).getReader();
  });
  let text = '';
  const read = async (until: RegExp) => {
    for (const deadline = Date.now() + 10_000; !until.test(text) && Date.now() < deadline; ) text += (await stream.read()).value ?? '';
    return text;
  };
  assert.match(await read(/retry: \d+/), /^retry: 2000\n\n/);
  await send('live-event');
  const events = await read(/"subject":"live-event"/);
  const event = /event: session\ndata: (.+)\n\n/.exec(events.slice(events.lastIndexOf('event: session')))!;
  assert.equal(JSON.parse(event[1]).transactions[0].subject, 'live-event');

  // 16 at once; the 17th is told to come back later.
  const others = await Promise.all(Array.from({ length: 15 }, () => fetch(`http://${receiver.host}:${receiver.apiPort}/api/events`, { signal: controller.signal })));
  assert.ok(others.every((r) => r.status === 200));
  assert.equal((await get('/api/events')).status, 503);
  controller.abort();
  await stream.cancel();
  // Closed streams leave room again.
  await waitFor('a free stream', async () => {
    const response = await get('/api/events');
    await response.body?.cancel();
    return response.status === 200 ? true : undefined;
  });
});
