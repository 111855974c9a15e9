// services/mta/inbound/mailauth-parser.ts replaces how mailauth's DKIM
// verifier and signer find the end of the header section and turn bare LFs
// into CRLF. A verifier that split a message differently from the signer
// would read another header section or body: here both versions read the
// same hostile messages, split into chunks at every place, and must hand the
// DKIM code the same header section, the same body chunks and the same
// byte count. Then a message signed and verified through the new path, and
// tampered with, still passes and fails as it should.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';

const require = createRequire(import.meta.url);
const { MessageParser } = require('mailauth/lib/dkim/message-parser.js');
// mailauth's own, taken before the module under test replaces them.
const original = { processChunk: MessageParser.prototype.processChunk, ensureLinebreaks: MessageParser.prototype.ensureLinebreaks };
const tools = require('mailauth/lib/tools.js');
const streamed = tools.writeToStream;
await import('../services/mta/inbound/mailauth-parser.ts');
const { dkimSign, DkimSignStream } = require('mailauth/lib/dkim/sign.js');
const { dkimVerify } = require('mailauth/lib/dkim/verify.js');
assert.notEqual(MessageParser.prototype.processChunk, original.processChunk, 'the module replaces processChunk');

// What the DKIM code is given: the header section, the body chunks, the byte count.
class Reader extends MessageParser {
  header?: Buffer;
  body: Buffer[] = [];
  async messageHeaders() {
    this.header = Buffer.concat(this.headerChunks);
  }
  async nextChunk(chunk: Buffer) {
    this.body.push(chunk);
  }
  async finalChunk() {}
}
class OriginalReader extends Reader {}
Object.assign(OriginalReader.prototype, original);

async function read(Kind: typeof Reader, chunks: Buffer[]) {
  const reader = new Kind();
  const done = new Promise((resolve, reject) => reader.on('finish', resolve).on('error', reject));
  for (const chunk of chunks) reader.write(chunk);
  reader.end();
  await done;
  return { header: reader.header?.toString('latin1'), body: Buffer.concat(reader.body).toString('latin1'), bytes: reader.byteLength, parsed: JSON.stringify(reader.headers?.parsed) };
}

const HOSTILE = [
  '',
  '\n',
  '\r\n',
  '\r',
  '\n\n',
  '\r\n\r\n',
  '\n\r\n',
  '\r\r\n\n',
  'body only after an empty first line\r\n',
  '\nFrom: looks like a field but is body\n',
  'From: a@example.test\r\nTo: b@example.test\r\n\r\nBody\r\n',
  'From: a@example.test\nTo: b@example.test\n\nBody with bare LF\n\n\n',
  'From: a@example.test\r\n\nmixed: CRLF then LF ends the header\r\n',
  'From: a@example.test\n\r\nmixed: LF then CRLF\r\n',
  'From: a@example.test\r\n\r\r\nCR inside the empty line\r\n',
  'From: a@example.test\rTo: bare CR\r\n\r\nBody\r',
  'Subject: folded\r\n over two lines\r\n\r\n.\r\n',
  'No-Body: the header never ends\r\nX: y\r\n',
  'From: a@example.test\r\n\r\n\r\n\r\n\n\ntrailing empty lines\n\r\n\r\r',
  `Long: ${'x'.repeat(70)}\r\n\r\n${'line\n'.repeat(8)}`,
];

test('the header section, body and byte count are those mailauth reads, however a hostile message is split', async () => {
  for (const text of HOSTILE) {
    const message = Buffer.from(text, 'latin1');
    const splits: number[][] = [[]];
    for (let i = 1; i < message.length; i++) splits.push([i]);
    if (message.length <= 40) {
      for (let i = 1; i < message.length; i++) for (let j = i + 1; j < message.length; j++) splits.push([i, j]);
    }
    // One byte per chunk: the state kept between chunks is all there is.
    splits.push(Array.from({ length: Math.max(0, message.length - 1) }, (_, i) => i + 1));
    for (const cuts of splits) {
      const chunks = [0, ...cuts].map((from, k) => message.subarray(from, k < cuts.length ? cuts[k] : message.length)).filter((c) => c.length);
      assert.deepEqual(await read(Reader, chunks), await read(OriginalReader, chunks), `${JSON.stringify(text)} split at ${cuts.join(',')}`);
    }
  }
});

const key = readFileSync(join(import.meta.dirname, '..', 'dns-zone', 'dkim', 'sender.test', 'rsa2048.pem'));
const record = readFileSync(join(import.meta.dirname, '..', 'dns-zone', 'sender.test.zone'), 'utf8');
const published = /rsa2048\._domainkey\s+TXT\s+\(([^)]*)\)/.exec(record)![1].match(/"([^"]*)"/g)!.map((s) => s.slice(1, -1)).join('');
const resolver = async (name: string) => {
  if (name === 'rsa2048._domainkey.sender.test') return [[published]];
  throw Object.assign(new Error('no such record'), { code: 'ENOTFOUND' });
};

