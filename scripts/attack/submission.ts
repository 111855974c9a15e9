// Item 5: submission checked the domain, not the user, and its From check
// could be fooled: logged in as alice@sender.test one could send, signed
// and passing DMARC, as bob@ and ceo@sender.test, as ceo@quarantine.test,
// and behind From fields that read as alice to one parser and as someone
// else to another. Each must be refused before anything is signed or queued.
import type { AttackLab } from './lab.ts';
import { api, message, submit } from './mail.ts';
import { outcome, type Attack } from './report.ts';

const ALICE = 'alice@sender.test';

// Nothing with this Message-ID in the sender's queue, nor at the receiver.
async function nothingQueued(lab: AttackLab, messageId: string): Promise<boolean> {
  const queue: { messageId?: string }[] = await api(lab, 'sender', '/queue');
  const received: unknown[] = await api(lab, 'receiver', `/sessions?messageId=${encodeURIComponent(messageId)}`);
  return !queue.some((e) => e.messageId === messageId) && received.length === 0;
}

const otherSenders: Attack = {
  item: 5,
  name: `MAIL FROM another user, logged in as ${ALICE}`,
  expected: '553 5.7.1 for bob@sender.test, ceo@sender.test and ceo@quarantine.test; alice@sender.test itself: 250',
  async run(lab) {
    const replies: string[] = [];
    let refused = true;
    for (const other of ['bob@sender.test', 'ceo@sender.test', 'ceo@quarantine.test']) {
      const { data } = message(`From: ${other}`, 'bob@receiver.test', 'other-sender');
      const reply = await submit(lab, 'sender', { user: ALICE, mailFrom: other, to: 'bob@receiver.test', data });
      refused &&= /^553 5\.7\.1 /.test(reply.text);
      replies.push(`${other}: ${reply.text.slice(0, 9)}`);
    }
    const { data } = message(`From: Alice <${ALICE}>`, 'bob@receiver.test', 'own-address');
    const own = await submit(lab, 'sender', { user: ALICE, mailFrom: ALICE, to: 'bob@receiver.test', data });
    return outcome(refused && own.code === 250, `${replies.join('; ')}; ${ALICE}: ${own.text}`);
  },
};

function foolingFrom(what: string, head: string): Attack {
  return {
    item: 5,
    name: `${what}: ${JSON.stringify(head)}, logged in as ${ALICE}`,
    expected: '550 5.7.1, nothing queued',
    async run(lab) {
      const { messageId, data } = message(head, 'bob@receiver.test', 'fooling-from');
      const reply = await submit(lab, 'sender', { user: ALICE, mailFrom: ALICE, to: 'bob@receiver.test', data });
      const none = await nothingQueued(lab, messageId);
      return outcome(/^550 5\.7\.1 /.test(reply.text) && none, `${reply.text}; ${none ? 'nothing queued' : 'QUEUED'}`);
    },
  };
}

export const attacks: Attack[] = [
  otherSenders,
  foolingFrom('a comment holding her address', 'From: ceo@receiver.test (<alice@sender.test>)'),
  foolingFrom('two mailboxes', 'From: ceo@receiver.test, alice@sender.test'),
  foolingFrom('two angle addresses', 'From: "x" <ceo@receiver.test> <alice@sender.test>'),
  foolingFrom('a second From field', 'From: alice@sender.test\r\nFrom: ceo@receiver.test'),
];
