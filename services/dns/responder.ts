// Turns a query packet into the response packet (or into silence). The
// answer to each question is encoded once by dns2 and kept; later queries get
// a copy with their own ID, flags and name case. The cache is emptied
// whenever the zones change (file reload, override).
import { Packet } from './packet.ts';
import { lookup, RCODE, type Lookup } from './answer.ts';
import { bareResponse, HEADER_SIZE, patchResponse, readQuery, readQuestion, type Query } from './wire.ts';
import type { ZoneSet } from './zones.ts';
import type { Fault, ZoneRecord } from './zone-file.ts';

// What we offer over UDP with EDNS: the DNS Flag Day 2020 size, as knotd and BIND do.
export const EDNS_UDP_SIZE = 1232;
const MAX_CACHED = 10_000;
const BADVERS = 16;

export interface Reply {
  response?: Buffer; // none: say nothing (a timeout fault, or a packet not worth an answer)
  delayMs: number;
  name: string;
  type: string;
  rcode: number;
  answers: number;
  truncated: boolean;
  fault?: string;
}

// One question's answer, ready to send.
interface Ready {
  name: string;
  type: string;
  full?: Buffer;
  truncated?: Buffer;
  rcode: number;
  answers: number;
  delayMs: number;
  fault?: Fault;
}

export class Responder {
  private zones: ZoneSet;
  private ready = new Map<string, Ready>();
  private generation = -1;

  constructor(zones: ZoneSet) {
    this.zones = zones;
  }

  reply(packet: Buffer, transport: 'udp' | 'tcp'): Reply {
    const query = readQuery(packet);
    if (!query) return this.carefulReply(packet, transport);
    try {
      const ready = this.readyFor(packet, query);
      return toReply(ready, sizeLimit(transport, query.edns, query.udpSize), (bytes) => patchResponse(bytes, packet, query.nameEnd));
    } catch {
      const question = readQuestion(packet)!;
      const opt = query.edns ? { dnssecOk: query.dnssecOk, udpSize: EDNS_UDP_SIZE } : undefined;
      return bare(bareResponse(packet, RCODE.SERVFAIL, question, opt), question.name, Packet.typeName(query.qtype), RCODE.SERVFAIL);
    }
  }

  // Found by the question's wire form; the name is read out only to prepare an answer.
  private readyFor(packet: Buffer, query: Query): Ready {
    if (this.generation !== this.zones.generation) {
      this.ready.clear();
      this.generation = this.zones.generation;
    }
    const key = query.edns ? (query.dnssecOk ? `2${query.key}` : `1${query.key}`) : `0${query.key}`;
    let ready = this.ready.get(key);
    if (!ready) {
      if (this.ready.size >= MAX_CACHED) this.ready.clear();
      ready = prepare(this.zones, readQuestion(packet)!.name, query.qtype, query.edns, query.dnssecOk);
      this.ready.set(key, ready);
    }
    return ready;
  }

  // Everything readQuery would not take: odd but valid queries, and the
  // malformed, unsupported and refused ones, each with its rcode. dns2's
  // parser judges the whole packet; the question is read (and echoed) as sent.
  private carefulReply(packet: Buffer, transport: 'udp' | 'tcp'): Reply {
    // Too short to hold a header, or itself a response: answering could start a loop.
    if (packet.length < HEADER_SIZE || (packet[2] & 0x80) !== 0) {
      return { delayMs: 0, name: '', type: '', rcode: -1, answers: 0, truncated: false };
    }
    const question = packet.readUInt16BE(4) >= 1 ? readQuestion(packet) : undefined;
    const type = question ? Packet.typeName(question.qtype) : '';
    let request: InstanceType<typeof Packet> | undefined;
    try {
      request = Packet.parse(packet);
    } catch {
      request = undefined;
    }
    const opts = (request?.additionals ?? []).filter((r) => r.type === Packet.TYPE.EDNS) as { class: number; version?: number; doFlag?: boolean }[];
    const opt = opts.length === 1 ? { dnssecOk: !!opts[0].doFlag, udpSize: EDNS_UDP_SIZE } : undefined;
    const refuse = (rcode: number) => bare(bareResponse(packet, rcode, question, opt), question?.name ?? '', type, rcode);
    if ((packet[2] & 0x78) !== 0) return refuse(RCODE.NOTIMP); // an opcode other than QUERY
    if (!request || request.errors.length > 0 || packet.readUInt16BE(4) !== 1 || !question || opts.length > 1) return refuse(RCODE.FORMERR);
    if ((opts[0]?.version ?? 0) > 0) return refuse(BADVERS); // RFC 6891 section 6.1.3
    if (question.qclass !== 1) return refuse(RCODE.REFUSED);
    try {
      const ready = prepare(this.zones, question.name, question.qtype, !!opt, opt?.dnssecOk ?? false);
      const limit = sizeLimit(transport, !!opt, Math.max(512, opts[0]?.class ?? 512));
      return toReply(ready, limit, (bytes) => patchResponse(bytes, packet, question.nameEnd));
    } catch {
      return refuse(RCODE.SERVFAIL);
    }
  }
}

