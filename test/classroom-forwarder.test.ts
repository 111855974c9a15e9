// The forwarder in classroom mode (services/mta/outbound/forward.ts), end to
// end through a small lab: a student's mail to <name>@forwarder.test comes
// back to her mailbox unchanged, to <name>-list@forwarder.test as a list
// sends it (subject tag, footer, bounces to the list, ARC seal). Addresses
// the instance file gives, and the forwarder's own mailboxes, stay theirs.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issueCredentials, loadClass } from '../services/lib/classroom.ts';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';
import { arrival, header, submit, waitFor } from './support/mail.ts';
import { RawSmtp } from './support/smtp.ts';

const classDir = mkdtempSync(join(tmpdir(), 'class-forwarder-'));
writeFileSync(join(classDir, 'class.yaml'), 'name: Forwarder test class\nstudents: [ana, ben, ben-list, postmaster]\n');
const credentials = issueCredentials(classDir).issued;
const [ana, teacher] = ['ana', 'teacher'].map((n) => credentials.get(n)!);

let lab: TestLab;
let receiver: LabMta;
let sender: LabMta;
let forwarder: LabMta;

before(async () => {
  lab = await startLab(undefined, { classroom: loadClass(classDir) });
  receiver = await lab.start('receiver');
  sender = await lab.start('sender');
  // An alias of the instance file at a student's name: it wins.
  forwarder = await lab.start('forwarder', (instance) => {
    instance.forwarding.aliases.set('ben@forwarder.test', ['bob@receiver.test']);
    return instance;
  });
  // Ana's MX, so that the forwarder can deliver to her.
  const response = await fetch(`http://${receiver.host}:${receiver.apiPort}/api/zone/records?domain=ana.test`, {
    method: 'POST',
    headers: { authorization: `Bearer ${teacher}`, 'content-type': 'application/json' },
    body: JSON.stringify({ add: ['@ 300 MX 10 mx.receiver.test.'] }),
  });
  assert.equal(response.status, 200, await response.text());
});
after(async () => {
  await lab.close();
  rmSync(classDir, { recursive: true, force: true });
});

// Ana's own mail, submitted at the sender with her credential; the message as she sent it.
async function fromAna(to: string, subject: string): Promise<{ data: string; messageId: string }> {
  const messageId = `<${subject}.${Date.now()}@ana.test>`;
  const data = `From: Ana <ana@ana.test>\r\nTo: <${to}>\r\nSubject: ${subject}\r\nMessage-ID: ${messageId}\r\nDate: ${new Date().toUTCString()}\r\n\r\nSent through the forwarder.\r\n`;
  const reply = await submit(sender, { user: 'ana@ana.test', password: ana, mailFrom: 'ana@ana.test', to: [to], data });
  assert.equal(reply.code, 250, reply.text);
  return { data, messageId };
}

// The transaction that carried a message at an instance, as the teacher sees it.
async function transaction(at: LabMta, messageId: string) {
  const get = async (path: string) => (await fetch(`http://${at.host}:${at.apiPort}${path}`, { headers: { authorization: `Bearer ${teacher}` } })).json();
  const [summary] = await waitFor(`${messageId} at ${at.instance.name}`, async () => {
    const found = await get(`/api/sessions?messageId=${encodeURIComponent(messageId)}`);
    return found.length ? found : undefined;
  });
  return (await get(`/api/sessions/${summary.id}`)).transactions.find((t: { message?: { messageId?: string } }) => t.message?.messageId === messageId);
}

