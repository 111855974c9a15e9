// A 451 leaves nothing behind (issue 13, item 6). The MX stores a message
// for all its recipients or for none: on a nearly full disk (a real one, a
// small tmpfs) a message whose second copy does not fit gets 451, and the
// first copy is not in the mailbox, nor a forwarded copy in the queue, so the
// client's retry delivers each exactly once. Partial files a crash left in a
// Maildir's tmp/ are removed when the MTA starts.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statfsSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RawSmtp, type Reply } from './support/smtp.ts';
import { SENDER_HOST } from './support/mail.ts';
import { startLab, type LabMta, type TestLab } from './support/lab.ts';
import type { Instance } from '../services/mta/instance.ts';

const MiB = 1024 * 1024;
const root = process.getuid?.() === 0;
const why = 'a full disk is a small tmpfs, and mounting one needs root';

let lab: TestLab;
const mounts: string[] = [];

// A small file system of its own for an instance's data: its disk.
function smallDisk(name: string, mib = 4): string {
  const dir = join(lab.dataDir, name);
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m,mode=0700`, 'tmpfs', dir]);
  mounts.push(dir);
  return dir;
}

// Fills the disk until `free` bytes are left; returns the filler to delete.
function fill(dir: string, free: number): string {
  const filler = join(dir, 'filler');
  const { bavail, bsize } = statfsSync(dir);
  writeFileSync(filler, Buffer.alloc(bavail * bsize - free));
  return filler;
}

before(async () => {
  lab = await startLab();
});
after(async () => {
  await lab.close().catch(() => undefined); // the MTAs first: their files are on the mounts
  for (const dir of mounts) execFileSync('umount', ['-l', dir]);
});

// About 1 MiB, from alice@sender.test (SPF passes for the sender's address).
function bigMessage(id: string, to: string): string {
  const line = `${id}: the quick brown fox jumps over the lazy dog, again and again and again.\r\n`;
  return `From: Alice <alice@sender.test>\r\nTo: ${to}\r\nSubject: ${id}\r\nMessage-ID: <${id}@sender.test>\r\nDate: ${new Date().toUTCString()}\r\n\r\n${line.repeat(Math.ceil(MiB / line.length))}`;
}

async function send(mta: LabMta, recipients: string[], data: string): Promise<Reply> {
  const { smtp } = await RawSmtp.open(mta.host, mta.mxPort, SENDER_HOST.address);
  try {
    await smtp.command(`EHLO ${SENDER_HOST.helo}`);
    await smtp.command('MAIL FROM:<alice@sender.test>');
    for (const r of recipients) assert.equal((await smtp.command(`RCPT TO:<${r}>`)).code, 250, r);
    assert.equal((await smtp.command('DATA')).code, 354);
    smtp.write(`${data}.\r\n`);
    return await smtp.read(15_000);
  } finally {
    await smtp.command('QUIT').catch(() => undefined);
  }
}

// The files in a mailbox's INBOX new/ and tmp/ (none when it was never made).
function mailbox(mta: LabMta, address: string): { new: string[]; tmp: string[] } {
  const dir = mta.maildir.folderPath(address, 'INBOX');
  const files = (sub: string) => (existsSync(join(dir, sub)) ? readdirSync(join(dir, sub)) : []);
  return { new: files('new'), tmp: files('tmp') };
}

const queueFiles = (disk: string) => readdirSync(join(disk, 'queue')).filter((name) => name !== 'damaged');

async function transaction(mta: LabMta, messageId: string) {
  const base = `http://${mta.host}:${mta.apiPort}/api/sessions`;
  const sessions: { id: string }[] = await (await fetch(`${base}?messageId=${encodeURIComponent(messageId)}`)).json();
  const records = await Promise.all(sessions.map(async (s) => (await fetch(`${base}/${s.id}`)).json()));
  return records.flatMap((r) => r.transactions).filter((t: { message?: { messageId?: string } }) => t.message?.messageId === messageId);
}

test('two mailboxes, room for one copy: 451, neither mailbox has it, and the retry delivers one copy to each', { skip: !root && !process.env.CI && why }, async () => {
  assert.ok(root, why);
  const disk = smallDisk('receiver');
  const receiver = await lab.start('receiver');
  const data = bigMessage('full-disk-mailboxes', 'alice@receiver.test, bob@receiver.test');
  const filler = fill(disk, 1.5 * MiB);

  const refused = await send(receiver, ['alice@receiver.test', 'bob@receiver.test'], data);
  assert.equal(refused.code, 451, refused.text);
  assert.match(refused.text, /4\.3\.0/);
  for (const address of ['alice@receiver.test', 'bob@receiver.test']) {
    assert.deepEqual(mailbox(receiver, address), { new: [], tmp: [] }, `${address}: nothing stored for a message that got 451`);
  }
  const [deferred] = await transaction(receiver, '<full-disk-mailboxes@sender.test>');
  assert.equal(deferred.decision.disposition, 'defer');
  assert.match(deferred.decision.reason, /local storage error: .*ENOSPC/);
  assert.deepEqual(deferred.deliveries, []);

  unlinkSync(filler);
  const accepted = await send(receiver, ['alice@receiver.test', 'bob@receiver.test'], data);
  assert.equal(accepted.code, 250, accepted.text);
  for (const address of ['alice@receiver.test', 'bob@receiver.test']) {
    const { new: stored, tmp } = mailbox(receiver, address);
    assert.equal(stored.length, 1, `${address}: exactly one copy after the retry`);
    assert.deepEqual(tmp, []);
  }
});

