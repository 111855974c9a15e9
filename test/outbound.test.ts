// Submission, end to end: a user of the sender hands a message to port 587
// with AUTH, the sender signs it, queues it and delivers it through the lab
// DNS to the receiver, whose verdict is pass on every count. Submission
// refuses what a real one refuses; the attacker's does not, and the receiver
// then refuses the spoof and the attacker's user gets a bounce.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';
import { api, arrival, header, message, submit, swaks } from './support/mail.ts';
import { requireTool } from './support/tools.ts';

const caFile = new URL('../instances/certs/ca.pem', import.meta.url).pathname;

let lab: TestLab;
let sender: LabMta;
let receiver: LabMta;
let attacker: LabMta;

before(async () => {
  lab = await startLab();
  receiver = await lab.start('receiver');
  sender = await lab.start('sender');
  attacker = await lab.start('attacker');
});
after(() => lab.close());

const swaksTo = (mta: LabMta, subject: string, extra: string[] = []) => [
  '--server', `${mta.host}:${mta.submissionPort}`, '--local-interface', '127.0.0.1',
  '--auth', 'PLAIN', '--auth-user', 'alice@sender.test', '--auth-password', 'alice-lab-password',
  '--from', 'alice@sender.test', '--to', 'bob@receiver.test', '--header', `Subject: ${subject}`, ...extra,
];

// The receiver's verdict, from the Authentication-Results it prepended.
function verdict(stored: string) {
  const results = header(stored, 'Authentication-Results');
  return {
    spf: /\bspf=(\w+)/.exec(results)?.[1],
    dkim: [...results.matchAll(/\bdkim=(\w+) [^;]*header\.s=(\w+)/g)].map((m) => `${m[1]} s=${m[2]}`),
    dmarc: /\bdmarc=(\w+)/.exec(results)?.[1],
  };
}

test('swaks submits with AUTH in plaintext (the instance file allows it): bob gets it with spf, dkim (RSA and Ed25519) and dmarc pass', async (t) => {
  if (!requireTool(t, 'swaks', 'swaks')) return;
  const run = await swaks(swaksTo(sender, 'plain submission'));
  assert.equal(run.status, 0, run.output);
  assert.match(run.output, /<- {2}235 2\.7\.0 /);
  assert.doesNotMatch(run.output, /<- {2}250[- ]DSN/, 'DSN advertised, but NOTIFY= and RET= are not honoured');
  assert.match(run.output, /<- {2}250 2\.6\.0 Ok: queued as \w+/);

  const stored = await arrival(receiver, 'bob@receiver.test', 'Subject: plain submission');
  assert.deepEqual(verdict(stored), { spf: 'pass', dkim: ['pass s=rsa2048', 'pass s=ed25519'], dmarc: 'pass' });
  // The submission server's own Received: authenticated, from the client's address.
  assert.match(stored, /Received: from \S+ \(\[127\.0\.0\.1\]\)\r\n\tby mta\.sender\.test \(mail-lab\) with ESMTPA id /);
});

