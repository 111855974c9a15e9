// Submission with `senders: own`: a user sends as its own address (or an
// alias the instance file lists), in MAIL FROM and in From:, and From: names
// exactly one author, read the way the MX and mailauth read it. What fails is
// refused before anything is signed or queued. The attacker's instance
// (`senders: any`) still sends as anyone: the spoof scenarios need it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';
import { arrival, header, message, submit, waitFor } from './support/mail.ts';

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

const alice = 'alice@sender.test';
const to = ['bob@receiver.test'];

// A message whose header section is `head` (From fields and all), with a
// Subject that tells it apart.
const raw = (head: string, id: string) =>
  `${head}\r\nTo: bob@receiver.test\r\nSubject: ${id}\r\nMessage-ID: <${id}@client.example>\r\n\r\nHello from ${id}.\r\n`;

test('alice sends as alice@sender.test and as her alias postmaster@sender.test: signed, dmarc=pass at the receiver', async () => {
  for (const [address, id] of [[alice, 'own-address'], ['postmaster@sender.test', 'own-alias']]) {
    const reply = await submit(sender, { user: alice, mailFrom: address, to, data: message(`Alice <${address}>`, to[0], id) });
    assert.match(reply.text, /^250 2\.6\.0 Ok: queued as/, `${address}: ${reply.text}`);
    const stored = await arrival(receiver, 'bob@receiver.test', `Subject: ${id}`);
    assert.match(header(stored, 'Authentication-Results'), /\bdmarc=pass\b/, address);
  }
});

// What the sender queued stays queued from here on: the receiver is down.
const queueHeld = async () => {
  await waitFor('the sender\'s queue to empty', () => (sender.queue.list().length === 0 ? true : undefined));
  await lab.stop('receiver');
};

test('alice may not send as bob@, ceo@sender.test or ceo@quarantine.test, in MAIL FROM or in From: nothing is queued', async () => {
  await queueHeld();
  const queued = sender.queue.list().length;
  for (const other of ['bob@sender.test', 'ceo@sender.test', 'ceo@quarantine.test', 'Alice@quarantine.test']) {
    const envelope = await submit(sender, { user: alice, mailFrom: other, to, data: message(other, to[0], 'envelope') });
    assert.equal(envelope.code, 553, `MAIL FROM:<${other}>: ${envelope.text}`);
    assert.match(envelope.text, new RegExp(`^553 5\\.7\\.1 alice@sender\\.test may not send as ${other.replace(/\./g, '\\.')}: only as alice@sender\\.test or postmaster@sender\\.test`, 'i'));

    const author = await submit(sender, { user: alice, mailFrom: alice, to, data: message(`Someone <${other}>`, to[0], 'author') });
    assert.equal(author.code, 550, `From: ${other}: ${author.text}`);
    assert.match(author.text, new RegExp(`^550 5\\.7\\.1 alice@sender\\.test may not send as From: Someone <${other.replace(/\./g, '\\.')}>: only as`, 'i'));
  }
  // bob's own login still works: the user is the login, not the domain.
  const bob = await submit(sender, { user: 'bob@sender.test', password: 'bob-lab-password', mailFrom: 'bob@sender.test', to, data: message('bob@sender.test', to[0], 'bob-own') });
  assert.match(bob.text, /^250 /);
  assert.equal(sender.queue.list().length, queued + 1, 'only bob\'s own message was queued');
});

test('From fields that can be read as alice and as someone else are refused with the reason, and nothing is queued or signed', async () => {
  const queued = sender.queue.list().length;
  const cases: [string, string, RegExp][] = [
    // mailauth reads the comment as a name: the author is ceo@receiver.test.
    ['comment', 'From: ceo@receiver.test (<alice@sender.test>)', /^550 5\.7\.1 alice@sender\.test may not send as From: ceo@receiver\.test \(<alice@sender\.test>\)/],
    ['two mailboxes', 'From: ceo@receiver.test, alice@sender.test', /^550 5\.7\.1 Message refused: the author is unclear: the From field holds 2 mailboxes \(ceo@receiver\.test, alice@sender\.test\)/],
    ['two angle addresses', 'From: "x" <ceo@receiver.test> <alice@sender.test>', /^550 5\.7\.1 Message refused: the author is unclear: the From field "\\"x\\" <ceo@receiver\.test> <alice@sender\.test>" is not a mailbox list in RFC 5322 syntax/],
    ['two From fields', 'From: ceo@receiver.test\r\nFrom: alice@sender.test', /^550 5\.7\.1 Message refused: the author is unclear: 2 From fields \("ceo@receiver\.test", "alice@sender\.test"\)/],
    ['no From field', 'Sender: alice@sender.test', /^550 5\.7\.1 Message refused: the author is unclear: no From field/],
  ];
  for (const [name, head, expected] of cases) {
    const reply = await submit(sender, { user: alice, mailFrom: alice, to, data: raw(head, `fooled-${name.replace(/ /g, '-')}`) });
    assert.match(reply.text, expected, `${name}: ${reply.text}`);
  }
  assert.equal(sender.queue.list().length, queued, 'nothing was queued');
});

test('the attacker instance (senders: any) still sends as anyone, in MAIL FROM and From:', async () => {
  for (const [address, id] of [['ceo@sender.test', 'spoof-sender'], ['alice@quarantine.test', 'spoof-quarantine']]) {
    const reply = await submit(attacker, { user: 'mallory@attacker.test', mailFrom: address, to, data: message(`CEO <${address}>`, to[0], id) });
    assert.match(reply.text, /^250 2\.6\.0 Ok: queued as/, `${address}: ${reply.text}`);
  }
});
