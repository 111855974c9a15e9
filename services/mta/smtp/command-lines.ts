// smtp-server ends a command line at LF or CRLF, so a bare CR (or a NUL)
// stays inside the line: "MAIL FROM:<a@gmail.com>\rRCPT TO:<bob@receiver.test>"
// got 250 as one MAIL command, while a terminal, a log or another MTA may read
// two. RFC 5321 section 2.3.8: CR and LF appear only together, as the line
// end; no command's syntax has a NUL. Such a line is refused whole with
// 500 5.5.2 and nothing in it is run.
// Imported once, for its effect, by every module that builds SMTP servers.
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

type Connection = {
  id: string;
  _ready: boolean;
  _upgrading: boolean;
  _nextHandler: unknown;
  _server: { _closeTimeout: unknown; logger: { debug(meta: object, ...text: unknown[]): void } };
  send(code: number, data: string): void;
  _redactCredentials(commandName: string, line: string): { commandName: string; line: string };
  _whenWritable(next: () => void): void;
  _onCommand(command: Buffer, callback?: () => void): void;
};
const prototype = SMTPConnection.prototype as unknown as Connection;
const onCommand = prototype._onCommand;

prototype._onCommand = function (this: Connection, command, callback) {
  const bad = command.includes(13)
    ? 'a bare CR in the command line, which was not run: CR only ends a line, as CRLF (RFC 5321 section 2.3.8)'
    : command.includes(0)
      ? 'a NUL byte in the command line, which was not run: no SMTP command has one (RFC 5321 section 4.1)'
      : undefined;
  // Before the greeting, during a TLS handshake and at shutdown, smtp-server's own handling stands.
  if (!bad || !this._ready || this._upgrading || this._server._closeTimeout) return onCommand.call(this, command, callback);
  const line = command.toString();
  const logged = this._redactCredentials(line.split(' ')[0].toUpperCase(), line);
  this._server.logger.debug({ tnx: 'command', cid: this.id, command: logged.commandName }, 'C:', logged.line);
  this._nextHandler = false; // an AUTH exchange under way ends here
  this.send(500, `5.5.2 Syntax error: ${bad}`);
  this._whenWritable(callback ?? (() => undefined));
};
