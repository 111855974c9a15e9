// Outbound mail in tests: hand a message to an instance's submission port
// the way a mail client does, and wait (bounded) for what arrives in a
// Maildir or shows in an API.
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LabMta } from './lab.ts';
import { RawSmtp, type Reply } from './smtp.ts';

// The lab passwords of the users the tests log in as (the instance files).
const PASSWORDS: Record<string, string> = {
  'alice@sender.test': 'alice-lab-password',
  'mallory@attacker.test': 'mallory-lab-password',
};

export interface Submission {
  user?: string; // AUTH PLAIN as this user (password from PASSWORDS unless given)
  password?: string;
  mailFrom: string;
  to: string[];
  data: string; // header and body, without the final "."
  client?: string; // the address to connect from
}

// One SMTP transaction on the submission port: the first refusal, or the
// reply to the message; code 0 when the server went away.
export async function submit(mta: Pick<LabMta, 'host' | 'submissionPort'>, s: Submission): Promise<Reply> {
  const { smtp } = await RawSmtp.open(mta.host, mta.submissionPort, s.client ?? '127.0.0.1');
  const send = (data: string) => {
    smtp.write(data);
    return smtp.read(15_000);
  };
  try {
    const lines = ['EHLO client.example'];
    if (s.user) lines.push(`AUTH PLAIN ${Buffer.from(`\0${s.user}\0${s.password ?? PASSWORDS[s.user]}`).toString('base64')}`);
    lines.push(`MAIL FROM:<${s.mailFrom}>`, ...s.to.map((r) => `RCPT TO:<${r}>`), 'DATA');
    for (const line of lines) {
      const reply = await send(`${line}\r\n`);
      if (reply.code >= 400 || reply.code === 0) return reply;
    }
    return await send(`${s.data.replace(/\r?\n$/, '')}\r\n.\r\n`);
  } finally {
    smtp.end();
  }
}

// Lab hosts that tests speak for straight to an MX: the loopback twin of the
// host's lab address, and its HELO name.
export const SENDER_HOST = { address: '127.0.2.10', helo: 'mta.sender.test' }; // the address the honest domains' SPF names
export const ATTACKER_HOST = { address: '127.0.2.66', helo: 'mta.attacker.test' };

// One message straight to an MX, from a lab host, for bob@receiver.test:
// the reply to the message (or the first refusal).
export async function deliver(to: Pick<LabMta, 'host' | 'mxPort'>, client: { address: string; helo: string }, mailFrom: string, data: string): Promise<Reply> {
  const { smtp } = await RawSmtp.open(to.host, to.mxPort, client.address);
  await smtp.command(`EHLO ${client.helo}`);
  await smtp.command(`MAIL FROM:<${mailFrom}>`);
  await smtp.command('RCPT TO:<bob@receiver.test>');
  await smtp.command('DATA');
  smtp.write(data + '.\r\n');
  const reply = await smtp.read(15_000);
  await smtp.command('QUIT');
  return reply;
}

// The transaction an MTA recorded for a message, by its Message-ID.
export async function recorded(at: LabMta, messageId: string) {
  const base = `http://${at.host}:${at.apiPort}/api/sessions`;
  const [summary] = await (await fetch(`${base}?messageId=${encodeURIComponent(messageId)}`)).json();
  return (await (await fetch(`${base}/${summary.id}`)).json()).transactions[0];
}

// A simple message; `id` makes its Message-ID and Subject unique.
export function message(from: string, to: string, id: string): string {
  return `From: ${from}\r\nTo: ${to}\r\nSubject: ${id}\r\nMessage-ID: <${id}@client.example>\r\nDate: ${new Date().toUTCString()}\r\n\r\nHello from ${id}.\r\n`;
}

// Polls until `check` returns a value (not undefined), at most timeoutMs.
export async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// The messages in a mailbox's INBOX (new/), as text.
export async function inbox(mta: LabMta, mailbox: string): Promise<string[]> {
  const dir = join(mta.maildir.folderPath(mailbox, 'INBOX'), 'new');
  const names = await readdir(dir).catch(() => []);
  return Promise.all(names.map((name) => readFile(join(dir, name), 'latin1')));
}

// Waits for a message containing `marker` (e.g. its Subject) in the mailbox.
export function arrival(mta: LabMta, mailbox: string, marker: string, timeoutMs = 10_000): Promise<string> {
  return waitFor(`${marker} in ${mailbox}`, async () => (await inbox(mta, mailbox)).find((text) => text.includes(marker)), timeoutMs);
}

// One header field of a stored message, unfolded ('' when absent).
export function header(text: string, name: string): string {
  const head = text.slice(0, text.indexOf('\r\n\r\n'));
  const match = new RegExp(`^${name}:[ \\t]*((?:.*)(?:\\r\\n[ \\t].*)*)`, 'im').exec(head);
  return match ? match[1].replace(/\r\n[ \t]+/g, ' ') : '';
}

export async function api<T = unknown>(mta: LabMta, path: string): Promise<T> {
  const response = await fetch(`http://${mta.host}:${mta.apiPort}${path}`);
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json() as Promise<T>;
}

// Runs swaks (never blocking this process, whose servers it talks to).
export function swaks(args: string[]): Promise<{ status: number; output: string }> {
  return new Promise((resolve) => {
    execFile('swaks', args, { timeout: 20_000 }, (error, stdout, stderr) => {
      resolve({ status: error ? Number((error as { code?: number }).code ?? 1) : 0, output: stdout + stderr });
    });
  });
}
