// A student's mail in classroom mode, over real sockets: she publishes her
// records through the console's API (which hands them to the lab DNS with
// her credential), makes a DKIM key at the sender and sends as any address
// at her domain; the sender signs with her key from the next message on, and
// dkimpy, another implementation, verifies the signature with the key it
// reads from her zone. What is not hers is refused with 553/550/535, and
// the queue shows her only her own entries.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issueCredentials, loadClass } from '../services/lib/classroom.ts';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';
import { arrival, header, waitFor } from './support/mail.ts';
import { dkimpyVerify } from './support/dkimpy.ts';
import { RawSmtp, type Reply } from './support/smtp.ts';
import { requireTool } from './support/tools.ts';

const classDir = mkdtempSync(join(tmpdir(), 'class-submission-'));
writeFileSync(join(classDir, 'class.yaml'), 'name: Submission test class\nstudents: [ana, ben]\n');
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

async function call(mta: LabMta, path: string, init: { method?: string; bearer?: string; cookie?: string; csrf?: string; json?: unknown } = {}) {
  const response = await fetch(`http://${mta.host}:${mta.apiPort}${path}`, {
    method: init.method ?? (init.json === undefined ? 'GET' : 'POST'),
    headers: {
      ...(init.bearer && { authorization: `Bearer ${init.bearer}` }),
      ...(init.cookie && { cookie: init.cookie }),
      ...(init.csrf && { 'x-csrf-token': init.csrf }),
      ...(init.json !== undefined && { 'content-type': 'application/json' }),
    },
    body: init.json === undefined ? undefined : JSON.stringify(init.json),
  });
  const text = await response.text();
  return { status: response.status, text, body: JSON.parse(text) };
}