function bare(response: Buffer, name: string, type: string, rcode: number): Reply {
  return { response, delayMs: 0, name, type, rcode, answers: 0, truncated: false };
}

// Over UDP the smaller of what the client takes and what we offer; TCP takes all.
function sizeLimit(transport: 'udp' | 'tcp', edns: boolean, udpSize: number): number {
  if (transport === 'tcp') return 65535;
  return edns ? Math.min(udpSize, EDNS_UDP_SIZE) : 512;
}

function toReply(ready: Ready, limit: number, personalize: (bytes: Buffer) => Buffer): Reply {
  const truncated = ready.full !== undefined && ready.full.length > limit;
  const bytes = truncated ? ready.truncated : ready.full;
  return {
    response: bytes && personalize(bytes),
    delayMs: ready.delayMs,
    name: ready.name,
    type: ready.type,
    rcode: ready.rcode,
    answers: truncated ? 0 : ready.answers,
    truncated,
    fault: ready.fault?.kind,
  };
}

// The answer to one question, encoded with a zero ID and the name in lower case.
function prepare(zones: ZoneSet, name: string, qtype: number, edns: boolean, dnssecOk: boolean): Ready {
  const question = { name, type: qtype, class: 1 };
  let result: Lookup;
  if (qtype === Packet.TYPE.AXFR || qtype === 251 /* IXFR */) {
    // Zone transfers are not offered: the zone files are there to read.
    result = { rcode: RCODE.REFUSED, answers: [], authorities: [], additionals: [] };
  } else if (qtype === Packet.TYPE.EDNS || (qtype >= 128 && qtype !== Packet.TYPE.ANY)) {
    result = { rcode: RCODE.FORMERR, answers: [], authorities: [], additionals: [] }; // meta types are not questions
  } else {
    result = lookup(zones, name, Packet.typeName(qtype));
  }
  const fault = result.fault;
  const type = Packet.typeName(qtype);
  if (fault?.kind === 'timeout') return { name, type, rcode: -1, answers: 0, delayMs: 0, fault };
  if (fault?.kind === 'servfail') {
    const full = newResponse(question, RCODE.SERVFAIL, edns, dnssecOk, false).toBuffer();
    return { name, type, full, rcode: RCODE.SERVFAIL, answers: 0, delayMs: 0, fault };
  }
  const packet = newResponse(question, result.rcode, edns, dnssecOk);
  packet.answers = result.answers.map(toResource);
  packet.authorities = result.authorities.map(toResource);
  packet.additionals = [...result.additionals.map(toResource), ...packet.additionals];
  const full = packet.toBuffer();
  // TC=1 with only the question (and OPT): the client asks again over TCP.
  const cut = newResponse(question, result.rcode, edns, dnssecOk);
  cut.header.tc = 1;
  return {
    name,
    type,
    full,
    truncated: cut.toBuffer(),
    rcode: result.rcode,
    answers: result.answers.length,
    delayMs: fault?.kind === 'delay' ? fault.delayMs : 0,
    fault,
  };
}

// ID 0, RD and CD clear: patchResponse puts in the query's own.
function newResponse(question: object, rcode: number, edns: boolean, dnssecOk: boolean, authoritative = true) {
  const packet = new Packet();
  packet.header = new Packet.Header({ id: 0, qr: 1, opcode: 0, aa: authoritative ? 1 : 0, rcode });
  packet.questions = [question as InstanceType<typeof Packet.Question>];
  if (edns) packet.additionals = [Packet.Resource.EDNS([], { udpPayloadSize: EDNS_UDP_SIZE, doFlag: dnssecOk }) as never];
  return packet;
}

function toResource(record: ZoneRecord) {
  return { ...record, type: Packet.TYPE[record.type], class: 1 } as never;
}
