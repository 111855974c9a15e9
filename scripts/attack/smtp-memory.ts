// Item 2: memory an SMTP client could make an MTA hold. DATA was buffered
// whole before the size check (a 1 GB message without SIZE= peaked at
// 2.1 GB RSS at the MX, and a logged-in user's large message was held whole
// at submission too), 100 clients at once could each have 10 MiB held, and
// every command line went into the session's transcript (600 MB of NOOPs
// lost the session record). The attacked process's RSS and peak are read
// from /proc around each attack.
import type { Endpoint } from '../../services/lib/config.ts';
import type { AttackLab } from './lab.ts';
import { RawSmtp, summary, waitFor, type Reply } from './net.ts';
import { memoryText, outcome, type Attack } from './report.ts';

const MiB = 2 ** 20;
const MX_MESSAGE = 1024 * MiB;
const SUBMITTED_MESSAGE = 400 * MiB;
const NOOP_BYTES = 600 * MiB;
const SIZE_LIMIT = 10 * MiB; // limits.messageSize in instances/receiver.yaml
const CLIENTS = 100; // limits.clients there
const AT_ONCE_MESSAGE = 9 * MiB; // within the size limit: each would be held
const CLIENT_ADDRESSES = ['127.0.2.66', '127.0.2.67', '127.0.2.68', '127.0.2.69']; // 25 each, within limits.clientsPerAddress
const MESSAGES_IN_MEMORY = 8; // services/mta/smtp/message-data.ts
// On a loaded machine the first messages are stored while the last still arrive:
// a place they free may take one or two more (CI saw 9). The bound is at once.
const REFILLS = 2;
const JUNK_LIMIT = 100; // services/mta/inbound/mx.ts
// smtp-server copies each chunk it reads, and until a garbage collection
// frees them they add about 100 MiB whatever the size; what grew with the
// message would show far above this.
const MESSAGE_PEAK_LIMIT_MiB = 256;
// 8 messages of 10 MiB held, and the chunks of 100 sessions on their way
// (about 200 to 300 MiB here): far less than all of them, 900 MiB.
const CLIENTS_PEAK_LIMIT_MiB = (CLIENTS * AT_ONCE_MESSAGE) / MiB / 2;
const NOOP_PEAK_LIMIT_MiB = 32;
const ATTACKER = '127.0.2.66'; // mta.attacker.test

// 1 MiB of 1,022-character lines, sent over and over: the attack holds 1 MiB.
const line = Buffer.from(`${'x'.repeat(1022)}\r\n`);
const chunk = Buffer.concat(Array.from({ length: 1024 }, () => line));

// A session as far as DATA's 354, for bob@receiver.test, without SIZE= (the
// server learns the size only as it reads); undefined when refused before.
async function dataSession(at: Endpoint, from: string, mailFrom: string, login?: { user: string; password: string }): Promise<RawSmtp | undefined> {
  const { smtp, greeting } = await RawSmtp.open(at, from);
  if (greeting.code !== 220) return undefined;
  const auth = login ? [`AUTH PLAIN ${Buffer.from(`\0${login.user}\0${login.password}`).toString('base64')}`] : [];
  for (const command of ['EHLO client.example', ...auth, `MAIL FROM:<${mailFrom}>`, 'RCPT TO:<bob@receiver.test>', 'DATA']) {
    const reply = await smtp.command(command);
    if (reply.code >= 400 || reply.code === 0) return undefined;
  }
  return smtp;
}

// The message's header, then `size` bytes of body, the final dot: the reply.
async function sendMessage(smtp: RawSmtp, from: string, size: number, messageId: string): Promise<Reply> {
  await smtp.send(`From: ${from}\r\nTo: bob@receiver.test\r\nSubject: ${size / MiB} MiB\r\nMessage-ID: ${messageId}\r\n\r\n`);
  for (let sent = 0; sent < size; sent += chunk.length) if (!(await smtp.send(chunk))) break;
  smtp.write('.\r\n');
  return smtp.read(60_000);
}

