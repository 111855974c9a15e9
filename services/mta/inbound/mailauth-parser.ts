// How mailauth's DKIM verifier and signer read a message, made fast. Both
// read it through MessageParser, which looks for the empty line that ends
// the header section one byte at a time, copying an array of the last four
// bytes at every byte, and turns bare LFs into CRLF with a generator that
// steps through every byte of the body too: a fifth of the time of a DKIM
// verification of a 3 KB message (0.13 of 0.65 ms here). These are the same
// two steps, jumping from LF to LF with indexOf. They split the message
// where mailauth's do and keep the same state between chunks, so every
// header section, body and hash is the same, byte for byte
// (test/mailauth-parser.test.ts compares them with mailauth's own on every
// split of hostile messages). Prototype methods are looked up at each call,
// so this works whenever it is imported.
//
// And MessageParser is no longer a Writable stream (see DirectWriter below):
// that holds for every parser made after this is imported; the direct
// hand-over of a message, for mailauth's modules loaded after it.
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';

const LF = 0x0a;
const CR = 0x0d;

interface Parser {
  state: 'header' | 'body';
  stateBytes: number[]; // the last bytes of the header section seen, at most 4
  headerBytes: number; // bytes of the header section seen
  headerChunks: Buffer[];
  lastByte?: number;
  emitHeaders(chunk?: Buffer): Promise<void>;
  nextChunk(chunk: Buffer): Promise<void>;
  writeAsync(chunk: Buffer): Promise<void>;
  finish(): Promise<void>;
}

const require = createRequire(import.meta.url);
const { MessageParser } = require('mailauth/lib/dkim/message-parser.js') as { MessageParser: Function & { prototype: Parser & Record<string, unknown> } };

// The index of the LF that ends the header section in chunk, or -1. mailauth's
// rule: an LF after an LF, after CRLF, or as the first byte (or after a CR
// that is the first byte) of the message.
function headerEnd(parser: Parser, chunk: Buffer): number {
  const seen = parser.stateBytes;
  const before = (i: number, back: number): number | false => {
    const at = i - back;
    if (at >= 0) return chunk[at];
    return seen.length + at >= 0 ? seen[seen.length + at] : false;
  };
  for (let i = chunk.indexOf(LF); i !== -1; i = chunk.indexOf(LF, i + 1)) {
    const count = parser.headerBytes + i + 1;
    const b1 = before(i, 1);
    if (b1 === LF || (b1 === CR && before(i, 2) === LF) || count === 1 || (count === 2 && b1 === CR)) return i;
  }
  return -1;
}

// Counts the first `length` bytes of chunk as header section, as mailauth does.
function remember(parser: Parser, chunk: Buffer, length: number): void {
  parser.headerBytes += length;
  const tail = Array.from(chunk.subarray(Math.max(0, length - 4), length));
  parser.stateBytes = [...parser.stateBytes, ...tail].slice(-4);
}

MessageParser.prototype.processChunk = async function (this: Parser, chunk: Buffer): Promise<void> {
  if (!chunk || !chunk.length) return;
  if (this.state === 'header') {
    const end = headerEnd(this, chunk);
    if (end === -1) {
      remember(this, chunk, chunk.length);
      this.headerChunks.push(chunk);
      return;
    }
    remember(this, chunk, end + 1);
    if (end === chunk.length - 1) return this.emitHeaders(chunk);
    await this.emitHeaders(chunk.slice(0, end + 1));
    chunk = chunk.slice(end + 1);
  }
  await this.nextChunk(chunk);
};

MessageParser.prototype.ensureLinebreaks = function* (this: Parser, input: Buffer): Generator<Buffer> {
  let pos = 0;
  for (let i = input.indexOf(LF); i !== -1; i = input.indexOf(LF, i + 1)) {
    const previous = i === 0 ? this.lastByte : input[i - 1];
    if (previous === CR) continue;
    yield i === 0 || pos === i ? Buffer.from('\r\n') : Buffer.concat([input.slice(pos, i), Buffer.from('\r\n')]);
    pos = i + 1;
  }
  if (input.length) this.lastByte = input[input.length - 1];
  if (pos === 0) yield input;
  else if (pos < input.length) yield input.slice(pos);
};

// What mailauth asks of a MessageParser as a stream, and no more: write(),
// end(), then 'finish' or 'error'. Each chunk goes to writeAsync() in order
// and end() runs finish(), as Writable's _write and _final do in mailauth.
// Why not Writable: under Node 24, an object holding a WritableState
// (whose onwrite closure points back at it) outlives young-generation
// collections, and so does everything it refers to: each verifier carried
// its parsed header section, signatures and results into the old
// generation, 12 KB a message, where only a full collection frees it.
// verify() of the bench:mx message, 12,000 times in a loop on one CPU
// (--trace-gc-nvp, three runs each): 148 MB promoted, 1.0 s of scavenges
// and 2.0 s of GC work on helper threads before; with this and the direct
// hand-over below, 31 MB, 0.34 s and 0.36 s, and 0.85-0.91 -> 0.63-0.66 ms
// of CPU per verification. A write() never asks the caller to wait: the
// message is in memory already.
class DirectWriter extends EventEmitter {
  private written: Promise<void> = Promise.resolve();

  write(chunk: Buffer | string, encoding?: BufferEncoding): boolean {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk;
    this.written = this.written.then(() => (this as unknown as Parser).writeAsync(bytes));
    // A failure is reported once, as 'error', by end(): every caller ends what it writes.
    this.written.catch(() => undefined);
    return true;
  }

  end(): this {
    this.written
      .then(() => (this as unknown as Parser).finish())
      .then(
        () => this.emit('finish'),
        (error: Error) => this.emit('error', error),
      );
    return this;
  }
}

Object.setPrototypeOf(MessageParser, DirectWriter);
Object.setPrototypeOf(MessageParser.prototype, DirectWriter.prototype);

// mailauth hands a message to a parser with tools.writeToStream: a turn of
// the event loop before each 64 KB chunk, and events to learn of the end,
// about a sixth of a verification's CPU here. A message in memory goes
// straight to writeAsync() and finish() instead, still with a turn between
// 64 KB chunks, so that a large message does not hold the thread in one go.
// mailauth's modules that took writeToStream before this ran keep the
// original, which works on a DirectWriter too.
const tools = require('mailauth/lib/tools.js') as { writeToStream: (stream: unknown, input: unknown, chunkSize?: number) => Promise<void> };
const streamed = tools.writeToStream;
tools.writeToStream = async (stream, input, chunkSize = 64 * 1024) => {
  if (!(stream instanceof MessageParser) || !(Buffer.isBuffer(input) || typeof input === 'string')) return streamed(stream, input, chunkSize);
  const bytes = typeof input === 'string' ? Buffer.from(input) : input;
  for (let at = 0; at < bytes.length; at += chunkSize) {
    if (at > 0) await new Promise((resolve) => setImmediate(resolve));
    await (stream as Parser).writeAsync(bytes.subarray(at, at + chunkSize));
  }
  await (stream as Parser).finish();
};
