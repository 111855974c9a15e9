// The lab's own credential, the grader's (services/lib/classroom.ts), over
// real sockets: it works as Bearer wherever the teacher's does but logs in
// to no console; at the sender's submission, AUTH PLAIN with a student's
// address as the authorization identity (RFC 4616) and `grader` or
// `teacher` with that credential logs in as the student, whose key signs the
// mail and whose queue entry it is. Anything else is refused, and a wrong
// credential counts as a failed login.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issueCredentials, loadClass } from '../services/lib/classroom.ts';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';
import { arrival, header } from './support/mail.ts';
import { RawSmtp, type Reply } from './support/smtp.ts';

const classDir = mkdtempSync(join(tmpdir(), 'class-grader-'));
writeFileSync(join(classDir, 'class.yaml'), 'name: Grader test class\nstudents: [ana, ben]\n');
const credentials = issueCredentials(classDir).issued;
const [ana, ben, teacher] = ['ana', 'ben', 'teacher'].map((n) => credentials.get(n)!);
const classroom = loadClass(classDir)!;
const grader = classroom.grader!;

let lab: TestLab;
let receiver: LabMta;
let sender: LabMta;

before(async () => {
  lab = await startLab(undefined, { classroom });
  receiver = await lab.start('receiver');
  sender = await lab.start('sender');
});
after(async () => {
  await lab.close();
  rmSync(classDir, { recursive: true, force: true });
});

async function call(mta: LabMta, path: string, init: { bearer?: string; json?: unknown } = {}) {
  const response = await fetch(`http://${mta.host}:${mta.apiPort}${path}`, {
    method: init.json === undefined ? 'GET' : 'POST',
    headers: { ...(init.bearer && { authorization: `Bearer ${init.bearer}` }), ...(init.json !== undefined && { 'content-type': 'application/json' }) },
    body: init.json === undefined ? undefined : JSON.stringify(init.json),
  });
  const text = await response.text();
  return { status: response.status, text, body: JSON.parse(text) };
}

// AUTH PLAIN with the token written out: authzid NUL authcid NUL password.
const plain = (authzid: string, authcid: string, password: string) => `AUTH PLAIN ${Buffer.from(`${authzid}\0${authcid}\0${password}`).toString('base64')}`;

async function auth(mta: LabMta, token: string, client: string): Promise<Reply> {
  const { smtp } = await RawSmtp.open(mta.host, mta.submissionPort, client);
  try {
    await smtp.command('EHLO grader.example');
    return await smtp.command(token);
  } finally {
    smtp.end();
  }
}

test("the grader credential is no console login (403 naming it), but works as Bearer as the teacher's does, at the MTAs and through them at the DNS", async () => {
  for (const mta of [receiver, sender]) {
    const login = await call(mta, '/api/login', { json: { credential: grader } });
    assert.equal(login.status, 403, login.text);
    assert.equal(login.body.error, "that is the lab's own credential, for its exercise checks (grader): it logs in to no console; log in with your own credential");
    assert.equal((await call(mta, '/api/login', { json: { credential: teacher } })).status, 200, "the teacher's still logs in");

    const me = await call(mta, '/api/me', { bearer: grader });
    assert.equal(me.status, 200, me.text);
    assert.equal(me.body.role, 'teacher');
    const students = await call(mta, '/api/classroom', { bearer: grader });
    assert.deepEqual(students.body.students.map((s: { name: string }) => s.name), ['ana', 'ben']);
  }
  // A student's mailbox and zone, as the teacher may.
  assert.equal((await call(receiver, '/api/mailboxes/ben@ben.test/INBOX', { bearer: grader })).status, 200);
  const zone = await call(receiver, '/api/zone?domain=ben.test', { bearer: grader });
  assert.equal(zone.status, 200, zone.text);
  assert.equal(zone.body.domain, 'ben.test');
});

