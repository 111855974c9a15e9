// smtp-server chooses the enhanced status code (RFC 3463) from the basic reply
// code alone, so every 550 would say 5.1.1 "no such mailbox", also for
// "relaying denied" (5.7.1) or a DMARC rejection (5.7.1). A reply text that
// begins with its own enhanced code keeps that code instead:
//   error.responseCode = 550; error.message = '5.7.1 Relaying denied'
// Imported once, for its effect, by every module that builds SMTP servers.
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

const ENHANCED = /^([245]\.\d{1,3}\.\d{1,3}) ([\s\S]*)$/;

type Connection = {
  send(code: number, data: unknown, context?: unknown): void;
  _getEnhancedStatusCode(code: number, context: unknown): string;
  _useEnhancedStatusCodes(): boolean;
};
const prototype = SMTPConnection.prototype as unknown as Connection;
const send = prototype.send;
const pick = prototype._getEnhancedStatusCode;

prototype.send = function (this: Connection, code, data, context) {
  const own = context === undefined && typeof data === 'string' ? ENHANCED.exec(data) : null;
  if (own && own[1][0] === String(code)[0]) {
    const lines = wrap(own[2]);
    return send.call(this, code, lines.length > 1 ? lines : own[2], { enhanced: own[1] });
  }
  return send.call(this, code, data, context);
};

// RFC 5321 section 4.5.3.1.5: a reply line is at most 512 octets, code and
// CRLF included. A long reason (it may quote what the client sent) becomes a
// multiline reply, each line with the code and the enhanced code (RFC 2034).
const MAX_TEXT = 512 - '550-5.7.1 '.length - 2;

function wrap(text: string): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    const joined = line ? `${line} ${word}` : word;
    if (Buffer.byteLength(joined) <= MAX_TEXT) {
      line = joined;
      continue;
    }
    if (line) lines.push(line);
    line = word;
    // A word longer than a line is cut (at a character, not inside one).
    while (Buffer.byteLength(line) > MAX_TEXT) {
      let cut = MAX_TEXT;
      while (Buffer.byteLength(line.slice(0, cut)) > MAX_TEXT) cut--;
      lines.push(line.slice(0, cut));
      line = line.slice(cut);
    }
  }
  lines.push(line);
  return lines;
}

prototype._getEnhancedStatusCode = function (this: Connection, code, context) {
  if (typeof context === 'object' && context !== null && 'enhanced' in context) {
    return this._useEnhancedStatusCodes() ? String(context.enhanced) : '';
  }
  return pick.call(this, code, context);
};