const mxMessage: Attack = {
  item: 2,
  name: '1 GiB message to the MX, DATA without SIZE=',
  expected: `552 5.3.4 at the end of DATA, the session goes on (NOOP 250), the record says 552; the receiver's peak RSS rises by less than ${MESSAGE_PEAK_LIMIT_MiB} MiB`,
  timeoutMs: 90_000,
  async run(lab) {
    const messageId = `<big.${Date.now()}@attacker.test>`;
    const smtp = await dataSession(lab.at('receiver', 'mx'), ATTACKER, 'mallory@attacker.test');
    if (!smtp) return outcome(false, 'refused before DATA');
    const started = performance.now();
    const { result: reply, memory } = await lab.memoryDuring('receiver', () => sendMessage(smtp, 'mallory@attacker.test', MX_MESSAGE, messageId));
    const seconds = (performance.now() - started) / 1000;
    const noop = await smtp.command('NOOP');
    smtp.write('QUIT\r\n');
    const record = await transaction(lab, messageId);
    return outcome(
      /^552 5\.3\.4 /.test(reply.text) &&
        noop.code === 250 &&
        record?.decision.code === 552 &&
        record.message!.size > MX_MESSAGE &&
        memory.peakMiB - memory.rssBeforeMiB < MESSAGE_PEAK_LIMIT_MiB,
      `${reply.text} (sent in ${seconds.toFixed(1)} s); NOOP ${noop.code}; ${record ? `recorded: ${record.decision.code}, ${Math.round(record.message!.size / MiB)} MiB` : 'no record'}; ${memoryText(memory)}`,
      memory,
    );
  },
};

const submittedMessage: Attack = {
  item: 2,
  name: '400 MiB message to submission, logged in as alice@sender.test, without SIZE=',
  expected: `552 5.3.4 at the end of DATA; the sender's peak RSS rises by less than ${MESSAGE_PEAK_LIMIT_MiB} MiB`,
  timeoutMs: 60_000,
  async run(lab) {
    const password = lab.service('sender').instance!.submission.passwords.get('alice')!;
    const smtp = await dataSession(lab.at('sender', 'submission'), '127.0.0.1', 'alice@sender.test', { user: 'alice@sender.test', password });
    if (!smtp) return outcome(false, 'refused before DATA');
    const started = performance.now();
    const { result: reply, memory } = await lab.memoryDuring('sender', () => sendMessage(smtp, 'alice@sender.test', SUBMITTED_MESSAGE, `<submitted.${Date.now()}@sender.test>`));
    const seconds = (performance.now() - started) / 1000;
    smtp.write('QUIT\r\n');
    return outcome(
      /^552 5\.3\.4 /.test(reply.text) && memory.peakMiB - memory.rssBeforeMiB < MESSAGE_PEAK_LIMIT_MiB,
      `${reply.text} (sent in ${seconds.toFixed(1)} s); ${memoryText(memory)}`,
      memory,
    );
  },
};

const manyClients: Attack = {
  item: 2,
  name: `${CLIENTS} clients at once, each with a message of ${AT_ONCE_MESSAGE / MiB} MiB (the size limit is ${SIZE_LIMIT / MiB} MiB)`,
  expected: `at most ${MESSAGES_IN_MEMORY} held at once: about ${MESSAGES_IN_MEMORY} taken (250; up to ${MESSAGES_IN_MEMORY + REFILLS} when one is stored and frees its place while the others still arrive), every other one 452 4.3.1 (try again later); the receiver's peak RSS rises by less than half of the ${(CLIENTS * AT_ONCE_MESSAGE) / MiB} MiB they come to (it held them all before)`,
  timeoutMs: 90_000,
  async run(lab) {
    const { messageSize } = lab.service('receiver').instance!.limits;
    if (messageSize !== SIZE_LIMIT) throw new Error(`instances/receiver.yaml: limits.messageSize is ${messageSize}, the attack expects ${SIZE_LIMIT}`);
    const mx = lab.at('receiver', 'mx');
    const sessions = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => dataSession(mx, CLIENT_ADDRESSES[i % CLIENT_ADDRESSES.length], 'mallory@attacker.test')));
    const open = sessions.filter((s) => s !== undefined);
    const started = performance.now();
    const { result: replies, memory } = await lab.memoryDuring('receiver', () =>
      Promise.all(open.map((smtp, i) => sendMessage(smtp, 'mallory@attacker.test', AT_ONCE_MESSAGE, `<at-once-${i}.${Date.now()}@attacker.test>`))),
    );
    const seconds = (performance.now() - started) / 1000;
    for (const smtp of open) smtp.write('QUIT\r\n');
    const taken = replies.filter((r) => r.code === 250).length;
    const later = replies.filter((r) => /^452 4\.3\.1 /.test(r.text)).length;
    return outcome(
      open.length === CLIENTS && taken <= MESSAGES_IN_MEMORY + REFILLS && taken + later === CLIENTS && memory.peakMiB - memory.rssBeforeMiB < CLIENTS_PEAK_LIMIT_MiB,
      `${open.length} sessions reached DATA; ${summary(replies.map((r) => ({ ...r, text: r.text.slice(0, 9) })).sort((a, b) => a.code - b.code))}, in ${seconds.toFixed(1)} s; ${memoryText(memory)}`,
      memory,
    );
  },
};

