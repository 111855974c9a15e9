// npm run lab -- inbox [MAILBOX]: what arrived, and what each MTA decided.
import { parseArgs } from 'node:util';
import { splitMailbox } from '../../services/mta/store/maildir.ts';
import type { SessionRecord, SessionSummary } from '../../services/mta/store/sessions.ts';
import { getJson } from './api.ts';
import { owner, type Lab } from './compose.ts';
import { LabError } from './errors.ts';
import { COMPOSE_USAGE } from './published.ts';
import { table } from './table.ts';
import { describe } from './verdict.ts';

const SHOWN = 20;

export const usage = `npm run lab -- inbox [MAILBOX] [--compose]

Without MAILBOX: every mailbox of every lab MTA that has received mail, with
its INBOX and Junk counts. With MAILBOX (e.g. alice@receiver.test): the last
${SHOWN} messages that came for it, newest first, each with what its MTA decided
(the folder, or the refusal), spf/dkim/dmarc, and why.

${COMPOSE_USAGE}`;

interface Mailbox {
  mailbox: string;
  folders: { folder: string; messages: number; unseen: number }[];
}

export async function run(argv: string[], lab: Lab): Promise<number> {
  const { positionals } = parseArgs({ args: argv, options: {}, allowPositionals: true });
  if (positionals.length > 1) throw new LabError('inbox takes at most one MAILBOX (npm run lab -- inbox --help)', 2);
  if (positionals.length === 0) {
    const rows: string[][] = [];
    for (const mta of lab.services.filter((s) => s.console)) {
      for (const { mailbox, folders } of await getJson<Mailbox[]>(`${mta.console}api/mailboxes`)) {
        rows.push([mta.name, mailbox, ...folders.map((f) => `${f.messages} (${f.unseen} new)`)]);
      }
    }
    process.stdout.write(rows.length === 0 ? 'no mail has arrived yet\n' : `${table([['service', 'mailbox', 'INBOX', 'Junk'], ...rows])}\n`);
    return 0;
  }

  const mailbox = positionals[0].toLowerCase();
  const mta = owner(lab, splitMailbox(mailbox)[1]);
  if (!mta?.console) throw new LabError(`no lab MTA holds the domain of ${mailbox}`, 2);
  const sessions = await getJson<SessionSummary[]>(`${mta.console}api/sessions?recipient=${encodeURIComponent(mailbox)}`);
  if (sessions.length === 0) process.stdout.write(`nothing has come for ${mailbox} at ${mta.name}\n`);
  for (const summary of sessions.slice(0, SHOWN)) {
    const record = await getJson<SessionRecord>(`${mta.console}api/sessions/${summary.id}`);
    for (const t of record.transactions.filter((x) => x.envelope.rcptTo.some((r) => r.toLowerCase() === mailbox))) {
      const from = t.message?.from ?? `<${t.envelope.mailFrom}>`;
      process.stdout.write(`${t.at}  from ${from} via ${record.client.address}  ${JSON.stringify(t.message?.subject ?? '')}\n`);
      process.stdout.write(`${describe(t, mailbox).map((l) => `  ${l}`).join('\n')}\n`);
    }
  }
  return 0;
}
