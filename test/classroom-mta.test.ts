// The MTA in classroom mode, over real sockets: logins in a browser's way
// (cookie, CSRF token, throttle), what each student may see of the
// receiver's sessions, mailboxes, messages and events, and what the teacher
// sees; the receiver as MX of the students' domains; and a wrong class file,
// which stops the MTA. Every refusal is asserted with its reason.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issueCredentials, loadClass } from '../services/lib/classroom.ts';
import { instanceFile } from './support/processes.ts';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';
import { waitFor } from './support/mail.ts';
import { RawSmtp } from './support/smtp.ts';

const classDir = mkdtempSync(join(tmpdir(), 'class-mta-'));
writeFileSync(join(classDir, 'class.yaml'), 'name: MTA test class\nstudents: [ana, ben]\n');
const credentials = issueCredentials(classDir).issued;
const [ana, ben, teacher] = ['ana', 'ben', 'teacher'].map((n) => credentials.get(n)!);

let lab: TestLab;
let receiver: LabMta;
let sender: LabMta;

before(async () => {
  lab = await startLab(undefined, { classroom: loadClass(classDir) });
  receiver = await lab.start('receiver');
  sender = await lab.start('sender');
});
after(async () => {
  await lab.close();
  rmSync(classDir, { recursive: true, force: true });
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  body: any;
}

interface Call {
  method?: string;
  bearer?: string;
  cookie?: string;
  csrf?: string;
  origin?: string;
  json?: unknown;
  contentType?: string;
  from?: string; // the client's address
}

// One request, as a browser or a tool would send it, from a loopback address of the test's choosing.
function call(mta: LabMta, path: string, c: Call = {}): Promise<Answer> {
  const data = c.json === undefined ? undefined : Buffer.from(JSON.stringify(c.json));
  return new Promise((resolve, reject) => {
    const req = request(
      { host: mta.host, port: mta.apiPort, path, method: c.method ?? (data ? 'POST' : 'GET'), localAddress: c.from ?? '127.0.0.1', timeout: 10_000 },
      (response) => {
        let text = '';
        response.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
        response.on('end', () => {
          let body: unknown;
          try {
            body = JSON.parse(text);
          } catch {
            body = text;
          }
          resolve({ status: response.statusCode!, headers: response.headers, text, body });
        });
      },
    );
    if (c.bearer) req.setHeader('authorization', `Bearer ${c.bearer}`);
    if (c.cookie) req.setHeader('cookie', c.cookie);
    if (c.csrf) req.setHeader('x-csrf-token', c.csrf);
    if (c.origin) req.setHeader('origin', c.origin);
    if (data) {
      req.setHeader('content-type', c.contentType ?? 'application/json');
      req.setHeader('content-length', data.length);
    }
    req.on('timeout', () => req.destroy(new Error(`${path}: no answer within 10 s`)));
    req.on('error', reject);
    req.end(data);
  });
}

// A browser's login: the cookie it would keep, and the CSRF token.
async function login(mta: LabMta, credential: string, from?: string): Promise<{ cookie: string; csrf: string; answer: Answer }> {
  const answer = await call(mta, '/api/login', { json: { credential }, from });
  assert.equal(answer.status, 200, answer.text);
  const cookie = String(answer.headers['set-cookie']).split(';')[0];
  return { cookie, csrf: answer.body.csrf, answer };
}

const refused = (answer: Answer, status: number, reason: RegExp) => {
  assert.equal(answer.status, status, answer.text);
  assert.match(answer.body.error, reason);
};

// One SMTP session to the receiver's MX from the attacker's address: one
// message per recipient list, each its own transaction. Returns the replies.
async function mx(recipientLists: string[][], subject: string): Promise<number[]> {
  const { smtp } = await RawSmtp.open(receiver.host, receiver.mxPort, '127.0.2.66');
  const codes: number[] = [];
  await smtp.command('EHLO mta.attacker.test');
  for (const [i, recipients] of recipientLists.entries()) {
    await smtp.command('MAIL FROM:<mallory@attacker.test>');
    const accepted = [];
    for (const r of recipients) {
      const reply = await smtp.command(`RCPT TO:<${r}>`);
      codes.push(reply.code);
      if (reply.code === 250) accepted.push(r);
    }
    if (accepted.length === 0) {
      await smtp.command('RSET');
      continue;
    }
    await smtp.command('DATA');
    const reply = await smtp.command(`From: mallory@attacker.test\r\nTo: ${accepted.join(', ')}\r\nSubject: ${subject}-${i}\r\nMessage-ID: <${subject}-${i}@attacker.test>\r\n\r\nHello.\r\n.`);
    codes.push(reply.code);
  }
  await smtp.command('QUIT');
  await smtp.closed;
  return codes;
}

test('a browser logs in: an HttpOnly, SameSite=Strict cookie, the CSRF token, /api/me; the credential is in no URL and no answer; logout ends the login', async () => {
  // What must load before a login, does.
  assert.equal((await call(receiver, '/')).status, 200);
  assert.equal((await call(receiver, '/console/console.js')).status, 200);
  assert.equal((await call(receiver, '/api/health')).body.status, 'ok');
  refused(await call(receiver, '/api/me'), 401, /^log in: /);
  refused(await call(receiver, '/api/sessions'), 401, /^log in: /);

  const { cookie, csrf, answer } = await login(receiver, ana);
  assert.match(String(answer.headers['set-cookie']), /^lab_session_receiver=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/; Max-Age=\d+$/);
  assert.deepEqual(answer.body, { role: 'student', student: { name: 'ana', domain: 'ana.test', address: 'ana@ana.test' }, class: 'MTA test class', csrf });
  assert.match(csrf, /^[A-Za-z0-9_-]{43}$/);
  assert.ok(!answer.text.includes(ana) && !JSON.stringify(answer.headers).includes(ana), 'the answer does not repeat the credential');
  assert.equal(answer.headers['cache-control'], 'no-store');

  const me = await call(receiver, '/api/me', { cookie });
  assert.equal(me.status, 200);
  assert.deepEqual(me.body, answer.body);
  assert.ok(!me.text.includes(ana));
  // A tool: the same identity with its credential, and no CSRF token (there is no login).
  assert.deepEqual((await call(receiver, '/api/me', { bearer: ana })).body, { role: 'student', student: answer.body.student, class: 'MTA test class' });
  assert.deepEqual((await call(receiver, '/api/me', { bearer: teacher })).body, { role: 'teacher', class: 'MTA test class' });

  // Logins come as JSON from the console's own page or a tool, never from another origin.
  refused(await call(receiver, '/api/login', { json: { credential: ana }, contentType: 'text/plain' }), 415, /JSON/);
  refused(await call(receiver, '/api/login', { json: { credential: ana }, origin: 'http://evil.example' }), 403, /other origins \(http:\/\/evil\.example\)/);
  refused(await call(receiver, '/api/login', { json: {} }), 400, /credential/);

  // A cookie of the sender is no login at the receiver, even under the receiver's name.
  const elsewhere = await login(sender, ana);
  assert.match(elsewhere.cookie, /^lab_session_sender=/);
  refused(await call(receiver, '/api/me', { cookie: elsewhere.cookie.replace('_sender=', '_receiver=') }), 401, /login has ended/);
  // Both consoles at one host (as under Docker, at 127.0.0.1): the browser sends both cookies, and each login holds.
  assert.equal((await call(receiver, '/api/me', { cookie: `${elsewhere.cookie}; ${cookie}` })).status, 200);
  assert.equal((await call(sender, '/api/me', { cookie: `${elsewhere.cookie}; ${cookie}` })).status, 200);

  // Logout is a change: it needs the token.
  refused(await call(receiver, '/api/logout', { method: 'POST', cookie }), 403, /X-CSRF-Token/);
  const out = await call(receiver, '/api/logout', { method: 'POST', cookie, csrf });
  assert.equal(out.status, 200);
  assert.match(String(out.headers['set-cookie']), /^lab_session_receiver=; HttpOnly; SameSite=Strict; Path=\/; Max-Age=0$/);
  // The cookie replayed after the logout is nobody's.
  refused(await call(receiver, '/api/me', { cookie }), 401, /login has ended \(logged out/);
  refused(await call(receiver, '/api/sessions', { cookie }), 401, /login has ended/);
  refused(await call(receiver, '/api/logout', { method: 'POST', cookie, csrf }), 401, /login has ended/);
  refused(await call(receiver, '/api/logout', { method: 'POST', bearer: ana }), 400, /nothing to log out/);
});

test('a change with the login cookie needs the login\'s CSRF token, and no page of another origin may make one', async () => {
  const { cookie, csrf } = await login(sender, ben);
  const other = await login(sender, ana);
  const make = (c: Call) => call(sender, '/api/classroom/dkim', { json: { selector: 'csrf', algorithm: 'ed25519' }, cookie, ...c });
  refused(await make({}), 403, /needs the header X-CSRF-Token/);
  refused(await make({ csrf: 'x'.repeat(43) }), 403, /X-CSRF-Token/);
  refused(await make({ csrf: other.csrf }), 403, /X-CSRF-Token/);
  refused(await make({ csrf, origin: 'http://evil.example' }), 403, /other origins/);
  refused(await make({ csrf, contentType: 'text/plain' }), 415, /JSON/);
  const made = await make({ csrf });
  assert.equal(made.status, 200, made.text);
  assert.equal(made.body.name, 'csrf._domainkey.ben.test');
  // The console's own page sends its own origin: taken.
  assert.equal((await make({ csrf, origin: `http://${sender.host}:${sender.apiPort}` })).status, 200);
  // A tool with its credential needs no token; reading needs none either.
  assert.equal((await call(sender, '/api/classroom/dkim', { json: { selector: 'csrf', algorithm: 'ed25519' }, bearer: ben })).status, 200);
  assert.equal((await call(sender, '/api/classroom/dkim', { cookie })).status, 200);
});

test('ten wrong credentials from one address: then 429 with Retry-After for every credential from it, the right one too; other addresses go on', async () => {
  const from = '127.0.0.77';
  for (let i = 1; i <= 10; i++) refused(await call(receiver, '/api/login', { json: { credential: `ana-${'x'.repeat(20)}` }, from }), 401, /no one's/);
  const locked = await call(receiver, '/api/login', { json: { credential: ana }, from });
  refused(locked, 429, /too many wrong credentials from 127\.0\.0\.77: try again in \d+ s/);
  const wait = Number(locked.headers['retry-after']);
  assert.ok(wait > 290 && wait <= 300, `Retry-After ${wait}`);
  refused(await call(receiver, '/api/sessions', { bearer: teacher, from }), 429, /too many wrong credentials/);
  // Guessing with Bearer counts the same: another address, ten wrong ones.
  const other = '127.0.0.78';
  for (let i = 1; i <= 10; i++) refused(await call(receiver, '/api/me', { bearer: `teacher-${'y'.repeat(20)}`, from: other }), 401, /no one's/);
  refused(await call(receiver, '/api/me', { bearer: teacher, from: other }), 429, /try again/);
  assert.equal((await call(receiver, '/api/me', { bearer: ana, from: '127.0.0.79' })).status, 200);
});

test('the receiver is the MX of every student\'s domain: <name>@ and postmaster@, nothing else there', async () => {
  assert.deepEqual(await mx([['ana@ana.test', 'postmaster@ana.test', 'nobody@ana.test']], 'mx-check'), [250, 250, 550, 250]);
  assert.deepEqual(await mx([['ben@ben.test', 'ana@ben.test', 'x@other.test']], 'mx-check-ben'), [250, 550, 550, 250]);
});

test('a student sees only the sessions, mailboxes and messages at her domain; everything of another is a 403 that says whose; the teacher sees both', async () => {
  // One session with ben's message first, then ana's (as the sender's delivery pool does); one with ben's alone; one for the lab.
  await mx([['ben@ben.test'], ['ana@ana.test']], 'shared');
  await mx([['ben@ben.test']], 'bens');
  await mx([['alice@receiver.test']], 'labs');
  const all = await waitFor('the sessions', async () => {
    const list = (await call(receiver, '/api/sessions', { bearer: teacher })).body;
    return list.some((s: any) => s.messageIds.includes('<labs-0@attacker.test>')) ? list : undefined;
  });
  const id = (messageId: string) => all.find((s: any) => s.messageIds.includes(messageId)).id;
  const [shared, bens, labs] = [id('<shared-0@attacker.test>'), id('<bens-0@attacker.test>'), id('<labs-0@attacker.test>')];
  const { cookie } = await login(receiver, ana);
  const asAna = (path: string) => call(receiver, path, { cookie });

  // The list: her part of each session, and only those with mail for her.
  const list = (await asAna('/api/sessions')).body;
  assert.ok(list.length >= 2);
  assert.ok(list.every((s: any) => s.recipients.every((r: string) => r.endsWith('@ana.test'))), JSON.stringify(list));
  assert.ok(!list.some((s: any) => [bens, labs].includes(s.id)));
  const mine = list.find((s: any) => s.id === shared);
  assert.deepEqual(mine.messageIds, ['<shared-1@attacker.test>']);
  assert.ok(mine.deliveries.every((d: any) => d.mailbox === 'ana@ana.test'));
  assert.deepEqual((await asAna('/api/sessions?recipient=ben@ben.test')).body, []);
  assert.deepEqual((await asAna(`/api/sessions?messageId=${encodeURIComponent('<shared-0@attacker.test>')}`)).body, []);

  // The shared session: her transaction, and the transcript without ben's.
  const record = (await asAna(`/api/sessions/${shared}`)).body;
  assert.deepEqual(record.transactions.map((t: any) => t.message.subject), ['shared-1']);
  const transcript = record.transcript.map((l: any) => l.line).join('\n');
  assert.doesNotMatch(transcript, /ben/);
  assert.match(transcript, /lines of a transaction that is not yours left out/);
  assert.match(transcript, /RCPT TO:<ana@ana\.test>/);
  const full = (await call(receiver, `/api/sessions/${shared}`, { bearer: teacher })).body;
  assert.deepEqual(full.transactions.map((t: any) => t.message.subject), ['shared-0', 'shared-1']);

  // Pages: her sessions only, her part of each.
  const page = (await asAna('/api/sessions/page?limit=200')).body;
  assert.equal(page.total, list.length);
  assert.ok(page.items.every((row: any) => row.transactions.every((t: any) => t.rcptTo.every((r: string) => r.endsWith('@ana.test')))));

  // Another's session, message, mailbox: 403, naming whose.
  const benMessage = full.transactions[0].deliveries[0].id;
  const anaMessage = full.transactions[1].deliveries[0].id;
  refused(await asAna(`/api/sessions/${bens}`), 403, /^session \S+ is not yours: it carries mail for ben \(ben\.test\); you are ana \(ana\.test\)$/);
  refused(await asAna(`/api/sessions/${labs}`), 403, /carries mail for the lab \(receiver\.test\); you are ana/);
  for (const tail of ['', '/raw', '/parts', '/html']) {
    refused(await asAna(`/api/messages/${encodeURIComponent(benMessage)}${tail}`), 403, /^message \S+ is in ben@ben\.test, which is ben's mailbox; you are ana \(ana\.test\)$/);
  }
  refused(await asAna('/api/mailboxes/ben@ben.test/INBOX'), 403, /^ben@ben\.test is ben's mailbox; you are ana \(ana\.test\)$/);
  refused(await asAna('/api/mailboxes/alice@receiver.test/Junk'), 403, /alice@receiver\.test is the lab's \(the teacher's\) mailbox; you are ana/);
  // Ids that try to climb out, or to look like hers.
  refused(await asAna(`/api/mailboxes/${encodeURIComponent('../../ben.test/ben@ben.test')}/INBOX`), 403, /ben's mailbox/);
  refused(await asAna(`/api/mailboxes/${encodeURIComponent('ana@ana.test@ben.test')}/INBOX`), 403, /ben's mailbox/);
  refused(await asAna(`/api/mailboxes/${encodeURIComponent('ana@ana.test.ben.test')}/INBOX`), 403, /ben's mailbox/);
  refused(await asAna(`/api/messages/${encodeURIComponent('../ben.test/ben/new/x')}`), 404, /no message/);
  refused(await asAna(`/api/sessions/${encodeURIComponent('../sessions/x')}`), 404, /no session/);
  // Her own: the message, its raw source, her mailboxes (and only hers).
  assert.equal((await asAna(`/api/messages/${encodeURIComponent(anaMessage)}`)).body.mailbox, 'ana@ana.test');
  assert.match((await asAna(`/api/messages/${encodeURIComponent(anaMessage)}/raw`)).text, /Subject: shared-1/);
  assert.deepEqual((await asAna('/api/mailboxes')).body.map((m: any) => m.mailbox).sort(), ['ana@ana.test', 'postmaster@ana.test']);
  const folder = (await asAna('/api/mailboxes/ana@ana.test/INBOX')).body;
  assert.ok(folder.items.some((m: any) => m.subject === 'shared-1'));
  // A student who has had no mail yet sees her two mailboxes, empty.
  assert.deepEqual((await call(receiver, '/api/mailboxes', { bearer: ben })).body.map((m: any) => m.mailbox).sort(), ['ben@ben.test', 'postmaster@ben.test']);

  // Another's zone, the lab's zones, and the teacher's door: 403 with the reason.
  refused(await asAna('/api/zone?domain=ben.test'), 403, /^ben\.test is ben's zone; you are ana \(ana\.test\)$/);
  const anaLogin = await login(receiver, ana);
  refused(await call(receiver, '/api/zone?domain=ben.test', { method: 'PUT', ...anaLogin, json: { records: '@ 300 TXT "v=spf1 +all"\n' } }), 403, /^ben\.test is ben's zone; you are ana/);
  refused(await call(receiver, '/api/zone/records?domain=ben.test', { ...anaLogin, json: { add: ['@ 300 TXT "v=spf1 +all"'] } }), 403, /^ben\.test is ben's zone; you are ana/);
  refused(await call(receiver, `/api/zone?domain=${encodeURIComponent('ana.test/../ben.test')}`, { bearer: ana }), 403, /you are ana/);
  const bensZone = await call(receiver, '/api/zone?domain=ben.test', { bearer: teacher });
  assert.equal(bensZone.status, 200, bensZone.text);
  assert.equal(bensZone.body.records.trim(), '', "ben's zone is as it was");
  refused(await asAna('/api/zone?domain=sender.test'), 403, /^sender\.test is the lab's \(the teacher's\) zone; you are ana/);
  refused(await call(receiver, '/api/zone', { bearer: teacher }), 400, /\?domain=/);
  refused(await call(receiver, '/api/zone?domain=sender.test', { bearer: teacher }), 400, /no student's domain/);
  refused(await call(receiver, '/api/direct', { json: {}, bearer: ana }), 403, /^direct sending \(POST \/api\/direct\) is the teacher's; you are ana/);

  // The class as each sees it; the lab DNS's query log as the DNS lets each see it.
  assert.deepEqual((await asAna('/api/classroom')).body, { name: 'MTA test class', students: [{ name: 'ana', domain: 'ana.test', address: 'ana@ana.test' }] });
  assert.deepEqual((await call(receiver, '/api/classroom', { bearer: teacher })).body.students.map((s: any) => s.name), ['ana', 'ben']);
  const resolver = new Resolver({ timeout: 2000, tries: 1 });
  resolver.setServers([`127.0.2.53:${lab.dnsPort}`]);
  await resolver.resolveSoa('ana.test');
  const queries = (await asAna('/api/dns/queries')).body.queries;
  assert.ok(queries.length >= 1);
  assert.ok(queries.every((q: any) => q.name === 'ana.test' || q.name.endsWith('.ana.test')), JSON.stringify(queries));
  refused(await asAna('/api/dns/queries?name=_dmarc.attacker.test'), 403, /not in your zone; you are ana \(ana\.test\)/);
  assert.ok((await call(receiver, '/api/dns/queries?name=_dmarc.attacker.test', { bearer: teacher })).body.queries.length >= 1);

  // The teacher sees both students' and the lab's.
  assert.equal((await call(receiver, `/api/sessions/${bens}`, { bearer: teacher })).body.id, bens);
  assert.equal((await call(receiver, `/api/messages/${encodeURIComponent(benMessage)}`, { bearer: teacher })).body.mailbox, 'ben@ben.test');
  assert.equal((await call(receiver, `/api/messages/${encodeURIComponent(anaMessage)}/raw`, { bearer: teacher })).status, 200);
  const mailboxes = (await call(receiver, '/api/mailboxes', { bearer: teacher })).body.map((m: any) => m.mailbox);
  for (const m of ['ana@ana.test', 'ben@ben.test', 'alice@receiver.test']) assert.ok(mailboxes.includes(m), m);
  assert.equal((await call(receiver, '/api/sessions/page?limit=200', { bearer: teacher })).body.total, all.length);
});

test("the event stream carries a student's part of her sessions, nothing of another's, and ends with her login", async () => {
  const { cookie, csrf } = await login(receiver, ana);
  const open = (headers: Record<string, string>) =>
    new Promise<{ read: (until: RegExp) => Promise<string>; ended: Promise<void>; close: () => void }>((resolve, reject) => {
      const req = request({ host: receiver.host, port: receiver.apiPort, path: '/api/events', headers }, (response) => {
        assert.equal(response.statusCode, 200);
        let text = '';
        response.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
        const ended = new Promise<void>((done) => response.once('end', () => done()));
        resolve({
          read: async (until) => (await waitFor(`${until} in the stream`, () => (until.test(text) ? text : undefined))),
          ended,
          close: () => req.destroy(),
        });
      });
      req.on('error', reject).end();
    });
  const anas = await open({ cookie });
  const teachers = await open({ authorization: `Bearer ${teacher}` });
  try {
    await mx([['ben@ben.test'], ['ana@ana.test']], 'live');
    await mx([['ben@ben.test']], 'live-ben');
    const seen = await teachers.read(/live-ben-0/);
    assert.match(seen, /live-0/);
    const hers = await anas.read(/live-1/);
    assert.doesNotMatch(hers, /ben/, 'ana\'s stream says nothing of ben\'s mail');
    // Her logout ends her stream.
    assert.equal((await call(receiver, '/api/logout', { method: 'POST', cookie, csrf })).status, 200);
    await Promise.race([anas.ended, new Promise((_, reject) => setTimeout(() => reject(new Error('the stream outlived the login')), 5000))]);
  } finally {
    anas.close();
    teachers.close();
  }
});

test('without a credential nothing but the console, the health check and the login; a wrong class file stops the MTA with file:line', async () => {
  for (const path of ['/api/sessions/page', '/api/mailboxes', '/api/queue', '/api/events', '/api/dns/queries', '/api/zone', '/api/classroom']) {
    refused(await call(receiver, path), 401, /^log in: /);
  }
  const dir = mkdtempSync(join(tmpdir(), 'class-bad-'));
  try {
    writeFileSync(join(dir, 'class.yaml'), 'name: Bad\nstudents: [ana, Ana!]\n');
    writeFileSync(join(dir, 'credentials.json'), '{"version":1,"hashes":{}}');
    const { file } = await instanceFile('receiver', '127.0.0.1', dir);
    const child = spawn(process.execPath, ['services/mta/main.ts'], {
      cwd: new URL('../', import.meta.url).pathname,
      env: { ...process.env, LOG_LEVEL: 'silent', MTA_CONFIG: file, MTA_DATA_DIR: join(dir, 'data'), LAB_CLASS_DIR: dir },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let said = '';
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (said += chunk));
    const code = await new Promise((resolve) => child.once('exit', resolve));
    assert.equal(code, 2);
    assert.match(said, new RegExp(`configuration error: ${dir}/class\\.yaml:2: students\\[1\\]: expected a student's name`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
