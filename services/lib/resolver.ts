// The lab resolver: asks the lab DNS server, and only it, and keeps each
// answer for exactly its TTL (negative answers for the SOA's, RFC 2308). It
// answers in the shape of Node's dns.promises (what mailauth expects), with
// Node's error codes: ENOTFOUND (no such name), ENODATA (no such record),
// ESERVFAIL, EREFUSED, ETIMEOUT. Each lookup can be recorded, so that a
// session shows every question its verifier asked.
import dns2 from 'dns2';
import type { Endpoint } from './config.ts';

const { Packet, UDPClient } = dns2;

// dns2 decodes TXT strings as UTF-8, which mangles bytes that are not UTF-8.
// Node's resolver, whose shapes mailauth expects, gives one character per
// byte (latin1): decode the same way, so that no record reads differently.
type Reader = { read(bits: number): number };
(Packet.Resource as unknown as { TXT: { decode: unknown } }).TXT.decode = function (this: { data: string[] }, reader: Reader, length: number) {
  const strings: string[] = [];
  for (let read = 0; read < length; ) {
    const size = reader.read(8);
    read += 1 + size;
    if (read > length) throw new Error('TXT decode: character-string overruns RDATA');
    let text = '';
    for (let i = 0; i < size; i++) text += String.fromCharCode(reader.read(8));
    strings.push(text);
  }
  this.data = strings;
  return this;
};

export type RecordShape = string | string[] | { exchange: string; priority: number };

export interface Question {
  at: string; // when it was asked
  name: string;
  type: string;
  ms: number; // how long the answer took (0 from the cache)
  cached: boolean;
  ttl?: number; // seconds the answer stays valid
  answer?: RecordShape[];
  error?: string; // the error code: ENOTFOUND, ENODATA, ESERVFAIL, ETIMEOUT, ...
}

interface Entry {
  expires: number;
  answer?: RecordShape[];
  error?: string;
}

const RCODE_ERRORS: Record<number, string> = { 1: 'EFORMERR', 2: 'ESERVFAIL', 3: 'ENOTFOUND', 4: 'ENOTIMP', 5: 'EREFUSED' };
const MAX_ENTRIES = 50_000;

export class DnsError extends Error {
  code: string;
  constructor(code: string, name: string, type: string) {
    // An answer, not a fault of this program: a stack trace would say nothing,
    // and capturing one for every "no such record" is a cost under load.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(`query${type} ${code} ${name}`);
    Error.stackTraceLimit = limit;
    this.code = code;
  }
}

export class LabResolver {
  private cache = new Map<string, Entry>();
  private inFlight = new Map<string, Promise<Entry>>();
  private query: (name: string, type: string) => Promise<InstanceType<typeof Packet>>;

  constructor(server: Endpoint, timeoutMs = 3000) {
    this.query = UDPClient({ dns: server.host, port: server.port, timeout: timeoutMs }) as never;
  }

  // dns.promises.resolve(name, type) in behaviour; `record` receives the question.
  async resolve(name: string, type: string, record?: (q: Question) => void): Promise<RecordShape[]> {
    const started = Date.now();
    const key = `${type} ${name.toLowerCase().replace(/\.$/, '')}`;
    let entry = this.cache.get(key);
    const cached = entry !== undefined && entry.expires > started;
    if (!cached) {
      let pending = this.inFlight.get(key);
      if (!pending) {
        pending = this.lookup(name, type).finally(() => this.inFlight.delete(key));
        this.inFlight.set(key, pending);
      }
      entry = await pending;
    }
    const now = Date.now();
    record?.({
      at: new Date(started).toISOString(),
      name,
      type,
      ms: now - started,
      cached,
      ttl: entry!.expires > now ? Math.round((entry!.expires - now) / 1000) : undefined,
      answer: entry!.answer,
      error: entry!.error,
    });
    if (entry!.error) throw new DnsError(entry!.error, name, type);
    return entry!.answer!;
  }

  // Forgets every cached answer for a domain and the names below it: an
  // exercise check judges a student's zone as it is now, not as this
  // receiver saw it up to a TTL ago (a key pasted with a typo lives 300 s).
  forget(domain: string): void {
    const suffix = `.${domain.toLowerCase()}`;
    for (const key of this.cache.keys()) {
      const name = key.slice(key.indexOf(' ') + 1);
      if (name === domain.toLowerCase() || name.endsWith(suffix)) this.cache.delete(key);
    }
  }

  // A resolver function for mailauth and smtp-server that records each question.
  recording(questions: Question[]): (name: string, type: string) => Promise<RecordShape[]> {
    return (name, type) => this.resolve(name, type, (q) => questions.push(q));
  }

  private async lookup(name: string, type: string): Promise<Entry> {
    if (Packet.TYPE[type as keyof typeof Packet.TYPE] === undefined) {
      return { expires: 0, error: 'EBADQUERY' };
    }
    let response: InstanceType<typeof Packet>;
    try {
      response = await this.query(name.replace(/\.$/, ''), type);
    } catch (error) {
      // Timeouts and unreachable servers are not cached: the next message asks again.
      const code = (error as { code?: string }).code;
      return { expires: 0, error: code === 'ETIMEDOUT' ? 'ETIMEOUT' : 'ECONNREFUSED' };
    }
    const rcode = response.header.rcode;
    const wanted = Packet.TYPE[type as keyof typeof Packet.TYPE];
    const answers = response.answers.filter((r) => r.type === wanted);
    let entry: Entry;
    if (rcode === 0 && answers.length > 0) {
      // An RRset's TTL, and that of any CNAME that led to it: the shortest one.
      const ttl = Math.min(...response.answers.map((r) => r.ttl));
      entry = { expires: Date.now() + ttl * 1000, answer: answers.map(shape) };
    } else if (rcode === 0 || rcode === 3) {
      const soa = response.authorities.find((r) => r.type === Packet.TYPE.SOA) as { ttl: number; minimum: number } | undefined;
      const ttl = soa ? Math.min(soa.ttl, soa.minimum) : 0;
      entry = { expires: Date.now() + ttl * 1000, error: rcode === 3 ? 'ENOTFOUND' : 'ENODATA' };
    } else {
      return { expires: 0, error: RCODE_ERRORS[rcode] ?? 'ESERVFAIL' };
    }
    if (this.cache.size >= MAX_ENTRIES) this.cache.clear();
    this.cache.set(`${type} ${name.toLowerCase().replace(/\.$/, '')}`, entry);
    return entry;
  }
}

// dns2's decoded record in the shape Node's resolver gives for its type.
function shape(resource: object): RecordShape {
  const record = resource as Record<string, unknown>;
  switch (record.type) {
    case Packet.TYPE.A:
    case Packet.TYPE.AAAA:
      return record.address as string;
    case Packet.TYPE.MX:
      return { exchange: record.exchange as string, priority: record.priority as number };
    case Packet.TYPE.TXT:
      return record.data as string[];
    case Packet.TYPE.NS:
      return record.ns as string;
    default: // CNAME, PTR
      return record.domain as string;
  }
}