const noops: Attack = {
  item: 2,
  name: '600 MiB of NOOP lines in one session at the MX',
  expected: `${JUNK_LIMIT} × 250, then 421 4.7.0 and the connection closed; the session record saved, its transcript bounded (at most 1,001 lines), ending in the 421; the receiver's peak RSS rises by less than ${NOOP_PEAK_LIMIT_MiB} MiB`,
  timeoutMs: 60_000,
  async run(lab) {
    const started = new Date().toISOString();
    const { smtp } = await RawSmtp.open(lab.at('receiver', 'mx'), ATTACKER);
    await smtp.command('EHLO mta.attacker.test');
    let sent = 0;
    const { result: replies, memory } = await lab.memoryDuring('receiver', async () => {
      // Read as they come: a server still answering after the limit and one
      // more would answer them all, and the attack stops there.
      let reading = true;
      const replies = smtp.readAll(JUNK_LIMIT + 2).finally(() => (reading = false));
      const block = Buffer.from('NOOP\r\n'.repeat(Math.floor(MiB / 6)));
      while (reading && sent < NOOP_BYTES && (await smtp.send(block))) sent += block.length;
      return replies;
    });
    const closed = smtp.closedByServer;
    smtp.close(); // the session ends here in any case, and its record is saved
    const api = `${lab.service('receiver').console}api/sessions`;
    const transcript = await waitFor('the session record', async () => {
      const sessions: { id: string; client: string; startedAt: string; endedAt?: string }[] = await (await fetch(api)).json();
      const mine = sessions.find((s) => s.client === '192.0.2.66' && s.startedAt >= started && s.endedAt);
      return mine && ((await (await fetch(`${api}/${mine.id}`)).json()).transcript as { line: string }[]);
    }).catch(() => []);
    const last = transcript.at(-1)?.line ?? '';
    return outcome(
      replies.length === JUNK_LIMIT + 1 &&
        replies.slice(0, JUNK_LIMIT).every((r) => r.code === 250) &&
        /^421 4\.7\.0 /.test(replies.at(-1)?.text ?? '') &&
        closed &&
        transcript.length <= 1001 &&
        last.startsWith('S: 421 4.7.0') &&
        memory.peakMiB - memory.rssBeforeMiB < NOOP_PEAK_LIMIT_MiB,
      `${summary(replies)}${replies.length > JUNK_LIMIT + 1 ? ' …' : ''}; ${closed ? 'closed by the server' : 'still open'} after the client wrote ${Math.round(sent / MiB)} MiB; record: ${transcript.length ? `${transcript.length} transcript lines, the last "${last.slice(0, 40)}…"` : 'none saved'}; ${memoryText(memory)}`,
      memory,
    );
  },
};

// The transaction the receiver recorded for a message, by its Message-ID,
// once its session has ended; undefined when none is within 10 s.
async function transaction(lab: AttackLab, messageId: string) {
  const api = `${lab.service('receiver').console}api/sessions`;
  return waitFor('the session record', async () => {
    const [summary] = await (await fetch(`${api}?messageId=${encodeURIComponent(messageId)}`)).json();
    if (!summary?.endedAt) return undefined;
    const record = await (await fetch(`${api}/${summary.id}`)).json();
    return record.transactions[0] as { decision: { code: number }; message?: { size: number } };
  }).catch(() => undefined);
}

export const attacks: Attack[] = [mxMessage, submittedMessage, manyClients, noops];