test("AUTH PLAIN with authzid ana@ana.test, authcid grader and the grader credential logs in as ana: her DKIM key signs, the receiver says dkim=pass for ana.test, and the queue entry is submitted by her", async () => {
  // Her key and her MX, made and published with the grader's credential.
  const key = await call(sender, '/api/classroom/dkim', { bearer: grader, json: { selector: 'g1', algorithm: 'ed25519', domain: 'ana.test' } });
  assert.equal(key.status, 200, key.text);
  const published = await call(receiver, '/api/zone/records?domain=ana.test', { bearer: grader, json: { add: ['@ 300 MX 10 mx.receiver.test.', key.body.zoneLine] } });
  assert.equal(published.status, 200, published.text);

  const { smtp } = await RawSmtp.open(sender.host, sender.submissionPort, '127.0.0.31');
  let queued: Reply;
  try {
    await smtp.command('EHLO grader.example');
    const reply = await smtp.command(plain('ana@ana.test', 'grader', grader));
    assert.equal(reply.code, 235, reply.text);
    // The session is hers: another's address is refused as it is to her.
    const other = await smtp.command('MAIL FROM:<ben@ben.test>');
    assert.match(other.text, /^553 5\.7\.1 ana@ana\.test may not send as ben@ben\.test: only as an address at ana\.test/);
    assert.equal((await smtp.command('MAIL FROM:<ana@ana.test>')).code, 250);
    assert.equal((await smtp.command('RCPT TO:<ana@ana.test>')).code, 250);
    // A second recipient whose MX is not running keeps the entry in the queue.
    assert.equal((await smtp.command('RCPT TO:<alice@forwarder.test>')).code, 250);
    assert.equal((await smtp.command('DATA')).code, 354);
    queued = await smtp.command(`From: <ana@ana.test>\r\nTo: <ana@ana.test>\r\nSubject: graded-probe\r\nDate: ${new Date().toUTCString()}\r\n\r\nA probe.\r\n.`);
    assert.equal(queued.code, 250, queued.text);
  } finally {
    await smtp.command('QUIT').catch(() => undefined);
  }

  const message = await arrival(receiver, 'ana@ana.test', 'Subject: graded-probe');
  const signature = header(message, 'DKIM-Signature').replace(/\s+/g, '');
  assert.match(signature, /;d=ana\.test;/);
  assert.match(signature, /;s=g1;/);
  assert.match(header(message, 'Authentication-Results'), /dkim=pass header\.i=@ana\.test header\.s=g1/);

  const id = /queued as (\S+)/.exec(queued.text)![1];
  const entry = await call(sender, `/api/queue/${id}`, { bearer: ana });
  assert.equal(entry.status, 200, entry.text);
  assert.equal(entry.body.submittedBy, 'ana@ana.test');
  const refused = await call(sender, `/api/queue/${id}`, { bearer: ben });
  assert.equal(refused.status, 403);
  assert.match(refused.body.error, /was submitted by ana@ana\.test \(ana's\)/);
});

test("the teacher's credential does the same as teacher; a student's address is the only authzid taken (535 5.7.8 naming it); a wrong credential, another's identity or a student acting for another is a failed login", async () => {
  assert.equal((await auth(sender, plain('ben@ben.test', 'teacher', teacher), '127.0.0.41')).code, 235);
  assert.equal((await auth(sender, plain('BEN@ben.test', 'GRADER', grader), '127.0.0.41')).code, 235);

  for (const authzid of ['alice@sender.test', 'teacher', 'ana@ben.test', 'nobody@ana.test']) {
    const reply = await auth(sender, plain(authzid, 'grader', grader), '127.0.0.42');
    assert.equal(reply.text, `535 5.7.8 Authentication failed: ${authzid} is no student's address: grader submits only for a student of the class, as <name>@<domain>`);
  }

  // One failure per client address, each the plain 535 of a wrong password.
  const wrong: [string, string, string][] = [
    ['grader', teacher, 'the teacher\'s credential as grader'],
    ['teacher', grader, 'the grader\'s credential as teacher'],
    ['grader', `grader-${'x'.repeat(20)}`, 'a made-up credential'],
    ['ben@ben.test', ben, 'a student acting for another'],
    ['alice@sender.test', 'alice-lab-password', 'a lab user acting for a student'],
  ];
  for (const [i, [authcid, password, what]] of wrong.entries()) {
    const reply = await auth(sender, plain('ana@ana.test', authcid, password), `127.0.0.${50 + i}`);
    assert.equal(reply.text, '535 5.7.8 Authentication failed: wrong user name or password', what);
  }
  // Without an authorization identity the grader is no one's login; the same one as the login changes nothing.
  assert.equal((await auth(sender, plain('', 'grader', grader), '127.0.0.56')).code, 535);
  assert.equal((await auth(sender, plain('ana@ana.test', 'ana@ana.test', ana), '127.0.0.57')).code, 235);
  // Students' mail is submitted at the sender only.
  assert.equal((await auth(receiver, plain('ana@ana.test', 'grader', grader), '127.0.0.58')).code, 535);

  // Counted by the throttle: four 535s, then 421 for that address, the right credential too.
  const codes = [];
  for (let i = 0; i < 5; i++) codes.push((await auth(sender, plain('ana@ana.test', 'grader', `grader-${'y'.repeat(20)}`), '127.0.0.60')).code);
  assert.deepEqual(codes, [535, 535, 535, 535, 421]);
  assert.equal((await auth(sender, plain('ana@ana.test', 'grader', grader), '127.0.0.60')).code, 421);
});
