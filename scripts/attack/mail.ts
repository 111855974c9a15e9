// Mail as the attacks send and read it: one submission the way a mail
// client makes it, a message with a header section of the attack's choice,
// and the MTAs' API.
import type { AttackLab } from './lab.ts';
import { RawSmtp, type Reply } from './net.ts';

export interface Submission {
  user: string; // AUTH PLAIN as this login, with its lab password from the instance file
  mailFrom: string;
  to: string;
  data: string; // header and body
}

// One transaction on the MTA's submission port from 127.0.0.1 (no lab
// host): the first refusal, or the reply to the message.
export async function submit(lab: AttackLab, mta: string, s: Submission): Promise<Reply> {
  const { smtp } = await RawSmtp.open(lab.at(mta, 'submission'), '127.0.0.1');
  try {
    const password = lab.service(mta).instance!.submission.passwords.get(s.user.split('@')[0])!;
    const lines = ['EHLO client.example', `AUTH PLAIN ${Buffer.from(`\0${s.user}\0${password}`).toString('base64')}`, `MAIL FROM:<${s.mailFrom}>`, `RCPT TO:<${s.to}>`, 'DATA'];
    for (const line of lines) {
      const reply = await smtp.command(line);
      if (reply.code >= 400 || reply.code === 0) return reply;
    }
    smtp.write(`${s.data}.\r\n`);
    return await smtp.read(15_000);
  } finally {
    smtp.end();
  }
}

// A message whose header section starts with `head` (its From fields, say).
export function message(head: string, to: string, id: string): { messageId: string; data: string } {
  const messageId = `<${id}.${Date.now()}@client.example>`;
  return { messageId, data: `${head}\r\nTo: ${to}\r\nSubject: ${id}\r\nMessage-ID: ${messageId}\r\nDate: ${new Date().toUTCString()}\r\n\r\nFrom the attack run.\r\n` };
}

export async function api<T = any>(lab: AttackLab, mta: string, path: string): Promise<T> {
  const response = await fetch(`${lab.service(mta).console}api${path}`, { signal: AbortSignal.timeout(5000) });
  return response.json() as Promise<T>;
}