async function login(mta: LabMta, credential: string): Promise<{ cookie: string; csrf: string }> {
  const response = await fetch(`http://${mta.host}:${mta.apiPort}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ credential }) });
  assert.equal(response.status, 200);
  return { cookie: response.headers.get('set-cookie')!.split(';')[0], csrf: (await response.json()).csrf };
}

// One submission with AUTH PLAIN; the first refusal, or the reply to the message.
async function submit(s: { user: string; password: string; mailFrom: string; to: string; from?: string; subject: string; client?: string }): Promise<Reply> {
  const { smtp } = await RawSmtp.open(sender.host, sender.submissionPort, s.client ?? '127.0.0.1');
  try {
    const auth = Buffer.from(`\0${s.user}\0${s.password}`).toString('base64');
    for (const line of ['EHLO laptop.example', `AUTH PLAIN ${auth}`, `MAIL FROM:<${s.mailFrom}>`, `RCPT TO:<${s.to}>`, 'DATA']) {
      const reply = await smtp.command(line);
      if (reply.code >= 400) return reply;
    }
    return await smtp.command(`From: <${s.from ?? s.mailFrom}>\r\nTo: <${s.to}>\r\nSubject: ${s.subject}\r\nDate: ${new Date().toUTCString()}\r\n\r\nHello.\r\n.`);
  } finally {
    await smtp.command('QUIT').catch(() => undefined);
  }
}

const signatures = (text: string) => [...text.slice(0, text.indexOf('\r\n\r\n')).matchAll(/^DKIM-Signature:.*(?:\r\n[ \t].*)*/gim)].map((m) => m[0].replace(/\s+/g, ''));

test('a student publishes her records through the console API, makes a DKIM key, and her mail from any address at her domain is signed with it from the next message on: dkimpy verifies it with the key in her zone, and the receiver says dmarc=pass', async (t) => {
  // Her zone, through the receiver's console API with her login: MX, SPF, DMARC.
  const atReceiver = await login(receiver, ana);
  const zone = await call(receiver, '/api/zone', { ...atReceiver });
  assert.equal(zone.status, 200, zone.text);
  assert.equal(zone.body.domain, 'ana.test');
  const put = await call(receiver, '/api/zone', { method: 'PUT', ...atReceiver, json: { records: '@ 300 MX 10 mx.receiver.test.\n@ 300 TXT "v=spf1 ip4:192.0.2.10 -all"\n_dmarc 300 TXT "v=DMARC1; p=reject"\n', serial: zone.body.serial } });
  assert.equal(put.status, 200, put.text);
  assert.equal(put.body.serial, zone.body.serial + 1);
  // The DNS's refusals come back as they are.
  const stale = await call(receiver, '/api/zone', { method: 'PUT', ...atReceiver, json: { records: '', serial: zone.body.serial } });
  assert.equal(stale.status, 409, stale.text);
  const bad = await call(receiver, '/api/zone/records', { ...atReceiver, json: { add: ['@ 300 CNAME elsewhere.test.'] } });
  assert.equal(bad.status, 400, bad.text);
  assert.match(bad.body.error, /line 1/);

  // Before she has a key, her mail goes out unsigned.
  let reply = await submit({ user: 'ana@ana.test', password: ana, mailFrom: 'hello@ana.test', to: 'ana@ana.test', subject: 'before-the-key' });
  assert.equal(reply.code, 250, reply.text);
  const unsigned = await arrival(receiver, 'ana@ana.test', 'Subject: before-the-key');
  assert.deepEqual(signatures(unsigned), []);

  // A key, made at the sender with her login: the record to publish, never the private key.
  const atSender = await login(sender, ana);
  const key = await call(sender, '/api/classroom/dkim', { ...atSender, json: { selector: 's1', algorithm: 'rsa-2048' } });
  assert.equal(key.status, 200, key.text);
  assert.deepEqual(Object.keys(key.body).sort(), ['algorithm', 'domain', 'name', 'record', 'selector', 'zoneLine']);
  assert.equal(key.body.name, 's1._domainkey.ana.test');
  assert.match(key.body.record, /^v=DKIM1; k=rsa; p=[A-Za-z0-9+/]{300,}={0,2}$/);
  assert.equal(key.body.zoneLine, `s1._domainkey 300 TXT "${key.body.record}"`);
  const file = join(lab.dataDir, 'sender', 'classroom', 'dkim', 'ana.test', 's1.pem');
  assert.equal(statSync(file).mode & 0o777, 0o600);
  const listed = await call(sender, '/api/classroom/dkim', { bearer: ana });
  assert.deepEqual(listed.body, [key.body]);
  assert.doesNotMatch(listed.text, /PRIVATE/);
  // An Ed25519 key for a second selector: she has both from now on.
  const ed = await call(sender, '/api/classroom/dkim', { bearer: ana, json: { selector: 's2', algorithm: 'ed25519' } });
  assert.match(ed.body.record, /^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);

  // Publishing is her work: the key records, in one change.
  const add = await call(receiver, '/api/zone/records', { ...atReceiver, json: { add: [key.body.zoneLine, ed.body.zoneLine] } });
  assert.equal(add.status, 200, add.text);

  reply = await submit({ user: 'ana@ana.test', password: ana, mailFrom: 'news@ana.test', to: 'ana@ana.test', subject: 'with-her-key' });
  assert.equal(reply.code, 250, reply.text);
  const signed = await arrival(receiver, 'ana@ana.test', 'Subject: with-her-key');
  assert.deepEqual(signatures(signed).map((s) => [/;d=([^;]+)/.exec(s)?.[1], /;s=([^;]+)/.exec(s)?.[1], /a=([^;]+)/.exec(s)?.[1]]).sort(), [['ana.test', 's1', 'rsa-sha256'], ['ana.test', 's2', 'ed25519-sha256']]);
  assert.match(header(signed, 'Authentication-Results'), /dkim=pass header\.i=@ana\.test header\.s=s1/);
  assert.match(header(signed, 'Authentication-Results'), /dmarc=pass/);
  // Her view of it at the receiver.
  const [summary] = (await call(receiver, `/api/sessions?messageId=${encodeURIComponent(/^Message-ID: (.*)$/im.exec(signed)![1].trim())}`, { bearer: ana })).body;
  const record = (await call(receiver, `/api/sessions/${summary.id}`, { bearer: ana })).body;
  assert.equal(record.transactions[0].checks.dmarc.result, 'pass');

  if (!requireTool(t, '/usr/bin/dkimverify', 'python3-dkim')) return;
  assert.deepEqual(await dkimpyVerify(signed, `127.0.2.53:${lab.dnsPort}`), [true, true]);
  assert.deepEqual(await dkimpyVerify(signed.replace('Subject: with-her-key', 'Subject: with-his-key'), `127.0.2.53:${lab.dnsPort}`), [false, false]);
});

test("a student sends only as her own domain: another student's or the lab's is 553 or 550 naming hers; the teacher's credential and another's log in nowhere", async () => {
  const as = (mailFrom: string, from?: string, client?: string) => submit({ user: 'ana@ana.test', password: ana, mailFrom, to: 'ana@ana.test', from, subject: 'not-hers', client });
  for (const other of ['ben@ben.test', 'alice@sender.test', 'ana@ana.test.ben.test', 'ana@sub.ana.test']) {
    const reply = await as(other);
    assert.equal(reply.code, 553, reply.text);
    assert.match(reply.text, new RegExp(`^553 5\\.7\\.1 ana@ana\\.test may not send as ${other.replace(/\./g, '\\.')}: only as an address at ana\\.test, the domain of student ana$`));
  }
  const from = await as('ana@ana.test', 'ben@ben.test');
  assert.equal(from.code, 550, from.text);
  assert.match(from.text, /^550 5\.7\.1 ana@ana\.test may not send as From: <ben@ben\.test>: only as an address at ana\.test/);

  // One wrong login per client address: the submission throttle stays out of it.
  const auth = async (user: string, password: string, client: string) => {
    const { smtp } = await RawSmtp.open(sender.host, sender.submissionPort, client);
    try {
      await smtp.command('EHLO laptop.example');
      return await smtp.command(`AUTH PLAIN ${Buffer.from(`\0${user}\0${password}`).toString('base64')}`);
    } finally {
      smtp.end();
    }
  };
  for (const [user, password, client] of [
    ['ana@ana.test', teacher, '127.0.0.11'],
    ['teacher', teacher, '127.0.0.12'],
    ['teacher@ana.test', teacher, '127.0.0.13'],
    ['ana@ana.test', ben, '127.0.0.14'],
    ['ben@ben.test', ana, '127.0.0.15'],
  ]) {
    const reply = await auth(user, password, client);
    assert.equal(reply.code, 535, `${user}: ${reply.text}`);
  }
  assert.equal((await auth('ben@ben.test', ben, '127.0.0.16')).code, 235);
  assert.equal((await auth('ANA@ana.test', ana, '127.0.0.16')).code, 235);
  // Students log in at the sender only.
  const { smtp } = await RawSmtp.open(receiver.host, receiver.submissionPort, '127.0.0.17');
  await smtp.command('EHLO laptop.example');
  assert.equal((await smtp.command(`AUTH PLAIN ${Buffer.from(`\0ana@ana.test\0${ana}`).toString('base64')}`)).code, 535);
  smtp.end();
});

test("a student's DKIM keys and queue entries are hers: another's are 403 with whose they are; the teacher sees and makes any", async () => {
  const refused = (answer: { status: number; body: any }, reason: RegExp) => {
    assert.equal(answer.status, 403, JSON.stringify(answer.body));
    assert.match(answer.body.error, reason);
  };
  refused(await call(sender, '/api/classroom/dkim', { bearer: ben, json: { selector: 'x', algorithm: 'ed25519', domain: 'ana.test' } }), /^ana\.test is ana's domain; you are ben \(ben\.test\)$/);
  refused(await call(sender, '/api/classroom/dkim?domain=ana.test', { bearer: ben }), /ana's domain/);
  refused(await call(sender, '/api/classroom/dkim', { bearer: ben, json: { selector: 'x', algorithm: 'ed25519', domain: 'sender.test' } }), /the lab's/);
  for (const selector of ['../../x', 'a.b', 'S1 ', '']) {
    assert.equal((await call(sender, '/api/classroom/dkim', { bearer: ben, json: { selector, algorithm: 'ed25519' } })).status, 400, selector);
  }
  assert.equal((await call(sender, '/api/classroom/dkim', { bearer: ben, json: { selector: 's1', algorithm: 'rsa-1024' } })).status, 400);
  assert.equal((await call(sender, '/api/classroom/dkim', { bearer: teacher, json: { selector: 's1', algorithm: 'ed25519' } })).status, 400);
  const made = await call(sender, '/api/classroom/dkim', { bearer: teacher, json: { selector: 't1', algorithm: 'ed25519', domain: 'ben.test' } });
  assert.equal(made.body.name, 't1._domainkey.ben.test');
  assert.deepEqual((await call(sender, '/api/classroom/dkim', { bearer: ben })).body.map((k: any) => k.selector), ['t1']);
  assert.ok((await call(sender, '/api/classroom/dkim', { bearer: teacher })).body.some((k: any) => k.domain === 'ana.test'));
  assert.equal((await call(receiver, '/api/classroom/dkim', { bearer: ana })).status, 404);

  // With the receiver away, submitted mail waits in the sender's queue.
  await lab.stop('receiver');
  try {
    for (const [user, password] of [['ana@ana.test', ana], ['ben@ben.test', ben]]) {
      const reply = await submit({ user, password, mailFrom: user, to: 'ana@ana.test', subject: 'queued' });
      assert.equal(reply.code, 250, reply.text);
    }
    const all = await waitFor('two entries', async () => {
      const list = (await call(sender, '/api/queue', { bearer: teacher })).body;
      return list.filter((e: any) => e.submittedBy).length >= 2 ? list : undefined;
    });
    const anas = (await call(sender, '/api/queue', { bearer: ana })).body;
    assert.ok(anas.length >= 1 && anas.every((e: any) => e.submittedBy === 'ana@ana.test'), JSON.stringify(anas));
    const bens = all.find((e: any) => e.submittedBy === 'ben@ben.test');
    refused(await call(sender, `/api/queue/${bens.id}`, { bearer: ana }), /^queue entry \S+ was submitted by ben@ben\.test \(ben's\); you are ana \(ana\.test\)$/);
    assert.equal((await call(sender, `/api/queue/${anas[0].id}`, { bearer: ana })).status, 200);
    assert.equal((await call(sender, `/api/queue/${bens.id}`, { bearer: teacher })).status, 200);
  } finally {
    receiver = await lab.start('receiver');
  }
});
