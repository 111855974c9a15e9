// Item 6: a 451 after a copy was stored. A message for two mailboxes whose
// second copy cannot be written (here bob's Maildir tmp/ is a file where a
// directory should be: the same failure a full disk gives at that point,
// ENOSPC there, ENOTDIR here, without root to mount a small file system;
// test/mx-storage-failure.test.ts does it on a real full disk) used to leave
// the first copy in alice's mailbox, so that the client's retry delivered it
// twice. Now the client hears 451 and nothing is left; its retry delivers one
// copy to each.
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AttackLab } from './lab.ts';
import { RawSmtp, type Reply } from './net.ts';
import { outcome, type Attack } from './report.ts';

const SENDER = '127.0.2.10'; // mta.sender.test: SPF passes for alice@sender.test

// What is in a mailbox's INBOX, by subfolder.
function inbox(lab: AttackLab, mailbox: string): { new: string[]; tmp: string[]; dir: string } {
  const dir = join(lab.service('receiver').env.MTA_DATA_DIR, 'mail', 'receiver.test', mailbox);
  const files = (sub: string) => {
    try {
      return readdirSync(join(dir, sub));
    } catch {
      return [];
    }
  };
  return { new: files('new'), tmp: files('tmp'), dir };
}

async function deliver(lab: AttackLab, id: string): Promise<Reply> {
  const { smtp } = await RawSmtp.open(lab.at('receiver', 'mx'), SENDER);
  try {
    for (const line of ['EHLO mta.sender.test', 'MAIL FROM:<alice@sender.test>', 'RCPT TO:<alice@receiver.test>', 'RCPT TO:<bob@receiver.test>', 'DATA']) {
      const reply = await smtp.command(line);
      if (reply.code >= 400 || reply.code === 0) return reply;
    }
    smtp.write(`From: alice@sender.test\r\nTo: alice@receiver.test, bob@receiver.test\r\nSubject: ${id}\r\nMessage-ID: <${id}@sender.test>\r\n\r\nTwo copies, or none.\r\n.\r\n`);
    return await smtp.read(15_000);
  } finally {
    smtp.end();
  }
}

const secondCopyFails: Attack = {
  item: 6,
  name: "a message for alice and bob whose second copy cannot be stored (bob's tmp/ is not a directory)",
  expected: "451 4.3.0; alice's mailbox gets nothing (new/ and tmp/ as before); once the obstacle is gone, the retry gives each exactly one copy",
  async run(lab) {
    const id = `attack6.${Date.now()}`;
    // Bob's Maildir as the MTA made it, then his tmp/ replaced by a file.
    const bob = inbox(lab, 'bob');
    mkdirSync(join(bob.dir, 'tmp'), { recursive: true });
    const before = { alice: inbox(lab, 'alice').new.length, bob: bob.new.length };
    rmSync(join(bob.dir, 'tmp'), { recursive: true });
    writeFileSync(join(bob.dir, 'tmp'), 'in the way');
    const refused = await deliver(lab, id);
    const alice = inbox(lab, 'alice');
    rmSync(join(bob.dir, 'tmp'));
    mkdirSync(join(bob.dir, 'tmp'));
    const retried = await deliver(lab, id);
    const after = { alice: inbox(lab, 'alice').new.length - before.alice, bob: inbox(lab, 'bob').new.length - before.bob };
    return outcome(
      refused.code === 451 && alice.new.length === before.alice && alice.tmp.length === 0 && retried.code === 250 && after.alice === 1 && after.bob === 1,
      `${refused.text.split('\n')[0]}; alice's INBOX: ${alice.new.length - before.alice} new, ${alice.tmp.length} in tmp/; the retry: ${retried.text.split('\n')[0].slice(0, 60)}; copies after it: alice ${after.alice}, bob ${after.bob}`,
    );
  },
};

export const attacks: Attack[] = [secondCopyFails];
