// RFC 6531: an address with non-ASCII characters (in the local part or the
// domain) belongs only in a transaction whose MAIL FROM carries the SMTPUTF8
// parameter. Without it the client speaks plain RFC 5321, whose addresses are
// ASCII (a domain as A-labels), and the server must not guess an encoding.
// Section 3.5 names the replies: 550 at MAIL, 553 at RCPT, both with X.6.7
// "non-ASCII addresses not permitted for that sender/recipient". The reply
// does not quote the address: this client did not ask for UTF-8.
import type { SMTPServerAddress, SMTPServerSession } from 'smtp-server';

const NON_ASCII = /[^\x00-\x7f]/;

const smtpUtf8 = (mailFrom: SMTPServerAddress | false | undefined) => Boolean(mailFrom && mailFrom.args && mailFrom.args.SMTPUTF8 === true);

export function mailFromRefusal(address: SMTPServerAddress): Error | undefined {
  if (!NON_ASCII.test(address.address) || smtpUtf8(address)) return undefined;
  return Object.assign(new Error('5.6.7 Non-ASCII sender address without SMTPUTF8: add the SMTPUTF8 parameter to MAIL FROM (RFC 6531 section 3.5)'), {
    responseCode: 550,
  });
}

export function rcptToRefusal(address: SMTPServerAddress, session: SMTPServerSession): Error | undefined {
  if (!NON_ASCII.test(address.address) || smtpUtf8(session.envelope.mailFrom)) return undefined;
  return Object.assign(new Error('5.6.7 Non-ASCII recipient address without SMTPUTF8 on MAIL FROM (RFC 6531 section 3.5)'), { responseCode: 553 });
}
