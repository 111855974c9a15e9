// Byte-level reading of the common query and patching of a ready response.
// dns2 decodes and encodes bit by bit, far too slowly to run per query; the
// ordinary query (one question, class IN, at most an EDNS OPT record) is read
// here directly, and its answer is bytes that dns2 encoded once.

export const HEADER_SIZE = 12;
const TYPE_OPT = 41;
const CLASS_IN = 1;

export interface Query {
  id: number;
  rd: boolean;
  cd: boolean;
  name: string; // lower case (ASCII only, RFC 4343), no final dot
  nameEnd: number; // offset just past the question name in the packet
  qtype: number;
  edns: boolean;
  dnssecOk: boolean;
  udpSize: number; // what the client can take over UDP (512 without EDNS)
}

// The ordinary query, or undefined: then the packet takes the careful path
// through dns2's parser, which also produces the error answers.
export function readQuery(packet: Buffer): Query | undefined {
  if (packet.length < HEADER_SIZE + 5) return undefined;
  const flags = packet.readUInt16BE(2);
  // QR=0, opcode QUERY, no TC; one question, nothing else but maybe one OPT.
  if ((flags & 0xfa00) !== 0) return undefined;
  if (packet.readUInt16BE(4) !== 1 || packet.readUInt32BE(6) !== 0) return undefined;
  const additional = packet.readUInt16BE(10);
  if (additional > 1) return undefined;

  let at = HEADER_SIZE;
  let name = '';
  for (;;) {
    const length = packet[at];
    if (length === undefined || length > 63) return undefined; // pointers and garbage: careful path
    if (length === 0) break;
    if (at + 1 + length > packet.length) return undefined;
    // A dot inside a label is data, not a separator (RFC 4343 section 2.1): as
    // \0 it names nothing in the zones and keeps the name's wire length.
    name += (name ? '.' : '') + packet.toString('latin1', at + 1, at + 1 + length).replaceAll('.', '\0');
    at += 1 + length;
  }
  const nameEnd = at + 1;
  if (nameEnd - HEADER_SIZE > 255 || nameEnd + 4 > packet.length) return undefined;
  const qtype = packet.readUInt16BE(nameEnd);
  if (packet.readUInt16BE(nameEnd + 2) !== CLASS_IN) return undefined;
  at = nameEnd + 4;

  let edns = false;
  let dnssecOk = false;
  let udpSize = 512;
  if (additional === 1) {
    // The OPT pseudo-record: root owner, type 41, class = payload size,
    // TTL = extended rcode, version, DO bit; its options are ignored.
    if (at + 11 > packet.length || packet[at] !== 0 || packet.readUInt16BE(at + 1) !== TYPE_OPT) return undefined;
    const version = packet[at + 6];
    if (version !== 0) return undefined; // BADVERS comes from the careful path
    udpSize = Math.max(512, packet.readUInt16BE(at + 3));
    dnssecOk = (packet[at + 7] & 0x80) !== 0;
    at += 11 + packet.readUInt16BE(at + 9);
    edns = true;
  }
  if (at !== packet.length) return undefined;
  if (/[A-Z]/.test(name)) name = name.replace(/[A-Z]+/g, (s) => s.toLowerCase());
  return {
    id: packet.readUInt16BE(0),
    rd: (flags & 0x0100) !== 0,
    cd: (packet[3] & 0x10) !== 0,
    name,
    nameEnd,
    qtype,
    edns,
    dnssecOk,
    udpSize,
  };
}

// A ready response for this question, made personal: the query's ID, its RD
// and CD bits, and its question name exactly as sent (letter case included,
// RFC 4343; compression pointers into the question then carry it too).
export function patchResponse(ready: Buffer, query: Query, packet: Buffer): Buffer {
  const out = Buffer.allocUnsafe(ready.length);
  ready.copy(out);
  out.writeUInt16BE(query.id, 0);
  out[2] = (ready[2] & 0xfe) | (query.rd ? 1 : 0);
  out[3] = (ready[3] & 0xef) | (query.cd ? 0x10 : 0);
  packet.copy(out, HEADER_SIZE, HEADER_SIZE, query.nameEnd);
  return out;
}
