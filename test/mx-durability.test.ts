// Accepted means durable: kill -9 the receiver in the middle of a burst, and
// every message that got 250 is in Maildir, whole, with its session record;
// the receiver then starts again on the same data and its API finds them.
// The same when the machine stops: the Maildir copies and record lines that
// only the write-ahead log held are lost (as the disk loses what the kernel
// had not written yet), and the receiver restores them when it starts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DKIMSignOptions } from 'mailauth';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { pino } from 'pino';
import { DnsServer } from '../services/dns/server.ts';
import { readEntries } from '../services/mta/store/write-ahead-log.ts';
import { instanceFile, startMta } from './support/processes.ts';
import { RawSmtp } from './support/smtp.ts';

const root = new URL('../', import.meta.url).pathname;
const host = '127.0.2.20'; // the receiver's loopback twin
const CONNECTIONS = 8;
const MESSAGES = 400; // at most; the kill comes long before
const KILL_AFTER = 40; // acknowledged messages

// A DKIM-signed message from sender.test; its last body line is the SHA-256
// of the lines above it, so that a stored copy shows whether it is whole.
async function signedMessage(n: number, key: Buffer): Promise<{ messageId: string; data: string }> {
  const messageId = `<burst-${n}-${randomBytes(6).toString('hex')}@sender.test>`;
  const lines = Array.from({ length: 40 }, (_, i) => `Message ${n}, line ${i}: the quick brown fox jumps over the lazy dog.`);
  const body = `${lines.join('\r\n')}\r\n`;
  const text =
    `From: Alice <alice@sender.test>\r\nTo: <alice@receiver.test>\r\nSubject: burst ${n}\r\n` +
    `Date: ${new Date().toUTCString()}\r\nMessage-ID: ${messageId}\r\n\r\n` +
    `${body}Checksum: ${sha256(body)}\r\n`;
  // mailauth's types ask for top-level key fields; its code reads signatureData.
  const { signatures, errors } = await dkimSign(text, { signatureData: [{ signingDomain: 'sender.test', selector: 'rsa2048', privateKey: key }] } as DKIMSignOptions);
  assert.deepEqual(errors, []);
  return { messageId, data: signatures + text }; // ASCII only
}

// RFC 5321 section 4.5.2: a line that starts with a dot gets another.
const dotStuffed = (text: string) => text.replace(/(^|\r\n)\./g, '$1..');

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

// The body's checksum line matches the lines above it.
function whole(stored: string): boolean {
  const body = stored.slice(stored.indexOf('\r\n\r\n') + 4);
  const match = /^([\s\S]*)Checksum: ([0-9a-f]{64})\r\n$/.exec(body);
  return match !== null && sha256(match[1]) === match[2];
}

