// Byte-level reading of the common query and patching of a ready response.
// dns2 decodes and encodes bit by bit, far too slowly to run per query; the
// ordinary query (one question, class IN, at most an EDNS OPT record) is read
// here directly, and its answer is bytes that dns2 encoded once.

export const HEADER_SIZE = 12;
const TYPE_OPT = 41;
const CLASS_IN = 1;

export interface Question {
  name: string; // lower case (ASCII only, RFC 4343), no final dot; a dot inside a label is \0
  nameEnd: number; // offset just past the question name in the packet
  qtype: number;
  qclass: number;
}

export interface Query {
  // The question as sent on the wire (name and type), in lower case: a map
  // key found without building the name, which is needed only the first time.
  key: string;
  nameEnd: number;
  qtype: number;
  edns: boolean;
  dnssecOk: boolean;
  udpSize: number; // what the client can take over UDP (512 without EDNS)
}

// The first question, read straight from the packet. Its name must be
// written out in full: with the header the only thing before it, a
// compression pointer there can only be nonsense.
export function readQuestion(packet: Buffer): Question | undefined {
  let at = HEADER_SIZE;
  let name = '';
  for (;;) {
    const length = packet[at];
    if (length === undefined || length > 63) return undefined;
    if (length === 0) break;
    if (at + 1 + length > packet.length) return undefined;
    // A dot inside a label is data, not a separator (RFC 4343 section 2.1): as
    // \0 it names nothing in the zones and keeps the name's wire length.
    name += (name ? '.' : '') + packet.toString('latin1', at + 1, at + 1 + length).replaceAll('.', '\0');
    at += 1 + length;
  }
  const nameEnd = at + 1;
  if (nameEnd - HEADER_SIZE > 255 || nameEnd + 4 > packet.length) return undefined;
  if (/[A-Z]/.test(name)) name = name.replace(/[A-Z]+/g, (s) => s.toLowerCase());
  return { name, nameEnd, qtype: packet.readUInt16BE(nameEnd), qclass: packet.readUInt16BE(nameEnd + 2) };
}

// The ordinary query, or undefined: then the packet takes the careful path
// through dns2's parser, which also produces the error answers.
export function readQuery(packet: Buffer): Query | undefined {
  if (packet.length < HEADER_SIZE + 5) return undefined;
  // QR=0, opcode QUERY, no TC; one question, nothing else but maybe one OPT.
  if ((packet.readUInt16BE(2) & 0xfa00) !== 0) return undefined;
  if (packet.readUInt16BE(4) !== 1 || packet.readUInt32BE(6) !== 0) return undefined;
  const additional = packet.readUInt16BE(10);
  if (additional > 1) return undefined;
  // The name's labels: lengths only, and whether any letter is upper case.
  let at = HEADER_SIZE;
  let upper = false;
  for (let length = packet[at]; length !== 0; length = packet[at]) {
    if (length === undefined || length > 63 || at + 1 + length > packet.length) return undefined;
    for (let i = at + 1; i <= at + length; i++) {
      const byte = packet[i];
      if (byte >= 0x41 && byte <= 0x5a) upper = true;
    }
    at += 1 + length;
  }
  const nameEnd = at + 1;
  if (nameEnd - HEADER_SIZE > 255 || nameEnd + 4 > packet.length) return undefined;
  if (packet.readUInt16BE(nameEnd + 2) !== CLASS_IN) return undefined;
  const qtype = packet.readUInt16BE(nameEnd);
  at = nameEnd + 4;

  let edns = false;
  let dnssecOk = false;
  let udpSize = 512;
  if (additional === 1) {
    // The OPT pseudo-record: root owner, type 41, class = payload size,
    // TTL = extended rcode, version, DO bit; its options are ignored, but
    // must fit its RDATA.
    if (at + 11 > packet.length || packet[at] !== 0 || packet.readUInt16BE(at + 1) !== TYPE_OPT) return undefined;
    if (packet[at + 6] !== 0) return undefined; // EDNS version: BADVERS comes from the careful path
    udpSize = Math.max(512, packet.readUInt16BE(at + 3));
    dnssecOk = (packet[at + 7] & 0x80) !== 0;
    const end = at + 11 + packet.readUInt16BE(at + 9);
    if (end > packet.length) return undefined;
    for (at += 11; at < end; at += 4 + packet.readUInt16BE(at + 2)) {
      if (at + 4 > end) return undefined;
    }
    if (at !== end) return undefined;
    edns = true;
  }
  if (at !== packet.length) return undefined;
  let name = packet.toString('latin1', HEADER_SIZE, nameEnd);
  if (upper) name = name.replace(/[A-Z]+/g, (s) => s.toLowerCase()); // ASCII only (RFC 4343)
  return { key: `${qtype}/${name}`, nameEnd, qtype, edns, dnssecOk, udpSize };
}

// A ready response for this question, made personal: the query's ID, its RD
// and CD bits, and its question name exactly as sent (letter case included,
// RFC 4343; compression pointers into the question then carry it too).
export function patchResponse(ready: Buffer, packet: Buffer, nameEnd: number): Buffer {
  const out = Buffer.allocUnsafe(ready.length);
  ready.copy(out);
  packet.copy(out, 0, 0, 2);
  out[2] = (ready[2] & 0xfe) | (packet[2] & 0x01);
  out[3] = (ready[3] & 0xef) | (packet[3] & 0x10);
  packet.copy(out, HEADER_SIZE, HEADER_SIZE, nameEnd);
  return out;
}

// An answer without records, byte by byte: the request's ID, opcode, RD and
// CD, its question exactly as sent (when it has a readable one), and an OPT
// record when it had one (which carries the high bits of rcodes over 15).
export function bareResponse(packet: Buffer, rcode: number, question?: Question, opt?: { dnssecOk: boolean; udpSize: number }): Buffer {
  const questionBytes = question ? packet.subarray(HEADER_SIZE, question.nameEnd + 4) : Buffer.alloc(0);
  const out = Buffer.alloc(HEADER_SIZE + questionBytes.length + (opt ? 11 : 0));
  packet.copy(out, 0, 0, 2);
  out[2] = 0x80 | (packet[2] & 0x79); // QR, the opcode, RD
  out[3] = (packet[3] & 0x10) | (rcode & 0x0f); // CD, the rcode's low bits
  out.writeUInt16BE(question ? 1 : 0, 4);
  out.writeUInt16BE(opt ? 1 : 0, 10);
  questionBytes.copy(out, HEADER_SIZE);
  if (opt) {
    const at = HEADER_SIZE + questionBytes.length;
    out.writeUInt16BE(TYPE_OPT, at + 1);
    out.writeUInt16BE(opt.udpSize, at + 3);
    out[at + 5] = rcode >> 4;
    out[at + 7] = opt.dnssecOk ? 0x80 : 0;
  }
  return out;
}