test('a message signed and verified through it passes, and fails once its body or a signed field changes', async () => {
  for (const newline of ['\r\n', '\n']) {
    const text = ['From: Alice <alice@sender.test>', 'To: bob@receiver.test', 'Subject: through the fast reader', '', 'First line', '', 'Last line', ''].join(newline);
    const { signatures } = await dkimSign(text, { signatureData: [{ signingDomain: 'sender.test', selector: 'rsa2048', privateKey: key }] });
    const signed = signatures + text;
    const verdict = async (message: string) => {
      const { status } = (await dkimVerify(Buffer.from(message), { resolver })).results[0];
      return `${status.result}${status.comment ? ` (${status.comment})` : ''}`;
    };
    assert.equal(await verdict(signed), 'pass', `signed with ${JSON.stringify(newline)} line ends`);
    assert.equal(await verdict(signed.replace('Last line', 'Last lime')), 'neutral (body hash did not verify)', 'a changed body');
    assert.equal(await verdict(signed.replace('through the fast reader', 'changed')), 'fail (bad signature)', 'a changed Subject');
    assert.equal(await verdict(signed.replace(`${newline}${newline}First`, `${newline}X-Added: after the header${newline}${newline}First`)), 'pass', 'a field added that was not signed');
  }
});

// The module makes MessageParser an event emitter with write() and end()
// instead of a Writable stream (a Writable kept every verifier alive through
// young-generation collections), and hands a message in memory straight to it.
const sample = ['From: Alice <alice@sender.test>', 'To: bob@receiver.test', 'Subject: streams', '', 'First line', '', 'Last line', ''].join('\r\n');

test("mailauth's readers are no Writable streams, and what drives them as streams still works", async () => {
  assert.ok(!(new Reader() instanceof Writable));
  // mailauth's own writeToStream (modules that took it before the module ran keep it) reads what the new one does.
  const viaOriginal = new Reader();
  await streamed(viaOriginal, Buffer.from(sample));
  const viaNew = new Reader();
  await tools.writeToStream(viaNew, Buffer.from(sample));
  assert.equal(viaNew.header?.toString(), sample.slice(0, sample.indexOf('\r\n\r\n') + 4));
  assert.deepEqual([viaOriginal.header, Buffer.concat(viaOriginal.body), viaOriginal.byteLength], [viaNew.header, Buffer.concat(viaNew.body), viaNew.byteLength]);

  // mailauth's signing stream writes to its signer chunk by chunk and waits for 'finish'.
  const signing = new DkimSignStream({ signatureData: [{ signingDomain: 'sender.test', selector: 'rsa2048', privateKey: key }] });
  const out: Buffer[] = [];
  signing.on('data', (chunk: Buffer) => out.push(chunk));
  const ended = new Promise((resolve, reject) => signing.on('end', resolve).on('error', reject));
  for (let at = 0; at < sample.length; at += 7) signing.write(sample.slice(at, at + 7));
  signing.end();
  await ended;
  const signed = Buffer.concat(out).toString();
  assert.ok(signed.startsWith('DKIM-Signature: ') && signed.endsWith(sample), 'the signature, then the message as given');
  const { results } = await dkimVerify(Buffer.from(signed), { resolver });
  assert.equal(results[0].status.result, 'pass');
});

test('a failure while reading reaches the caller: end() emits it, writeToStream rejects with it', { timeout: 10_000 }, async () => {
  class Failing extends Reader {
    async nextChunk() {
      throw new Error('the body could not be read');
    }
  }
  const failing = new Failing();
  const emitted = new Promise<Error>((resolve) => failing.on('error', resolve));
  failing.write(Buffer.from(sample));
  failing.end();
  assert.match((await emitted).message, /the body could not be read/);
  await assert.rejects(tools.writeToStream(new Failing(), Buffer.from(sample)), /the body could not be read/);
  await assert.rejects(streamed(new Failing(), Buffer.from(sample)), /the body could not be read/);
});

test('a large message is read 64 KB at a time, with a turn of the event loop between chunks', async () => {
  const body = `${'x'.repeat(998)}\r\n`.repeat(300); // 300 kB
  const message = Buffer.from(`From: a@example.test\r\n\r\n${body}`);
  let turns = 0;
  let counting = true;
  const count = () => {
    turns++;
    if (counting) setImmediate(count);
  };
  setImmediate(count);
  const reader = new Reader();
  await tools.writeToStream(reader, message);
  counting = false;
  assert.equal(Buffer.concat(reader.body).toString(), body);
  assert.equal(reader.byteLength, message.length);
  assert.ok(turns >= 4, `${turns} turns of the event loop while 5 chunks were read`);
});
