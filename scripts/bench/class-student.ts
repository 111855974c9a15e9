// One student's messages for bench:class: one submission session from the
// student's own address, AUTH PLAIN with their credential, `count` messages
// from their domain (to their own mailbox), each waiting for its 250. Returns
// the messages' Message-IDs, in order.
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';

export interface StudentSubmission {
  host: string;
  port: number;
  from: string; // the local address to connect from
  address: string; // ana@ana.test: the login and the sender
  to: string; // the recipient (the student's own mailbox)
  credential: string;
  count: number;
}

export async function submitMessages(s: StudentSubmission): Promise<string[]> {
  const socket = connect({ host: s.host, port: s.port, localAddress: s.from });
  socket.setEncoding('utf8');
  let buffer = '';
  const waiting: ((reply: string) => void)[] = [];
  socket.on('data', (chunk: string) => {
    buffer += chunk;
    for (let match; (match = /^(?:\d{3}-[^\n]*\n)*(\d{3})(?: [^\n]*)?\n/.exec(buffer)); ) {
      buffer = buffer.slice(match[0].length);
      waiting.shift()?.(match[0]);
    }
  });
  const closed = new Promise<never>((_, reject) => socket.once('close', () => reject(new Error(`${s.address}: the sender closed the connection`))));
  socket.on('error', () => undefined); // the close says it
  const reply = (expected: number) =>
    Promise.race([
      closed,
      new Promise<string>((resolve, reject) =>
        waiting.push((text) => (text.startsWith(String(expected)) ? resolve(text) : reject(new Error(`${s.address}: expected ${expected}, got ${text.trim()}`)))),
      ),
    ]);
  const command = (line: string, expected: number) => {
    const answer = reply(expected);
    socket.write(`${line}\r\n`);
    return answer;
  };
  try {
    await reply(220);
    await command('EHLO laptop.class.example', 250);
    await command(`AUTH PLAIN ${Buffer.from(`\0${s.address}\0${s.credential}`).toString('base64')}`, 235);
    const ids: string[] = [];
    for (let i = 0; i < s.count; i++) {
      const id = `<${randomBytes(8).toString('hex')}@${s.address.split('@')[1]}>`;
      ids.push(id);
      await command(`MAIL FROM:<${s.address}>`, 250);
      await command(`RCPT TO:<${s.to}>`, 250);
      await command('DATA', 354);
      await command(`From: <${s.address}>\r\nTo: <${s.to}>\r\nSubject: bench ${i + 1}\r\nMessage-ID: ${id}\r\nDate: ${new Date().toUTCString()}\r\n\r\nMessage ${i + 1} of ${s.count}.\r\n.`, 250);
    }
    await command('QUIT', 221);
    return ids;
  } finally {
    socket.destroy();
  }
}
