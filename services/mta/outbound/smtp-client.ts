// One message handed over as an SMTP client, with nodemailer: submission to
// a lab MTA (AUTH) or delivery straight to an MX, STARTTLS with the lab CA
// either way. A refusal is an answer like any other: the reply comes back;
// only a server that cannot be reached throws.
import type { SecureContext } from 'node:tls';
import { createTransport } from 'nodemailer';

export interface Envelope {
  from: string; // '' for the null sender
  to: string[];
}

export interface Reply {
  code: number;
  text: string; // the whole reply line, "550 5.7.1 Message rejected: ..."
}

export interface SmtpSend {
  host: string;
  port: number;
  localAddress?: string; // speak from this address (the embedded lab's twin of a lab host)
  name?: string; // for EHLO
  servername: string; // the name on the server's certificate
  ca: Buffer;
  secureContext?: SecureContext; // made once from ca, for a client that sends many (the exercise checks)
  // authzid: log in as user, to act as authzid (AUTH PLAIN, RFC 4616): the
  // exercise checks send a student's mail with the grader's credential.
  auth?: { user: string; pass: string; authzid?: string };
  envelope: Envelope;
  raw: Buffer;
}

export async function smtpSend(o: SmtpSend): Promise<Reply> {
  const transport = createTransport({
    host: o.host,
    port: o.port,
    secure: false,
    localAddress: o.localAddress,
    name: o.name,
    auth: o.auth?.authzid ? { type: 'custom', method: 'PLAIN', user: o.auth.user, pass: o.auth.pass } : o.auth,
    ...(o.auth?.authzid && { customAuth: { PLAIN: plainWithAuthzid(o.auth as Required<NonNullable<SmtpSend['auth']>>) } }),
    tls: { ca: o.ca, servername: o.servername, ...(o.secureContext && { secureContext: o.secureContext }) },
    connectionTimeout: 5000,
    socketTimeout: 20_000,
  });
  try {
    const info = await transport.sendMail({ envelope: { ...o.envelope }, raw: o.raw });
    return { code: Number(info.response.slice(0, 3)), text: info.response };
  } catch (error) {
    const e = error as { responseCode?: number; response?: string; message: string };
    if (e.responseCode) return { code: e.responseCode, text: e.response ?? e.message };
    throw new Error(`SMTP to ${o.host}:${o.port} failed: ${e.message}`);
  } finally {
    transport.close();
  }
}

// nodemailer's PLAIN leaves the authorization identity empty.
function plainWithAuthzid({ authzid, user, pass }: { authzid: string; user: string; pass: string }) {
  return async (ctx: { sendCommand(command: string): Promise<{ status: number; response: string }> }) => {
    const answer = await ctx.sendCommand(`AUTH PLAIN ${Buffer.from(`${authzid}\0${user}\0${pass}`).toString('base64')}`);
    if (answer.status !== 235) throw new Error(answer.response);
  };
}
