// Turns a query packet into the response packet (or into silence). The
// answer to each question is encoded once by dns2 and kept; later queries get
// a copy with their own ID, flags and name case. The cache is emptied
// whenever the zones change (file reload, override).
import { Packet } from 'dns2';
import { lookup, RCODE, type Lookup } from './answer.ts';
import { HEADER_SIZE, patchResponse, readQuery, type Query } from './wire.ts';
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
  full?: Buffer;
  truncated?: Buffer;
  rcode: number;
  answers: number;
  delayMs: number;
  fault?: Fault;
}

interface Header {
  id: number;
  rd: boolean;
  cd: boolean;
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
    const type = Packet.typeName(query.qtype);
    try {
      const ready = this.readyFor(query.name, query.qtype, query.edns, query.dnssecOk);
      const limit = sizeLimit(transport, query.edns, query.udpSize);
      return toReply(ready, limit, (bytes) => patchResponse(bytes, query, packet), query.name, type);
    } catch {
      return this.failure(packet, query, type, RCODE.SERVFAIL);
    }
  }

  private readyFor(name: string, qtype: number, edns: boolean, dnssecOk: boolean): Ready {
    if (this.generation !== this.zones.generation) {
      this.ready.clear();
      this.generation = this.zones.generation;
    }
    const key = `${qtype}/${edns ? (dnssecOk ? 2 : 1) : 0}/${name}`;
    let ready = this.ready.get(key);
    if (!ready) {
      if (this.ready.size >= MAX_CACHED) this.ready.clear();
      ready = prepare(this.zones, name, qtype, edns, dnssecOk);
      this.ready.set(key, ready);
    }
    return ready;
  }

  // Everything readQuery would not take: odd but valid queries, and the
  // malformed, unsupported and refused ones, each with its rcode.
  private carefulReply(packet: Buffer, transport: 'udp' | 'tcp'): Reply {
    const silence: Reply = { delayMs: 0, name: '', type: '', rcode: -1, answers: 0, truncated: false };
    // Too short to hold a header, or itself a response: answering could start a loop.
    if (packet.length < HEADER_SIZE || (packet[2] & 0x80) !== 0) return silence;
    let request: InstanceType<typeof Packet>;
    try {
      request = Packet.parse(packet);
    } catch {
      return this.failure(packet, undefined, '', RCODE.FORMERR);
    }
    const question = request.questions[0];
    const name = question ? question.name.replace(/[A-Z]+/g, (s) => s.toLowerCase()).replace(/\.$/, '') : '';
    const type = question ? Packet.typeName(question.type) : '';
    const header = { id: request.header.id, rd: !!request.header.rd, cd: !!(request.header as { cd?: number }).cd };
    const opts = request.additionals.filter((r) => r.type === Packet.TYPE.EDNS);
    const opt = opts[0] as { class: number; version?: number; doFlag?: boolean } | undefined;
    const answer = (rcode: number, withQuestion = true): Reply => ({
      response: encodeError(header, withQuestion ? question : undefined, rcode, !!opt, opt?.doFlag ?? false),
      delayMs: 0,
      name,
      type,
      rcode,
      answers: 0,
      truncated: false,
    });
    if (request.header.opcode !== 0) return answer(RCODE.NOTIMP);
    if (request.errors.length > 0 || request.questions.length !== 1 || opts.length > 1) return answer(RCODE.FORMERR, request.questions.length === 1);
    if (opt && (opt.version ?? 0) > 0) return answer(BADVERS); // RFC 6891 section 6.1.3
    if (question.class !== 1) return answer(RCODE.REFUSED);
    try {
      const ready = prepare(this.zones, name, question.type, !!opt, opt?.doFlag ?? false);
      const limit = sizeLimit(transport, !!opt, Math.max(512, opt?.class ?? 512));
      return toReply(ready, limit, (bytes) => withHeader(bytes, header, question.name), name, type);
    } catch {
      return answer(RCODE.SERVFAIL);
    }
  }

  private failure(packet: Buffer, query: Query | undefined, type: string, rcode: number): Reply {
    const header = { id: packet.readUInt16BE(0), rd: (packet[2] & 1) === 1, cd: (packet[3] & 0x10) !== 0 };
    const question = query && { name: query.name, type: query.qtype, class: 1 };
    return {
      response: encodeError(header, question, rcode, query?.edns ?? false, query?.dnssecOk ?? false),
      delayMs: 0,
      name: query?.name ?? '',
      type,
      rcode,
      answers: 0,
      truncated: false,
    };
  }
}

