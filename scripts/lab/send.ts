// npm run lab -- send: a lab-aware swaks. Submits a message through a lab
// MTA (port 587, STARTTLS with the lab CA, AUTH with a lab password from the
// instance file) and, with --wait, follows it to each recipient's MTA and
// prints what that MTA decided and why.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createTransport } from 'nodemailer';
import type { Instance } from '../../services/mta/instance.ts';
import { splitMailbox } from '../../services/mta/store/maildir.ts';
import type { QueueEntry, QueueRecipient } from '../../services/mta/outbound/queue.ts';
import type { SessionRecord, SessionSummary } from '../../services/mta/store/sessions.ts';
import { getJson } from './api.ts';
import { owner, root, service, type Lab, type LabService } from './compose.ts';
import { LabError, LabNotAnswering } from './errors.ts';
import { COMPOSE_USAGE } from './published.ts';
import { describe } from './verdict.ts';

export const usage = `npm run lab -- send --from ADDRESS --to ADDRESS [--to ...] [options]

Submits a message through the lab MTA that holds the --from domain (its
submission port, STARTTLS with the lab CA, AUTH) and prints the queue id.
It logs in as --from with that user's lab password from the instance file;
when --from has no password there (a spoof through --via), as the
instance's first user.

  --subject TEXT   the Subject (default "Hello from the lab")
  --body TEXT      the body (default a line saying who sent it)
  --via NAME       submit through this compose service instead (e.g. attacker)
  --wait           then follow the message to each recipient's MTA and print
                   its decision: disposition, folder, spf/dkim/dmarc, and why
                   (waits up to 30 s)
${COMPOSE_USAGE}

Examples:
  npm run lab -- send --from alice@sender.test --to bob@receiver.test --wait
  npm run lab -- send --via attacker --from ceo@sender.test --to alice@receiver.test --wait`;

const WAIT_MS = 30_000;

export async function run(argv: string[], lab: Lab): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      from: { type: 'string' },
      to: { type: 'string', multiple: true },
      subject: { type: 'string', default: 'Hello from the lab' },
      body: { type: 'string' },
      via: { type: 'string' },
      wait: { type: 'boolean' },
    },
  });
  const { from, to = [] } = values;
  if (!from || to.length === 0) throw new LabError('send needs --from and --to (npm run lab -- send --help)', 2);
  const domain = splitMailbox(from)[1];
  const via = values.via ? service(lab, values.via) : owner(lab, domain);
  if (!via?.instance) {
    const mtas = lab.services.filter((s) => s.instance).map((s) => s.name);
    throw new LabError(`no lab MTA holds ${domain}: choose the one to submit through with --via (${mtas.join(', ')})`, 2);
  }
  const auth = login(via.instance, from);
  if (!auth) throw new LabError(`${via.instance.file} has no submission passwords: nobody can log in to ${via.name}`, 2);

  const port = via.ports.find((p) => p.name === 'submission')?.port;
  if (!port) throw new LabError(`${via.name}'s submission port is not published by compose.yaml: submit through another MTA (--via), or use the embedded lab`, 2);
  const transport = createTransport({
    host: via.address,
    port,
    secure: false,
    auth,
    tls: { ca: readFileSync(join(root, via.env.MTA_CERT_DIR ?? 'instances/certs', 'ca.pem')), servername: via.instance.hostname },
    connectionTimeout: 5000,
    socketTimeout: 10_000,
  });
  let info;
  try {
    info = await transport.sendMail({ from, to, subject: values.subject, text: values.body ?? `Sent by ${from} through ${via.instance.hostname}.\n` });
  } catch (error) {
    const e = error as { code?: string; response?: string; message: string };
    if (e.code === 'ESOCKET' && /ECONNREFUSED/.test(e.message)) throw new LabNotAnswering(`nothing answers at ${via.address}:${port}: is the lab running?`);
    throw new LabError(`${via.name} did not take the message: ${e.response ?? e.message}`);
  } finally {
    transport.close();
  }
  const queueId = /queued as (\S+)/.exec(info.response)?.[1] ?? '?';
  process.stdout.write(`queued as ${queueId} at ${via.name} (${via.instance.hostname}, AUTH ${auth.user}); Message-ID ${info.messageId}\n`);
  if (!values.wait) return 0;

  let exitCode = 0;
  const deadline = Date.now() + WAIT_MS;
  for (const recipient of to.map((r) => r.toLowerCase())) {
    const { lines, followed } = await follow(lab, via, queueId, info.messageId, recipient, deadline);
    if (!followed) exitCode = 1;
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  return exitCode;
}

// The user's own password when the instance has one for --from, else the
// instance's first user: the attacker logs in as itself to send as others.
function login(instance: Instance, from: string): { user: string; pass: string } | undefined {
  const [local, domain] = splitMailbox(from);
  const own = instance.submission.passwords.get(local);
  if (own !== undefined && instance.domains.has(domain)) return { user: from, pass: own };
  const first = instance.submission.passwords.entries().next().value;
  return first && { user: `${first[0]}@${instance.domains.keys().next().value}`, pass: first[1] };
}

// The receiving MTA's first decision about this message for this
// recipient; or, when it has none, what the submitting MTA's queue knows.
async function follow(lab: Lab, via: LabService, queueId: string, messageId: string, recipient: string, deadline: number) {
  const domain = splitMailbox(recipient)[1];
  const mta = owner(lab, domain);
  if (!mta?.console) return { followed: true, lines: [`${recipient}: no lab MTA receives mail for ${domain}, so there is nothing to follow`] };
  const query = `${mta.console}api/sessions?messageId=${encodeURIComponent(messageId)}&recipient=${encodeURIComponent(recipient)}`;
  const decision = async () => {
    const [found] = await getJson<SessionSummary[]>(query);
    const record = found && (await getJson<SessionRecord>(`${mta.console}api/sessions/${found.id}`));
    const t = record?.transactions.find((x) => x.message?.messageId === messageId && x.envelope.rcptTo.some((r) => r.toLowerCase() === recipient));
    return t && [`${recipient} at ${mta.name} (${mta.instance!.hostname}):`, ...describe(t, recipient).map((l) => `  ${l}`)];
  };
  let queued: QueueRecipient | undefined;
  while (Date.now() < deadline) {
    const lines = await decision();
    if (lines) return { followed: true, lines };
    // A recipient refused at RCPT leaves no decision at the receiver, only a failure in the sender's queue.
    const entry = await getJson<QueueEntry>(`${via.console}api/queue/${queueId}`).catch(() => undefined);
    queued = entry?.recipients.find((r) => r.address.toLowerCase() === recipient);
    if (!queued || queued.status === 'failed') {
      const late = await decision();
      if (late) return { followed: true, lines: late };
      const why = queued?.lastReply ?? `${via.name} has finished with it (look for a bounce to the sender)`;
      return { followed: false, lines: [`${recipient}: refused before ${mta.name} saw the message: ${why}`] };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const where = queued ? `${queued.status} after ${queued.attempts} attempts${queued.lastReply ? `: ${queued.lastReply}` : ''}` : 'unknown';
  return { followed: false, lines: [`${recipient}: not at ${mta.name} within ${WAIT_MS / 1000} s; in ${via.name}'s queue: ${where}`] };
}