test('swaks with STARTTLS (certificate verified against the lab CA) then AUTH: delivered, the Received says ESMTPSA', async (t) => {
  if (!requireTool(t, 'swaks', 'swaks')) return;
  const run = await swaks(swaksTo(sender, 'tls submission', ['--tls', '--tls-verify', '--tls-ca-path', caFile]));
  assert.equal(run.status, 0, run.output);
  assert.match(run.output, /=== TLS started with cipher/);
  assert.match(run.output, /~> AUTH PLAIN/); // "~>": sent inside TLS
  assert.match(run.output, /<~ {2}250 2\.6\.0 Ok: queued as/);

  const stored = await arrival(receiver, 'bob@receiver.test', 'Subject: tls submission');
  assert.match(stored, /by mta\.sender\.test \(mail-lab\) with ESMTPSA \(TLSv1\.[23] /);
  assert.equal(verdict(stored).dmarc, 'pass');
});

test('no AUTH: 530 5.7.0; a wrong password or a login that is not an address: 535 5.7.8', async () => {
  const data = message('alice@sender.test', 'bob@receiver.test', 'refused');
  const noAuth = await submit(sender, { mailFrom: 'alice@sender.test', to: ['bob@receiver.test'], data });
  assert.equal(noAuth.code, 530);
  assert.match(noAuth.text, /^530 5\.7\.0 /);
  for (const [user, password] of [['alice@sender.test', 'wrong'], ['alice', 'alice-lab-password'], ['alice@receiver.test', 'alice-lab-password']]) {
    const reply = await submit(sender, { user, password, mailFrom: 'alice@sender.test', to: ['bob@receiver.test'], data });
    assert.match(reply.text, /^535 5\.7\.8 Authentication failed/, `${user} / ${password}`);
  }
});

test('an instance file with plaintextAuth: false refuses AUTH before STARTTLS and takes it after', async (t) => {
  const own = await startLab();
  try {
    const strict = await own.start('sender', (i) => ({ ...i, submission: { ...i.submission, plaintextAuth: false } }));
    const data = message('alice@sender.test', 'bob@receiver.test', 'strict');
    const reply = await submit(strict, { user: 'alice@sender.test', mailFrom: 'alice@sender.test', to: ['bob@receiver.test'], data });
    assert.match(reply.text, /^538 5\.7\.\d+ .*STARTTLS/);
    if (!requireTool(t, 'swaks', 'swaks')) return;
    const run = await swaks(swaksTo(strict, 'strict', ['--tls', '--tls-ca-path', caFile]));
    assert.equal(run.status, 0, run.output);
    assert.match(run.output, /<~ {2}235 2\.7\.0 /);
    assert.match(run.output, /<~ {2}250 2\.6\.0 Ok: queued as/);
  } finally {
    await own.close();
  }
});

test('the sender lets alice send only as its own domains: MAIL FROM elsewhere 553 5.7.1, From: elsewhere 550 5.7.1, nothing queued', async () => {
  const queued = sender.queue.list().length;
  const user = 'alice@sender.test';
  const envelope = await submit(sender, { user, mailFrom: 'ceo@receiver.test', to: ['bob@receiver.test'], data: message('alice@sender.test', 'bob@receiver.test', 'envelope') });
  assert.match(envelope.text, /^553 5\.7\.1 alice@sender\.test may not send as ceo@receiver\.test/);
  const author = await submit(sender, { user, mailFrom: 'alice@sender.test', to: ['bob@receiver.test'], data: message('CEO <ceo@receiver.test>', 'bob@receiver.test', 'author') });
  assert.match(author.text, /^550 5\.7\.1 alice@sender\.test may not send as From: CEO <ceo@receiver\.test>/);
  assert.equal(sender.queue.list().length, queued);
});

test('Message-ID and Date are added when missing; bare LF line ends become CRLF before signing, and the signatures pass at the receiver', async () => {
  const data = 'From: Alice <alice@sender.test>\nTo: bob@receiver.test\nSubject: bare LF\n\nline one\nline two\n';
  const reply = await submit(sender, { user: 'alice@sender.test', mailFrom: 'alice@sender.test', to: ['bob@receiver.test'], data });
  assert.match(reply.text, /^250 2\.6\.0 Ok: queued as/);

  const stored = await arrival(receiver, 'bob@receiver.test', 'Subject: bare LF');
  assert.doesNotMatch(stored, /[^\r]\n/, 'a bare LF reached the receiver');
  assert.match(header(stored, 'Message-ID'), /^<[^@<>\s]+@mta\.sender\.test>$/);
  assert.ok(Math.abs(Date.parse(header(stored, 'Date')) - Date.now()) < 60_000, `Date: ${header(stored, 'Date')}`);
  assert.ok(stored.endsWith('\r\n\r\nline one\r\nline two\r\n'));
  // Added before signing, so signed: the signatures cover both new fields.
  for (const signature of stored.split(/\r\n(?=DKIM-Signature:)/).slice(1)) {
    assert.match(header(signature, 'DKIM-Signature'), /h=[^;]*Message-ID[^;]*;/);
    assert.match(header(signature, 'DKIM-Signature'), /h=[^;]*Date[^;]*;/);
  }
  assert.deepEqual(verdict(stored), { spf: 'pass', dkim: ['pass s=rsa2048', 'pass s=ed25519'], dmarc: 'pass' });
});

test('the attacker (senders: any) lets mallory send as ceo@sender.test; the receiver refuses it (DMARC p=reject) and mallory gets the bounce', async () => {
  const data = message('CEO <ceo@sender.test>', 'bob@receiver.test', 'spoof');
  const reply = await submit(attacker, { user: 'mallory@attacker.test', mailFrom: 'mallory@attacker.test', to: ['bob@receiver.test'], data });
  assert.match(reply.text, /^250 2\.6\.0 Ok: queued as/);

  const bounce = await arrival(attacker, 'mallory@attacker.test', 'Final-Recipient: rfc822; bob@receiver.test');
  assert.match(bounce, /\r\nDiagnostic-Code: smtp; 550 5\.7\.1 Message rejected: DMARC fail for sender\.test \(p=reject\)/);
  assert.match(bounce, /\r\nStatus: 5\.7\.1\r\n/);
  const [session] = await api<{ dispositions: string[] }[]>(receiver, `/api/sessions?messageId=${encodeURIComponent('<spoof@client.example>')}`);
  assert.deepEqual(session.dispositions, ['reject']);
});