// Over UDP the smaller of what the client takes and what we offer; TCP takes all.
function sizeLimit(transport: 'udp' | 'tcp', edns: boolean, udpSize: number): number {
  if (transport === 'tcp') return 65535;
  return edns ? Math.min(udpSize, EDNS_UDP_SIZE) : 512;
}

function toReply(ready: Ready, limit: number, personalize: (bytes: Buffer) => Buffer, name: string, type: string): Reply {
  const truncated = ready.full !== undefined && ready.full.length > limit;
  const bytes = truncated ? ready.truncated : ready.full;
  return {
    response: bytes && personalize(bytes),
    delayMs: ready.delayMs,
    name,
    type,
    rcode: ready.rcode,
    answers: truncated ? 0 : ready.answers,
    truncated,
    fault: ready.fault?.kind,
  };
}

// The answer to one question, encoded with a zero ID and the name in lower case.
function prepare(zones: ZoneSet, name: string, qtype: number, edns: boolean, dnssecOk: boolean): Ready {
  const header = { id: 0, rd: false, cd: false };
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
  if (fault?.kind === 'timeout') return { rcode: -1, answers: 0, delayMs: 0, fault };
  if (fault?.kind === 'servfail') {
    return { full: encodeError(header, question, RCODE.SERVFAIL, edns, dnssecOk), rcode: RCODE.SERVFAIL, answers: 0, delayMs: 0, fault };
  }
  const packet = newResponse(header, question, result.rcode, edns, dnssecOk);
  packet.answers = result.answers.map(toResource);
  packet.authorities = result.authorities.map(toResource);
  packet.additionals = [...result.additionals.map(toResource), ...packet.additionals];
  const full = packet.toBuffer();
  // TC=1 with only the question (and OPT): the client asks again over TCP.
  const cut = newResponse(header, question, result.rcode, edns, dnssecOk);
  cut.header.tc = 1;
  return {
    full,
    truncated: cut.toBuffer(),
    rcode: result.rcode,
    answers: result.answers.length,
    delayMs: fault?.kind === 'delay' ? fault.delayMs : 0,
    fault,
  };
}

function newResponse(header: Header, question: object | undefined, rcode: number, edns: boolean, dnssecOk: boolean) {
  const packet = new Packet();
  packet.header = new Packet.Header({ id: header.id, qr: 1, opcode: 0, aa: 1, rd: header.rd ? 1 : 0, cd: header.cd ? 1 : 0, rcode } as object);
  packet.questions = question ? [question as InstanceType<typeof Packet.Question>] : [];
  if (edns) packet.additionals = [Packet.Resource.EDNS([], { udpPayloadSize: EDNS_UDP_SIZE, doFlag: dnssecOk }) as never];
  return packet;
}

function encodeError(header: Header, question: object | undefined, rcode: number, edns: boolean, dnssecOk: boolean): Buffer {
  const packet = newResponse(header, question, rcode, edns, dnssecOk);
  packet.header.aa = 0;
  return packet.toBuffer();
}

// For the careful path: the ID, RD and CD of this request, and its question
// name as sent (the ready bytes hold it in lower case, same length).
function withHeader(ready: Buffer, header: Header, questionName: string): Buffer {
  const out = Buffer.from(ready);
  out.writeUInt16BE(header.id, 0);
  out[2] = (out[2] & 0xfe) | (header.rd ? 1 : 0);
  out[3] = (out[3] & 0xef) | (header.cd ? 0x10 : 0);
  const labels = questionName.replace(/\.$/, '').split('.').filter(Boolean);
  let at = HEADER_SIZE;
  for (const label of labels) {
    out.write(label, at + 1, 'latin1');
    at += 1 + label.length;
  }
  return out;
}

function toResource(record: ZoneRecord) {
  return { ...record, type: Packet.TYPE[record.type], class: 1 } as never;
}