test("a student's list, ana-list@forwarder.test: her mail comes back to her mailbox tagged [ana-list], with the list's footer, from ana-list-bounces@, ARC-sealed by forwarder.test", async () => {
  const { messageId } = await fromAna('ana-list@forwarder.test', 'to-my-list');
  const stored = await arrival(receiver, 'ana@ana.test', 'to-my-list');
  assert.equal(header(stored, 'Subject'), '[ana-list] to-my-list');
  assert.equal(header(stored, 'List-Id'), '<ana-list.forwarder.test>');
  assert.match(stored, /\r\n--\r\nThe class mailing list, ana-list@forwarder\.test\r\n$/);
  assert.match(header(stored, 'ARC-Seal'), /d=forwarder\.test/);

  const atForwarder = await transaction(forwarder, messageId);
  assert.deepEqual(atForwarder.forwarded.map((f: { kind: string; to: string[]; mailFrom: string; sealed: boolean }) => [f.kind, f.to, f.mailFrom, f.sealed]), [['list', ['ana@ana.test'], 'ana-list-bounces@forwarder.test', true]]);
  const atReceiver = await transaction(receiver, messageId);
  assert.equal(atReceiver.envelope.mailFrom, 'ana-list-bounces@forwarder.test');
  assert.deepEqual(atReceiver.envelope.rcptTo, ['ana@ana.test']);
  assert.equal(atReceiver.checks.arc.result, 'pass');
  assert.equal(atReceiver.checks.arc.sealer, 'forwarder.test');
  assert.equal(atReceiver.decision.disposition, 'inbox');
});

test("a student's alias, ana@forwarder.test: her mail comes back to her mailbox unchanged, from her own address", async () => {
  const { data, messageId } = await fromAna('ana@forwarder.test', 'to-my-alias');
  const stored = await arrival(receiver, 'ana@ana.test', 'to-my-alias');
  assert.ok(stored.endsWith(data), 'the message as she wrote it, after the fields each hop puts on top');
  assert.equal(header(stored, 'List-Id'), '');

  const atForwarder = await transaction(forwarder, messageId);
  assert.deepEqual(atForwarder.forwarded.map((f: { kind: string; to: string[]; mailFrom: string }) => [f.kind, f.to, f.mailFrom]), [['alias', ['ana@ana.test'], 'ana@ana.test']]);
  const atReceiver = await transaction(receiver, messageId);
  assert.equal(atReceiver.envelope.mailFrom, 'ana@ana.test');
  assert.deepEqual(atReceiver.deliveries.map((d: { mailbox: string }) => d.mailbox), ['ana@ana.test']);
});

test("the forwarder's MX takes each student's two addresses and no other name; the instance file's alias, the forwarder's own mailbox and a student's own alias (ben-list) win over the names made for a student", async () => {
  const { smtp } = await RawSmtp.open(forwarder.host, forwarder.mxPort, '127.0.2.10');
  try {
    await smtp.command('EHLO mta.sender.test');
    await smtp.command('MAIL FROM:<ana@ana.test>');
    for (const address of ['ana@forwarder.test', 'ANA-LIST@forwarder.test', 'ben-list@forwarder.test', 'postmaster-list@forwarder.test']) {
      assert.equal((await smtp.command(`RCPT TO:<${address}>`)).code, 250, address);
    }
    for (const address of ['zoe@forwarder.test', 'zoe-list@forwarder.test', 'ana-list-bounces@forwarder.test', 'ana@receiver.test']) {
      assert.equal((await smtp.command(`RCPT TO:<${address}>`)).code, 550, address);
    }
  } finally {
    smtp.end();
  }

  // ben@forwarder.test is the instance file's alias for bob@receiver.test, not ben's.
  await fromAna('ben@forwarder.test', 'to-the-fixed-alias');
  await arrival(receiver, 'bob@receiver.test', 'to-the-fixed-alias');
  // ben-list@forwarder.test is the alias of the student named ben-list, not ben's list.
  const { messageId } = await fromAna('ben-list@forwarder.test', 'to-ben-list');
  const atForwarder = await transaction(forwarder, messageId);
  assert.deepEqual(atForwarder.forwarded.map((f: { kind: string; to: string[] }) => [f.kind, f.to]), [['alias', ['ben-list@ben-list.test']]]);
  // postmaster@forwarder.test stays the forwarder's mailbox, though a student is named postmaster.
  await fromAna('postmaster@forwarder.test', 'to-the-postmaster');
  await arrival(forwarder, 'postmaster@forwarder.test', 'to-the-postmaster');
});
