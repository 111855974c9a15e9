// Item 8: duplicates after a sender crash. kill -9 of the sender in the
// middle of delivering a burst gave 8 to 10 duplicates (about the number in
// flight), and lost nothing. Now each attempt is recorded durably before it
// connects: a crash can cause at most one duplicate per message, of those in
// flight, and still loses nothing.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AttackLab } from './lab.ts';
import { RawSmtp, sleep, waitFor } from './net.ts';
import { outcome, type Attack } from './report.ts';

const BURST = 300;
const SESSIONS = 10; // submitting at once, so that the queue runs ahead of delivery
const KILL_AFTER = 30; // messages of the burst in bob's mailbox

const bobsInbox = (lab: AttackLab) => join(lab.service('receiver').env.MTA_DATA_DIR, 'mail', 'receiver.test', 'bob', 'new');
const files = (dir: string) => {
  try {
    return readdirSync(dir).length;
  } catch {
    return 0;
  }
};

// The Message-IDs in bob's INBOX of this burst, with how often each is there.
function arrived(lab: AttackLab, tag: string): Map<string, number> {
  const dir = bobsInbox(lab);
  const counts = new Map<string, number>();
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return counts;
  }
  for (const name of names) {
    let text = '';
    try {
      text = readFileSync(join(dir, name), 'latin1');
    } catch {
      continue;
    }
    const id = new RegExp(`^Message-ID: <(${tag}\\.\\d+)@`, 'mi').exec(text)?.[1];
    if (id) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

const killDuringBurst: Attack = {
  item: 8,
  name: `kill -9 of the sender while it delivers a burst of ${BURST} messages`,
  expected: `every message arrives (none lost); at most one duplicate per message, only of those in flight (the sender's delivery pool holds 10 connections)`,
  timeoutMs: 60_000,
  async run(lab) {
    const tag = `attack8-${Date.now()}`;
    const password = lab.service('sender').instance!.submission.passwords.get('alice')!;
    const before = files(bobsInbox(lab));
    const submit = async (session: number) => {
      const { smtp } = await RawSmtp.open(lab.at('sender', 'submission'), '127.0.0.1');
      try {
        for (const line of ['EHLO client.example', `AUTH PLAIN ${Buffer.from(`\0alice@sender.test\0${password}`).toString('base64')}`]) await smtp.command(line);
        for (let i = session; i < BURST; i += SESSIONS) {
          for (const line of ['MAIL FROM:<alice@sender.test>', 'RCPT TO:<bob@receiver.test>', 'DATA']) await smtp.command(line);
          smtp.write(`From: alice@sender.test\r\nTo: bob@receiver.test\r\nSubject: burst ${i}\r\nMessage-ID: <${tag}.${i}@sender.test>\r\n\r\nMessage ${i} of the burst.\r\n.\r\n`);
          const reply = await smtp.read();
          if (reply.code !== 250) throw new Error(`message ${i} not queued: ${reply.text}`);
        }
      } finally {
        smtp.end();
      }
    };
    const submitted = Promise.all(Array.from({ length: SESSIONS }, (_, s) => submit(s)));
    await waitFor(`${KILL_AFTER} messages at the receiver`, () => (files(bobsInbox(lab)) - before >= KILL_AFTER ? true : undefined), 30_000);
    await submitted; // queued: the 250s came before the kill
    const atKill = files(bobsInbox(lab)) - before;
    const pid = lab.kill9('sender');
    await waitFor('the runner to restart the sender', () => (lab.runs('sender', pid) ? undefined : true), 15_000);
    await waitFor(`all ${BURST} messages at the receiver`, () => (arrived(lab, tag).size >= BURST ? true : undefined), 40_000);
    await sleep(1000); // a late duplicate would show now
    const counts = arrived(lab, tag);
    const twice = [...counts.values()].filter((n) => n === 2).length;
    const more = [...counts.values()].filter((n) => n > 2).length;
    return outcome(
      counts.size === BURST && more === 0 && twice <= 10,
      `killed pid ${pid} with ${atKill} of ${BURST} delivered; after the restart all ${counts.size} arrived, ${twice} twice, ${more} more than twice`,
    );
  },
};

export const attacks: Attack[] = [killDuringBurst];
