// The MX: SMTP from other MTAs for the instance's domains. Each message is
// verified (SPF, DKIM, DMARC, ARC), decided on, and stored or refused; the
// whole session is recorded. Data flows one way:
// SMTP session -> message + envelope -> verify -> decide -> store or refuse -> record.
import '../smtp/command-lines.ts';
import '../smtp/reply-codes.ts';
import { format } from 'node:util';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { labAddress } from '../../lib/addressing.ts';
import type { Logger } from '../../lib/log.ts';
import type { LabResolver } from '../../lib/resolver.ts';
import { decide, replyText } from './decide.ts';
import type { Forwarder, HeldForwards } from '../outbound/forward.ts';
import { headerValue, parseHeaders } from '../smtp/headers.ts';
import type { Instance } from '../instance.ts';
import { MessageMemory, type MessageData } from '../smtp/message-data.ts';
import { splitMailbox, type Delivery, type Maildir } from '../store/maildir.ts';
import { TranscriptKeeper, type Accepted, type SessionRecord, type SessionWriter, type Transaction } from '../store/sessions.ts';
import { mailFromRefusal, rcptToRefusal } from '../smtp/smtputf8.ts';
import { receivedHeader, traceHeaders, type TraceInfo } from '../smtp/trace.ts';
import type { VerifyThread } from './verify-thread.ts';
import { evaluationOf } from '../reports/evaluation.ts';
import type { EvaluationLog } from '../reports/evaluation-log.ts';
import type { FailureReporter } from '../reports/failure.ts';

export interface InboundContext {
  instance: Instance;
  resolver: LabResolver; // reverse lookups of clients
  verifier: Pick<VerifyThread, 'verify'>; // SPF, DKIM, DMARC and ARC, on a thread of their own
  maildir: Maildir;
  sessions: SessionWriter;
  forwarder: Forwarder;
  queued: () => void; // tells the delivery worker there is work
  closing: Set<Promise<void>>; // one per open session, settled by its last save: shutdown awaits them
  log: Logger;
  tls: { key: Buffer; cert: Buffer };
  studentMailboxes?: Map<string, Set<string>>; // classroom mode, at the receiver: domain -> local parts (classroom/mailboxes.ts)
  evaluations?: EvaluationLog; // an instance that sends DMARC aggregate reports (reports/)
  failures?: FailureReporter; // an instance that sends DMARC failure reports (reports/failure.ts)
}

interface Live {
  record: SessionRecord;
  transcript: TranscriptKeeper; // bounded: see sessions.ts
  junkCommands: number; // commands that move no mail, since the last DATA
  clientAddress: string;
  busy: Promise<unknown>; // the message being processed; closing waits for it
  saved: () => void; // settles this session's entry in ctx.closing
  refusedRecipients: number; // unknown mailboxes and foreign domains asked for, in the whole session
}

const smtpError = (code: number, text: string) => Object.assign(new Error(text), { responseCode: code });

// A client that keeps asking for addresses that are not here is guessing
// them (mailbox harvesting, a dictionary attack): after this many refused
// RCPTs in one session the next one gets 421 and the connection is closed,
// as Postfix does after smtpd_hard_error_limit errors (20 there).
const REFUSED_RECIPIENTS = 10;

// RFC 5321 section 6.3: counting Received fields finds mail loops (each MTA
// adds one). Postfix refuses a message with more than 50 (hopcount_limit);
// the RFC asks for a large threshold, and no real path has 50 hops.
const MAX_HOPS = 50;

// Commands that move no mail. A client may send only so many between two
// messages (DATA), then gets 421 and the connection is closed: otherwise one
// client keeps a session, and its slot, forever with NOOP (Postfix:
// smtpd_junk_command_limit, 100, counting NOOP, VRFY, ETRN and RSET). Unknown
// commands count too.
const JUNK_COMMANDS = new Set(['NOOP', 'RSET', 'VRFY', 'EXPN', 'ETRN', 'HELP']);
const JUNK_LIMIT = 100;

// What the junk command limit needs of smtp-server's connection.
type Connection = {
  id: string;
  _ready: boolean;
  _nextHandler: unknown;
  _isSupported(command: string): boolean;
  _onCommand(command: Buffer, callback?: () => void): void;
  send(code: number, data: string): void;
};