async function waitForApi(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    assert.equal(child.exitCode, null, 'the receiver exited while starting (its stderr says why)');
    try {
      if ((await fetch(`${url}/api/health`)).ok) return;
    } catch {
      // not listening yet
    }
    assert.ok(Date.now() < deadline, 'the receiver did not start within 10 s');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// The disk after the machine stopped before a checkpoint: every Maildir copy
// and session line that a write-ahead log entry holds is gone (one copy is
// left as zeros, the size written but not the data), as if the kernel had
// not written them out yet. Returns how many copies it took away.
function loseUnsynced(data: string): number {
  const walDir = join(data, 'wal');
  let copies = 0;
  for (const name of readdirSync(walDir)) {
    for (const entry of readEntries(readFileSync(join(walDir, name)), data)) {
      for (const copy of entry.copies) {
        if (copies++ === 0) writeFileSync(copy.path, Buffer.alloc(readFileSync(copy.path).length));
        else rmSync(copy.path);
      }
      if (!entry.session || !existsSync(entry.session.file)) continue;
      const at = readFileSync(entry.session.file).indexOf(entry.session.text);
      if (at !== -1) truncateSync(entry.session.file, at);
    }
  }
  return copies;
}

for (const stop of ['the MTA is killed', 'the machine stops'] as const) {
  test(`kill -9 in the middle of a burst, ${stop}: every 250 is in Maildir, whole, with its session record`, { timeout: 30_000 }, async () => {
    const work = mkdtempSync(join(tmpdir(), 'mx-durability-'));
    const dns = new DnsServer({ listen: { host: '127.0.2.53', port: 0 }, zoneDir: join(root, 'dns-zone'), logger: pino({ level: 'silent' }) });
    await dns.start();
    let receiver: ChildProcess | undefined;
    try {
      const { file, ports } = await instanceFile('receiver', host, work);
      const env = { MTA_CONFIG: file, LAB_EMBEDDED: '1', MTA_DATA_DIR: join(work, 'data'), LAB_DNS: `127.0.2.53:${dns.port}` };
      const api = `http://${host}:${ports.api}`;
      receiver = startMta(env);
      await waitForApi(api, receiver);
      const exited = new Promise((resolve) => receiver!.once('exit', resolve));

      const key = readFileSync(join(root, 'dns-zone/dkim/sender.test/rsa2048.pem'));
      const messages = await Promise.all(Array.from({ length: MESSAGES }, (_, n) => signedMessage(n, key)));
      const acknowledged = new Map<string, string>(); // Message-ID -> what was sent
      let pending = 0; // transactions begun and not yet answered
      let inFlightAtKill = -1;

      // One sender connection: message after message until the server is gone
      // (a read then answers code 0).
      async function send(smtp: RawSmtp): Promise<void> {
        if ((await smtp.command('EHLO mta.sender.test')).code !== 250) return;
        for (let message; (message = messages.shift()); ) {
          pending++;
          if ((await smtp.command('MAIL FROM:<alice@sender.test>')).code !== 250) return;
          if ((await smtp.command('RCPT TO:<alice@receiver.test>')).code !== 250) return;
          if ((await smtp.command('DATA')).code !== 354) return;
          smtp.write(`${dotStuffed(message.data)}.\r\n`);
          const final = await smtp.read();
          pending--;
          if (final.code !== 250) return;
          acknowledged.set(message.messageId, message.data);
          if (acknowledged.size === KILL_AFTER) {
            inFlightAtKill = pending;
            receiver!.kill('SIGKILL');
          }
        }
      }
      const connections = await Promise.all(Array.from({ length: CONNECTIONS }, () => RawSmtp.open(host, ports.mx, '127.0.2.10')));
      await Promise.all(connections.map(({ smtp }) => send(smtp)));
      receiver.kill('SIGKILL'); // in case the senders stopped before the kill
      await exited;

      assert.ok(acknowledged.size >= KILL_AFTER, `only ${acknowledged.size} messages were acknowledged before the senders stopped`);
      assert.ok(inFlightAtKill > 0, 'no message was in flight when the receiver was killed');
      assert.ok(messages.length > 0, 'the burst ran out before the kill');
      // The checkpoint comes about once a second: the last messages are in the log only.
      if (stop === 'the machine stops') assert.ok(loseUnsynced(join(work, 'data')) > 0, 'the write-ahead log held no message');

      // Maildir: each acknowledged message exactly once, byte for byte after the trace headers.
      const inbox = join(work, 'data/mail/receiver.test/alice/new');
      const stored = new Map<string, string>(); // Message-ID -> file name
      const checkMaildir = () => {
        stored.clear();
        for (const name of readdirSync(inbox)) {
          const text = readFileSync(join(inbox, name), 'latin1');
          const messageId = /\r\nMessage-ID: (<[^>]+>)\r\n/.exec(text)?.[1];
          assert.ok(messageId && !stored.has(messageId), `${name}: no Message-ID, or one stored twice`);
          stored.set(messageId, name);
          assert.ok(whole(text), `${name}: the body is cut short or changed`);
          const sent = acknowledged.get(messageId);
          if (sent) assert.ok(text.endsWith(sent), `${name}: not the message that was sent`);
        }
        for (const messageId of acknowledged.keys()) assert.ok(stored.has(messageId), `${messageId} got 250 but is not in Maildir`);
      };

      // Session records on disk (JSON lines, each with the transactions it adds)
      // name each acknowledged message and its delivery.
      const checkRecords = () => {
        const sessionsDir = join(work, 'data/sessions');
        const delivered = new Map<string, string>(); // Message-ID -> delivery id
        for (const file of readdirSync(sessionsDir).filter((f) => f.endsWith('.jsonl'))) {
          for (const line of readFileSync(join(sessionsDir, file), 'utf8').split('\n')) {
            let update;
            try {
              update = JSON.parse(line);
            } catch {
              continue; // empty, or cut short by the kill: the reader skips it too
            }
            for (const t of update.transactions) {
              if (t.deliveries.length) delivered.set(t.message.messageId, t.deliveries[0].id);
            }
          }
        }
        for (const messageId of acknowledged.keys()) {
          assert.equal(delivered.get(messageId), stored.get(messageId), `no session record names ${messageId} with its delivery`);
        }
      };
      // Killing the MTA loses nothing it wrote: all is there before it starts again.
      if (stop === 'the MTA is killed') {
        checkMaildir();
        checkRecords();
      }

      // The receiver starts again on the same data (restoring what the log
      // held), and its API finds every one.
      receiver = startMta(env);
      await waitForApi(api, receiver);
      checkMaildir();
      checkRecords();
      assert.deepEqual(readdirSync(join(work, 'data/wal')), [], 'the write-ahead log files are deleted once their content is on disk');
      for (const messageId of acknowledged.keys()) {
        const found = await (await fetch(`${api}/api/sessions?messageId=${encodeURIComponent(messageId)}`)).json();
        assert.equal(found.length, 1, `the API finds no session for ${messageId}`);
        assert.ok(found[0].deliveries.some((d: { id: string }) => d.id === stored.get(messageId)));
      }
    } finally {
      receiver?.kill('SIGKILL');
      await dns.close();
      rmSync(work, { recursive: true, force: true });
    }
  });
}
