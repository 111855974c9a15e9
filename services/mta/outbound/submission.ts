// Submission (RFC 6409): the instance's users hand in mail on port 587 after
// AUTH. The message gets what a submission server adds (Message-ID, Date,
// CRLF line ends, a Received field), is DKIM-signed for its From domain and
// queued durably before the 250. With `senders: own` a user sends only as
// the address it logged in with or one of its aliases, in MAIL FROM and in
// From:, and From: must name one author, read as the MX reads it (author.ts).
// In classroom mode (at the sender) each student logs in as <name>@<domain>
// with their credential and sends as any address at their own domain, and
// only there; the teacher's credential is no mailbox's and logs in nowhere,
// except for a student: AUTH PLAIN with the student's address as the
// authorization identity (RFC 4616) and `teacher` or `grader` with that
// credential logs in as the student (the exercise checks send their mail so).
import '../smtp/command-lines.ts';
import '../smtp/reply-codes.ts';
import { domainToASCII } from 'node:url';
import { dkimVerify } from 'mailauth';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { labAddress } from '../../lib/addressing.ts';
import { GRADER, TEACHER, type Classroom, type Student } from '../../lib/classroom.ts';
import type { Logger } from '../../lib/log.ts';
import { AuthThrottle } from '../../lib/auth-throttle.ts';
import { checkAuthor, type Author } from '../inbound/author.ts';
import { headerValue, parseHeaders } from '../smtp/headers.ts';
import type { Instance } from '../instance.ts';
import { splitMailbox } from '../store/maildir.ts';
import { MessageMemory, type MessageData } from '../smtp/message-data.ts';
import type { Queue } from './queue.ts';
import type { Signer } from './sign.ts';
import { mailFromRefusal, rcptToRefusal } from '../smtp/smtputf8.ts';
import { receivedHeader, rfc5322Date } from '../smtp/trace.ts';

export interface SubmissionContext {
  instance: Instance;
  queue: Queue;
  signer: Signer;
  log: Logger;
  tls: { key: Buffer; cert: Buffer };
  queued: () => void; // tells the delivery worker there is work
  classroom?: Classroom; // its students log in here (the sender, in classroom mode)
}

const smtpError = (code: number, text: string) => Object.assign(new Error(text), { responseCode: code });