test('a mailbox and two forwards, room for two copies: 451, no copy in the mailbox or the queue, none delivered', { skip: !root && !process.env.CI && why }, async () => {
  assert.ok(root, why);
  await lab.stop('receiver').catch(() => undefined); // the forwards stay in the queue, to be counted
  // The accepted message takes 4 MiB until the next checkpoint: a copy, two
  // forwards, and the write-ahead log's entry.
  const disk = smallDisk('forwarder', 6);
  const forwarder = await lab.start('forwarder');
  const recipients = ['postmaster@forwarder.test', 'class@forwarder.test', 'alice@forwarder.test'];
  const data = bigMessage('full-disk-forwards', recipients.join(', '));
  const filler = fill(disk, 2.5 * MiB);

  const refused = await send(forwarder, recipients, data);
  assert.equal(refused.code, 451, refused.text);
  assert.deepEqual(mailbox(forwarder, 'postmaster@forwarder.test'), { new: [], tmp: [] });
  assert.deepEqual(queueFiles(disk), [], 'no held forward is left in the queue');
  assert.deepEqual(forwarder.queue.list(), [], 'and none is delivered');
  const [deferred] = await transaction(forwarder, '<full-disk-forwards@sender.test>');
  assert.equal(deferred.decision.disposition, 'defer');
  assert.equal(deferred.forwarded, undefined);

  unlinkSync(filler);
  const accepted = await send(forwarder, recipients, data);
  assert.equal(accepted.code, 250, accepted.text);
  assert.equal(mailbox(forwarder, 'postmaster@forwarder.test').new.length, 1);
  const queued = forwarder.queue.list();
  assert.deepEqual(queued.map((e) => e.recipients.map((r) => r.address)).sort(), [['alice@receiver.test'], ['alice@receiver.test', 'bob@receiver.test']]);
  assert.equal(queueFiles(disk).length, 4, 'each forward: its message and its state file');
});

test('two mailboxes, room for both copies but not the write-ahead log entry: 451, nothing stored, and the retry delivers one copy to each', { skip: !root && !process.env.CI && why }, async () => {
  assert.ok(root, why);
  const disk = smallDisk('receiver-log');
  // An address of its own: the forwards the test above queued go to the receiver's.
  const receiverLog = (instance: Instance) => ({ ...instance, name: 'receiver-log', address: '192.0.2.21' });
  const receiver = await lab.start('receiver', receiverLog);
  const recipients = ['alice@receiver.test', 'bob@receiver.test'];
  const data = bigMessage('full-disk-log', recipients.join(', '));
  const filler = fill(disk, 2.5 * MiB);

  const refused = await send(receiver, recipients, data);
  assert.equal(refused.code, 451, refused.text);
  for (const address of recipients) assert.deepEqual(mailbox(receiver, address), { new: [], tmp: [] }, `${address}: nothing stored for a message that got 451`);
  const [deferred] = await transaction(receiver, '<full-disk-log@sender.test>');
  assert.equal(deferred.decision.disposition, 'defer');
  assert.match(deferred.decision.reason, /local storage error: .*ENOSPC/);

  // The log file the failed entry tore is not written to again; the
  // checkpoint that follows the retry removes both.
  unlinkSync(filler);
  const accepted = await send(receiver, recipients, data);
  assert.equal(accepted.code, 250, accepted.text);
  for (const address of recipients) assert.equal(mailbox(receiver, address).new.length, 1, `${address}: exactly one copy after the retry`);
  await lab.stop('receiver-log');
  assert.deepEqual(readdirSync(join(disk, 'wal')), []);
  const restarted = await lab.start('receiver', receiverLog);
  for (const address of recipients) assert.equal(mailbox(restarted, address).new.length, 1, `${address}: one copy after a restart`);
});

test('partial copies a crash left in tmp/ are removed when the MTA starts; delivered mail stays', async () => {
  const inbox = join(lab.dataDir, 'receiver', 'mail', 'receiver.test', 'alice');
  for (const sub of ['tmp', 'new', 'cur', '.Junk/tmp', '.Junk/new', '.Junk/cur']) mkdirSync(join(inbox, sub), { recursive: true });
  writeFileSync(join(inbox, 'tmp', '1764500000.M1P1Q1.mx.receiver.test'), 'From: half a message');
  writeFileSync(join(inbox, '.Junk/tmp', '1764500000.M2P1Q2.mx.receiver.test'), 'From: half of another');
  writeFileSync(join(inbox, 'new', '1764500000.M3P1Q3.mx.receiver.test'), 'From: a delivered one\r\n\r\nhello\r\n');

  await lab.start('receiver');
  assert.deepEqual(readdirSync(join(inbox, 'tmp')), []);
  assert.deepEqual(readdirSync(join(inbox, '.Junk/tmp')), []);
  assert.ok(readdirSync(join(inbox, 'new')).includes('1764500000.M3P1Q3.mx.receiver.test'));
});