export function createInbound(ctx: InboundContext): SMTPServer {
  const { instance, resolver, maildir, sessions, forwarder, log } = ctx;
  const live = new Map<string, Live>();
  // Sessions open per client address: one client may not hold every slot
  // (100 idle connections kept alive with NOOP locked out every other MTA).
  const perAddress = new Map<string, number>();

  // smtp-server reports each command and reply to its logger: that is the transcript.
  const transcript = (meta: { tnx?: string; cid?: string } | undefined, text: string, args: unknown[]) => {
    const session = meta?.cid ? live.get(meta.cid) : undefined;
    const tnx = meta?.tnx;
    if (!session || (tnx !== 'command' && tnx !== 'send' && tnx !== 'data')) return;
    // Most lines are "C:" or "S:" and the line itself: what format() gives, without its work.
    const line = args.length === 1 && typeof args[0] === 'string' && !text.includes('%') ? `${text} ${args[0]}` : format(text, ...args);
    session.transcript.add(new Date().toISOString(), line);
  };
  const smtpLogger = {
    debug: (meta: never, text: string, ...args: unknown[]) => transcript(meta, text, args),
    info: (meta: object, text: string, ...args: unknown[]) => log.debug(meta, format(text, ...args)),
    error: (meta: object, text: string, ...args: unknown[]) => log.warn(meta, format(text, ...args)),
    warn: (meta: object, text: string, ...args: unknown[]) => log.warn(meta, format(text, ...args)),
    trace: () => undefined,
    fatal: (meta: object, text: string, ...args: unknown[]) => log.error(meta, format(text, ...args)),
  };

  // The instance's domains, and in classroom mode the students'.
  const mailboxesOf = (domain: string) => instance.domains.get(domain) ?? ctx.studentMailboxes?.get(domain);
  const mailboxExists = (address: string) => {
    const [local, domain] = splitMailbox(address);
    return mailboxesOf(domain)?.has(local) ?? false;
  };

  // Why a recipient is not taken here, or undefined when it is.
  const recipientRefusal = (address: string): Error | undefined => {
    const [, domain] = splitMailbox(address);
    if (!mailboxesOf(domain)) return smtpError(550, `5.7.1 Relaying denied: ${instance.hostname} does not accept mail for ${domain}`);
    const forwarding = forwarder.accepts(address);
    if (forwarding && !forwarding.ok) return smtpError(550, `5.1.1 ${address}: ${forwarding.reason}`);
    if (!forwarding && !mailboxExists(address)) return smtpError(550, `5.1.1 No such mailbox: ${address}`);
    return undefined;
  };

  // A client sends as many junk commands as it likes until the limit; then 421.
  const limitJunkCommands = (connection: Connection, state: Live) => {
    const onCommand = connection._onCommand;
    connection._onCommand = (command, callback) => {
      const name = command.toString().split(' ')[0].toUpperCase();
      const junk = connection._ready && !connection._nextHandler && (JUNK_COMMANDS.has(name) || !connection._isSupported(name));
      if (!junk || ++state.junkCommands <= JUNK_LIMIT) return onCommand.call(connection, command, callback);
      state.transcript.add(new Date().toISOString(), `C: ${command.toString()}`);
      log.info({ session: connection.id, client: state.clientAddress }, 'too many commands without mail: closing the session');
      // A 421 closes the connection; nothing more of what the client sent is read.
      connection.send(421, `4.7.0 ${instance.hostname} Too many commands without mail: more than ${JUNK_LIMIT} NOOP, RSET, VRFY, HELP or unknown commands since the last message; closing the connection`);
    };
  };

  const memory = new MessageMemory(instance.limits.messageSize);

  async function receive(stream: SMTPServerDataStream, session: SMTPServerSession, state: Live): Promise<string> {
    const read = await memory.read(stream, state.clientAddress);
    try {
      return await verifyAndStore(read, session, state);
    } finally {
      read.release();
    }
  }

  async function verifyAndStore({ message, size, oversized, overMemory }: MessageData, session: SMTPServerSession, state: Live): Promise<string> {
    const fields = parseHeaders(message);
    const envelope = {
      mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
      rcptTo: session.envelope.rcptTo.map((r) => r.address),
    };
    const transaction: Transaction = {
      at: new Date().toISOString(),
      envelope,
      message: { ...summary(fields), size },
      dns: [],
      decision: { disposition: 'refused', code: 0, enhanced: '', reason: '' },
      deliveries: [],
    };
    state.record.transactions.push(transaction);
    const refuse = async (code: number, enhanced: string, reason: string) => {
      transaction.decision = { disposition: 'refused', code, enhanced, reason };
      await sessions.save(state.record, true);
      throw smtpError(code, `${enhanced} ${reason}`);
    };

    if (oversized) {
      return refuse(552, '5.3.4', `message exceeds the size limit of ${instance.limits.messageSize} bytes`);
    }
    if (overMemory) {
      return refuse(452, '4.3.1', `Insufficient system storage: ${overMemory}; try again later`);
    }
    // RFC 5321 section 2.3.8: lines end in CRLF. A bare LF or CR is how SMTP
    // smuggling hides a second message inside the first, so it is refused.
    const bare = findBareLineEnding(message);
    if (bare) {
      return refuse(550, '5.5.2', `bare ${bare.kind} in message data at byte ${bare.at}: lines must end in CRLF (RFC 5321 section 2.3.8)`);
    }
    const nul = message.indexOf(0);
    if (nul !== -1) {
      return refuse(550, '5.6.0', `NUL byte in message data at byte ${nul}: a message has none (RFC 5322 section 2.3, RFC 2045 section 2.8)`);
    }
    const hops = fields.filter((f) => f.name.trim().toLowerCase() === 'received').length;
    if (hops > MAX_HOPS) {
      return refuse(554, '5.4.6', `Too many hops: ${hops} Received fields, more than ${MAX_HOPS}: the message is in a mail loop (RFC 5321 section 6.3)`);
    }

    let verdict;
    try {
      verdict = await ctx.verifier.verify(message, { clientAddress: state.clientAddress, helo: session.hostNameAppearsAs, mailFrom: envelope.mailFrom });
    } catch (error) {
      // A fault in the checks (the verification thread stopped): nothing is
      // decided without them. The client keeps the message and retries, and
      // the record says what it heard and why.
      log.error({ err: error, session: session.id }, 'verification failed: 451');
      transaction.decision = { disposition: 'defer', code: 451, enhanced: '4.3.0', reason: `local error while checking the message: ${(error as Error).message}` };
      await sessions.save(state.record, true);
      throw smtpError(451, '4.3.0 Local error while checking the message; try again later');
    }
    const decision = decide(verdict, instance.policy);
    const { headers, dns, arcSealInput, ...checks } = verdict;
    transaction.checks = checks;
    transaction.dns = dns;
    transaction.decision = decision;
    log.info({ session: session.id, envelope, messageId: transaction.message?.messageId, disposition: decision.disposition, rule: decision.rule, reason: decision.reason }, 'decision');

    // What a report counts: the decisions that stand (a deferred message comes back).
    const evaluated = () => {
      const evaluation = decision.disposition !== 'defer' && ctx.evaluations && evaluationOf(transaction.at, state.clientAddress, envelope, checks, decision);
      if (evaluation) ctx.evaluations!.add(evaluation);
      if (decision.disposition !== 'defer') ctx.failures?.consider({ at: transaction.at, sourceIp: state.clientAddress, envelope, checks, added: headers, decision, message });
    };
    if (decision.disposition === 'reject' || decision.disposition === 'defer') {
      await sessions.save(state.record, true);
      evaluated();
      throw smtpError(decision.code!, replyText(decision));
    }
    const folder = decision.disposition === 'junk' ? 'Junk' : 'INBOX';
    const trace = (recipient?: string): TraceInfo => ({
      hostname: instance.hostname,
      sessionId: session.id,
      clientAddress: state.clientAddress,
      clientHostname: state.record.client.hostname,
      helo: session.hostNameAppearsAs,
      tls: state.record.tls,
      authenticated: false,
      mailFrom: envelope.mailFrom,
      recipient,
    });
    // Aliases and lists send the message on (whatever its folder would be
    // here: the final receiver decides); mailboxes keep it.
    const forwarded = envelope.rcptTo.filter((r) => forwarder.accepts(r)?.ok);
    // All or nothing, as the client hears 250 or 451 for the whole message:
    // every copy is written (Maildir tmp/, queue entries held) before any is
    // in a mailbox or delivered, and the record is saved before any is
    // released. When a step fails (a full disk), what was written is removed:
    // a 451 leaves nothing behind that the client's retry would duplicate.
    const written: Delivery[] = [];
    const copies: Accepted['copies'] = [];
    let held: HeldForwards | undefined;
    try {
      for (const recipient of envelope.rcptTo.filter((r) => !forwarded.includes(r))) {
        const prefix = traceHeaders(trace(recipient), headers);
        const delivery = await maildir.write(recipient, folder, prefix, message);
        written.push(delivery);
        copies.push({ path: delivery.path, prefix });
      }
      if (forwarded.length) {
        const received = receivedHeader(trace(forwarded.length === 1 ? forwarded[0] : undefined));
        held = await forwarder.forward(message, envelope.mailFrom, forwarded, received, arcSealInput);
        transaction.forwarded = held.forwarded;
      }
      transaction.deliveries = written.map(({ path: _path, ...delivery }) => delivery);
      maildir.commit(written);
      // The copies and the record, durable together: then the 250.
      await sessions.save(state.record, true, { message, copies });
    } catch (error) {
      maildir.discard(written);
      held?.discard();
      // Nothing is acknowledged that is not on disk: the client keeps the message and retries.
      log.error({ err: error, session: session.id }, 'storing failed: every copy removed, 451');
      transaction.deliveries = [];
      delete transaction.forwarded;
      transaction.decision = { ...decision, disposition: 'defer', reason: `local storage error: ${(error as Error).message}` };
      await sessions.save(state.record, false).catch(() => undefined);
      throw smtpError(451, '4.3.0 Local error while storing the message; try again later');
    }
    if (held) {
      held.release();
      ctx.queued();
    }
    evaluated();
    const delivered = transaction.deliveries.length ? [`Delivered to ${folder}: ${transaction.deliveries.map((d) => d.id).join(', ')}`] : [];
    const sent = (transaction.forwarded ?? []).map((f) => `forwarded as ${f.queueId} to ${f.to.join(', ')}`);
    return [...delivered, ...sent].join('; ');
  }

  const server = new SMTPServer({
    name: instance.hostname,
    banner: `mail-lab ${instance.name}`,
    size: instance.limits.messageSize,
    maxClients: instance.limits.clients,
    socketTimeout: instance.limits.idleSeconds * 1000,
    // On shutdown, idle clients (other MTAs' pooled connections) get 421 after 3 s.
    closeTimeout: 3000,
    disabledCommands: ['AUTH'],
    hideENHANCEDSTATUSCODES: false,
    hideDSN: true, // NOTIFY, RET and ENVID are not implemented: do not offer them
    authOptional: true,
    key: ctx.tls.key,
    cert: ctx.tls.cert,
    logger: smtpLogger as never,
    // Reverse lookups go to the lab DNS, for the lab address of the client.
    resolver: {
      reverse: (address: string, callback: (error: Error | null, names?: string[]) => void) => {
        resolver
          .resolve(reverseName(labAddress(address)), 'PTR')
          // A copy: smtp-server takes names off the list it gets, and this one is the cache's.
          .then((names) => callback(null, [...(names as string[])]), (error) => callback(error));
      },
    } as never,

    onConnect(session, callback) {
      const clientAddress = labAddress(session.remoteAddress);
      const open = perAddress.get(clientAddress) ?? 0;
      if (open >= instance.limits.clientsPerAddress) {
        log.info({ client: clientAddress, open }, 'too many connections from one address: refused');
        // In place of the greeting, as Postfix words it.
        return callback(smtpError(421, `4.7.0 ${instance.hostname} Too many connections from ${clientAddress}: at most ${instance.limits.clientsPerAddress} at once; try again later`));
      }
      perAddress.set(clientAddress, open + 1);
      const hostname = session.clientHostname && !session.clientHostname.startsWith('[') ? session.clientHostname : undefined;
      let saved!: () => void;
      const ended = new Promise<void>((resolve) => (saved = resolve));
      ctx.closing.add(ended);
      ended.then(() => ctx.closing.delete(ended));
      const record: SessionRecord = {
        id: session.id,
        instance: instance.name,
        startedAt: new Date().toISOString(),
        client: { address: clientAddress, port: session.remotePort, hostname },
        transcript: [],
        transactions: [],
      };
      const state: Live = { clientAddress, busy: Promise.resolve(), saved, refusedRecipients: 0, junkCommands: 0, record, transcript: new TranscriptKeeper(record) };
      live.set(session.id, state);
      const connection = [...(server.connections as Set<unknown> as Set<Connection>)].find((c) => c.id === session.id);
      if (connection) limitJunkCommands(connection, state);
      callback();
    },

    onMailFrom(address, session, callback) {
      const eightBit = mailFromRefusal(address);
      if (eightBit) return callback(eightBit);
      const state = live.get(session.id);
      if (state) {
        state.record.client.helo = session.hostNameAppearsAs;
        if (session.secure && session.tlsOptions) {
          state.record.tls = { protocol: session.tlsOptions.version, cipher: session.tlsOptions.name };
        }
      }
      callback();
    },

    onRcptTo(address, session, callback) {
      const eightBit = rcptToRefusal(address, session);
      if (eightBit) return callback(eightBit);
      const refused = recipientRefusal(address.address);
      if (refused) {
        const state = live.get(session.id);
        if (state && ++state.refusedRecipients > REFUSED_RECIPIENTS) {
          log.info({ session: session.id, client: state.clientAddress }, 'too many refused recipients: closing the session');
          return callback(smtpError(421, `4.7.0 Too many unknown recipients: more than ${REFUSED_RECIPIENTS} refused in one session; closing the connection`));
        }
        return callback(refused);
      }
      if (session.envelope.rcptTo.length >= instance.limits.recipients) {
        return callback(smtpError(452, `4.5.3 Too many recipients: at most ${instance.limits.recipients} per message`));
      }
      callback();
    },

    onData(stream, session, callback) {
      const state = live.get(session.id);
      if (!state) {
        stream.resume();
        return callback(smtpError(451, '4.3.0 Session state lost; try again'));
      }
      state.junkCommands = 0;
      const work = receive(stream, session, state).then(
        (reply) => callback(null, reply),
        (error: Error & { responseCode?: number }) => {
          if (!error.responseCode) {
            log.error({ err: error, session: session.id }, 'processing failed');
            return callback(smtpError(451, '4.3.0 Local error in processing; try again later'));
          }
          callback(error);
        },
      );
      state.busy = work;
    },

    onClose(session) {
      const state = live.get(session.id);
      if (!state) return;
      live.delete(session.id);
      const open = perAddress.get(state.clientAddress)! - 1;
      if (open) perAddress.set(state.clientAddress, open);
      else perAddress.delete(state.clientAddress);
      state.busy
        .finally(() => {
          state.transcript.finish();
          state.record.endedAt = new Date().toISOString();
          return sessions.save(state.record, false);
        })
        .catch((error) => log.error({ err: error, session: session.id }, 'saving the session record failed'))
        .finally(state.saved);
    },
  });
  // smtp-server wraps the logger it is given in one that copies every entry's
  // fields first: ten times a message, for lines the transcript takes as they are.
  (server as unknown as { logger: { debug: (meta: never, text: string, ...args: unknown[]) => void } }).logger.debug = smtpLogger.debug;
  server.on('error', (error) => log.warn({ err: error }, 'SMTP server error'));
  return server;
}

// The header fields a person looks for first; the message itself stays as sent.
function summary(fields: { name: string; value: string }[]): { messageId?: string; from?: string; subject?: string } {
  return { messageId: headerValue(fields, 'Message-ID'), from: headerValue(fields, 'From'), subject: headerValue(fields, 'Subject') };
}

export function findBareLineEnding(message: Buffer): { kind: 'LF' | 'CR'; at: number } | undefined {
  for (let at = message.indexOf(10); at !== -1; at = message.indexOf(10, at + 1)) {
    if (at === 0 || message[at - 1] !== 13) return { kind: 'LF', at };
  }
  for (let at = message.indexOf(13); at !== -1; at = message.indexOf(13, at + 1)) {
    if (message[at + 1] !== 10) return { kind: 'CR', at };
  }
  return undefined;
}

function reverseName(address: string): string {
  return `${address.split('.').reverse().join('.')}.in-addr.arpa`;
}