export function createSubmission(ctx: SubmissionContext): SMTPServer {
  const { instance, queue, signer, log } = ctx;
  const ours = (domain: string) => instance.domains.has(domain.toLowerCase());
  // The addresses a logged-in user may send as: its login and its aliases.
  const own = (user: string) => [user, ...(instance.submission.aliases.get(user) ?? [])];
  // A student's login is their address; they send as anyone at their domain.
  const studentOf = (user: string): Student | undefined => ctx.classroom?.students.find((s) => s.address === user);
  const mayUse = (user: string, address: string) => {
    const student = studentOf(user);
    if (student) return address.slice(address.lastIndexOf('@') + 1).toLowerCase() === student.domain;
    return instance.submission.senders === 'any' || own(user).includes(address.toLowerCase());
  };
  const notOwn = (user: string, what: string) => {
    const student = studentOf(user);
    if (student) return `5.7.1 ${user} may not send as ${what}: only as an address at ${student.domain}, the domain of student ${student.name}`;
    return `5.7.1 ${user} may not send as ${what}: only as ${own(user).join(' or ')} (submission.senders: own)`;
  };
  const throttle = new AuthThrottle();

  const memory = new MessageMemory(instance.limits.messageSize);

  async function submit(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const read = await memory.read(stream, labAddress(session.remoteAddress));
    try {
      return await signAndQueue(read, session);
    } finally {
      read.release();
    }
  }

  async function signAndQueue({ message: data, oversized, overMemory }: MessageData, session: SMTPServerSession): Promise<string> {
    if (oversized) throw smtpError(552, `5.3.4 Message exceeds the size limit of ${instance.limits.messageSize} bytes`);
    if (overMemory) throw smtpError(452, `4.3.1 Insufficient system storage: ${overMemory}; try again later`);
    // Line ends can be mended (below); a NUL cannot, and no MX should get one.
    const nul = data.indexOf(0);
    if (nul !== -1) throw smtpError(550, `5.6.0 NUL byte in message data at byte ${nul}: a message has none (RFC 5322 section 2.3, RFC 2045 section 2.8)`);
    let message = normalizeLineEnds(data);

    const fields = parseHeaders(message);
    // A From the MX would refuse, or read as someone else, is not signed.
    const author = await submittedAuthor(message, fields);
    if (!author.domain) throw smtpError(550, `5.7.1 Message refused: the author is unclear: ${author.problem}`);
    const user = String(session.user);
    if (!mayUse(user, author.mailboxes[0])) throw smtpError(550, notOwn(user, `From: ${values(fields, 'From')[0]}`));
    // RFC 6409 section 8: the submission server may add what is missing.
    let added = '';
    const messageId = headerValue(fields, 'Message-ID') ?? `<${Date.now().toString(36)}.${session.id}@${instance.hostname}>`;
    if (!headerValue(fields, 'Message-ID')) added += `Message-ID: ${messageId}\r\n`;
    if (!headerValue(fields, 'Date')) added += `Date: ${rfc5322Date(new Date())}\r\n`;
    const recipients = session.envelope.rcptTo.map((r) => r.address);
    const received = receivedHeader({
      hostname: instance.hostname,
      sessionId: session.id,
      clientAddress: labAddress(session.remoteAddress),
      helo: session.hostNameAppearsAs,
      tls: session.secure && session.tlsOptions ? { protocol: session.tlsOptions.version, cipher: session.tlsOptions.name } : undefined,
      authenticated: true,
      mailFrom: '',
      recipient: recipients.length === 1 ? recipients[0] : undefined,
    });
    message = Buffer.concat([Buffer.from(received + added), message]);

    let signatures: string;
    try {
      signatures = await signer.sign(message, author.domain);
    } catch (error) {
      log.error({ err: error, session: session.id }, 'signing failed');
      throw smtpError(451, `4.3.0 Signing failed, the message was not accepted: ${(error as Error).message}`);
    }
    const entry = await queue.add(Buffer.concat([Buffer.from(signatures), message]), {
      mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
      recipients,
      messageId,
      origin: 'submission',
      submittedBy: String(session.user),
    });
    log.info({ queueId: entry.id, user: session.user, from: entry.mailFrom, to: recipients, messageId, signed: signatures !== '' }, 'queued');
    ctx.queued();
    return `Ok: queued as ${entry.id}`;
  }

  const server = new SMTPServer({
    name: instance.hostname,
    banner: `mail-lab ${instance.name} submission`,
    size: instance.limits.messageSize,
    maxClients: instance.limits.clients,
    socketTimeout: instance.limits.idleSeconds * 1000,
    // On shutdown, idle clients (other MTAs' pooled connections) get 421 after 3 s.
    closeTimeout: 3000,
    authMethods: ['PLAIN', 'LOGIN'],
    allowInsecureAuth: instance.submission.plaintextAuth,
    hideENHANCEDSTATUSCODES: false,
    // No DSN extension (RFC 3461): NOTIFY=, RET= and ENVID= are not honoured,
    // so a client must not be told they are (NOTIFY=NEVER would still bounce).
    hideDSN: true,
    key: ctx.tls.key,
    cert: ctx.tls.cert,
    disableReverseLookup: true,
    logger: false,

    // Login with the full address; the password is the user's lab password.
    onAuth(auth, session, callback) {
      const client = labAddress(session.remoteAddress);
      const lockedOut = (seconds: number) => smtpError(421, `4.7.0 Too many failed logins from ${client}: try again in ${seconds} s`);
      const locked = throttle.lockedFor(client);
      if (locked) return callback(lockedOut(locked));
      const login = String(auth.username ?? '').toLowerCase();
      const failed = () => {
        const wait = throttle.failed(client);
        if (wait === 'locked') {
          log.warn({ client, login }, 'too many failed logins: address locked out');
          return callback(lockedOut(throttle.lockedFor(client)));
        }
        // The reply waits; so does every command pipelined behind it.
        setTimeout(() => callback(smtpError(535, '5.7.8 Authentication failed: wrong user name or password')), wait);
      };
      // An authorization identity other than the login (the same one, or
      // none, is the login itself): only the teacher and the grader, with
      // their own credential, and only for a student.
      const authzid = String(auth.authzid ?? '').toLowerCase();
      if (ctx.classroom && auth.authcid && authzid && authzid !== login) {
        const identity = ctx.classroom.identify(String(auth.password ?? ''));
        const who = identity?.role === 'teacher' ? (identity.grader ? GRADER : TEACHER) : undefined;
        if (who !== login) return failed();
        const student = studentOf(authzid);
        if (!student) return callback(smtpError(535, `5.7.8 Authentication failed: ${authzid} is no student's address: ${login} submits only for a student of the class, as <name>@<domain>`));
        log.info({ client, login, for: student.address }, `${login} for ${student.address}`);
        return callback(null, { user: student.address });
      }
      const [local, domain] = splitMailbox(login);
      const password = instance.submission.passwords.get(local);
      const student = studentOf(login);
      const identity = student && ctx.classroom!.identify(String(auth.password ?? ''));
      const isStudent = identity?.role === 'student' && identity.student.name === student!.name;
      if (!isStudent && (!login.includes('@') || !ours(domain) || password === undefined || auth.password !== password)) return failed();
      callback(null, { user: login });
    },

    onMailFrom(address, session, callback) {
      const eightBit = mailFromRefusal(address);
      if (eightBit) return callback(eightBit);
      // The null sender (<>) names nobody.
      if (address.address && !mayUse(String(session.user), address.address)) {
        return callback(smtpError(553, notOwn(String(session.user), address.address)));
      }
      callback();
    },

    onRcptTo(address, session, callback) {
      const eightBit = rcptToRefusal(address, session);
      if (eightBit) return callback(eightBit);
      if (session.envelope.rcptTo.length >= instance.limits.recipients) {
        return callback(smtpError(452, `4.5.3 Too many recipients: at most ${instance.limits.recipients} per message`));
      }
      callback();
    },

    onData(stream, session, callback) {
      submit(stream, session).then(
        (reply) => callback(null, reply),
        (error: Error & { responseCode?: number }) => {
          if (!error.responseCode) log.error({ err: error, session: session.id }, 'submission failed');
          callback(error.responseCode ? error : smtpError(451, '4.3.0 Local error in processing; try again later'));
        },
      );
    },
  });
  server.on('error', (error) => log.warn({ err: error }, 'submission server error'));
  return server;
}

// Lines end in CRLF on the wire and in the queue, whatever the client sent.
export function normalizeLineEnds(message: Buffer): Buffer {
  const text = message.toString('latin1');
  if (!/\r(?!\n)|(?<!\r)\n/.test(text)) return message;
  return Buffer.from(text.replace(/\r\n|\r|\n/g, '\r\n'), 'latin1');
}

// The author of a submitted message, checked as the MX checks it: one From
// field, one mailbox with a host name, and mailauth (which DMARC follows)
// reading the same mailbox. The message is not signed yet, so no key is
// looked up; a signature the client put in is not verified here.
async function submittedAuthor(message: Buffer, fields: { name: string; value: string }[]): Promise<Author> {
  const noLookups = async () => {
    throw Object.assign(new Error('no DNS at submission'), { code: 'ENOTFOUND' });
  };
  const { headerFrom } = await dkimVerify(message, { resolver: noLookups });
  const read = headerFrom.length === 1 ? domainToASCII(headerFrom[0].slice(headerFrom[0].lastIndexOf('@') + 1)) : '';
  return checkAuthor(values(fields, 'From'), headerFrom, read || undefined);
}

// Every value of one header field, in order (`Subject` and `subject` alike).
const values = (fields: { name: string; value: string }[], name: string) =>
  fields.filter((f) => f.name.trim().toLowerCase() === name.toLowerCase()).map((f) => f.value);
