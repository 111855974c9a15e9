// The checks that look at a student's work without sending anything: their
// DNS records, read fresh from the lab DNS (no cache: a record fixed a
// moment ago counts), the key the sender signs their mail with, and the
// receiver's own records of hand-typed sessions. Each says pass or fail in
// words that name the mistake; a DNS server that does not answer is an
// error of the lab's, not the student's.
import { spf } from 'mailauth/lib/spf/index.js';
import type { Student } from '../../lib/classroom.ts';
import { DnsError, type LabResolver, type Question, type RecordShape } from '../../lib/resolver.ts';
import type { KeyView } from '../classroom/student-keys.ts';
import type { SessionStore } from '../store/sessions.ts';
import type { Lookup } from './catalogue.ts';
import type { LabPeers } from './peers.ts';

export type Status = 'pass' | 'fail' | 'error';

export interface Outcome {
  status: Status;
  reason: string;
}

export interface LookupContext {
  student: Student;
  code: string; // the student's code, for the hand-typed message's Subject
  resolver: LabResolver; // a fresh one for each run: no cache
  dns: Question[]; // what this check asked, for its result
  peers: LabPeers;
  receiver: { hostname: string; address: string };
  sessions: SessionStore;
}

// The lab DNS failed to answer (not "no such record"): the check cannot say.
class LabDnsFault extends Error {}

const NO_RECORD = new Set(['ENOTFOUND', 'ENODATA']);

async function resolve(ctx: LookupContext, name: string, type: string): Promise<RecordShape[]> {
  try {
    return await ctx.resolver.resolve(name, type, (q) => ctx.dns.push(q));
  } catch (error) {
    if (error instanceof DnsError && NO_RECORD.has(error.code)) return [];
    throw new LabDnsFault(`the lab DNS did not answer ${type} ${name} (${(error as DnsError).code ?? (error as Error).message}): check again in a moment`);
  }
}

const texts = async (ctx: LookupContext, name: string) => (await resolve(ctx, name, 'TXT')).map((r) => (Array.isArray(r) ? r.join('') : String(r)));
const pass = (reason: string): Outcome => ({ status: 'pass', reason });
const fail = (reason: string): Outcome => ({ status: 'fail', reason });

export async function runLookup(kind: Lookup, params: Record<string, unknown>, ctx: LookupContext): Promise<Outcome> {
  try {
    return await LOOKUPS[kind](ctx, params);
  } catch (error) {
    if (error instanceof LabDnsFault) return { status: 'error', reason: error.message };
    throw error;
  }
}

const LOOKUPS: Record<Lookup, (ctx: LookupContext, params: Record<string, unknown>) => Promise<Outcome>> = {
  'by-hand': byHand,
  mx,
  'spf-record': spfRecord,
  'spf-authorises': spfAuthorises,
  'dkim-key': dkimKey,
  'dmarc-record': dmarcRecord,
  host,
};

// A session typed by hand: from a client that is none of the lab's MTAs,
// with a message for the student that reached their mailbox, its Subject
// carrying their code (which only they see: no one else can do it for them).
async function byHand(ctx: LookupContext): Promise<Outcome> {
  const { student, code, peers, sessions } = ctx;
  const labMtas = new Set([peers.sender.address, peers.attacker.address, peers.forwarder.address, ctx.receiver.address]);
  let without: string | undefined;
  for (const summary of sessions.list({ recipient: student.address }).slice(0, 200)) {
    if (labMtas.has(summary.client)) continue;
    const session = await sessions.get(summary.id);
    if (!session) continue;
    for (const t of session.transactions) {
      const delivery = t.deliveries.find((d) => d.mailbox === student.address);
      const when = t.at.slice(11, 16);
      if (!delivery) {
        if (t.envelope.rcptTo.includes(student.address)) without ??= `session ${session.id} from ${session.client.address} at ${when} UTC did not deliver its message: ${t.decision.reason}`;
        continue;
      }
      if (!(t.message?.subject ?? '').toUpperCase().includes(code)) {
        without ??= `session ${session.id} from ${session.client.address} at ${when} UTC delivered a message to you, but its Subject (${JSON.stringify(t.message?.subject ?? '')}) does not contain your code ${code}`;
        continue;
      }
      const greeting = session.client.helo ? `${session.transcript.some((l) => /^C: EHLO/i.test(l.line)) ? 'EHLO' : 'HELO'} ${session.client.helo}` : 'a greeting';
      return pass(`session ${session.id} from ${session.client.address} at ${when} UTC: ${greeting}, MAIL FROM:<${t.envelope.mailFrom}>, RCPT TO:<${student.address}>, DATA: stored in ${delivery.folder}`);
    }
  }
  return fail(without ?? `no message typed by hand has reached ${student.address} yet: connect to ${ctx.receiver.hostname} on port 25 and type the commands yourself (the lab's own MTAs do not count)`);
}

// MX records that lead to the receiver through a host of the student's own
// domain with an A record: the mail of their domain comes to the lab.
async function mx(ctx: LookupContext): Promise<Outcome> {
  const { domain } = ctx.student;
  const records = (await resolve(ctx, domain, 'MX')) as { exchange: string; priority: number }[];
  if (records.length === 0) return fail(`no MX record at ${domain}: mail to you has nowhere to go (a sender would try an A record of ${domain} itself, and there is none)`);
  for (const { exchange } of records) {
    const host = exchange.replace(/\.$/, '').toLowerCase();
    if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) return fail(`your MX record names ${host}, an address: an MX names a host (RFC 5321 section 5.1), and the host's A record gives the address`);
    if (host === '' ) return fail(`your MX record is a "null MX" (.): it says ${domain} receives no mail at all (RFC 7505)`);
    if (host === ctx.receiver.hostname) return fail(`your MX names ${host}: that works, but this exercise asks for a host of your own: name one in ${domain} (e.g. mx.${domain}) and give it an A record`);
    if (host !== domain && !host.endsWith(`.${domain}`)) return fail(`your MX names ${host}, which is not in ${domain}: name a host of your own (e.g. mx.${domain}) and give it an A record`);
    const addresses = (await resolve(ctx, host, 'A')).map(String);
    if (addresses.length === 0) {
      const relative = records.some((r) => r.exchange.toLowerCase().endsWith(`${domain}.${domain}`)) ? ` (it ends in ${domain}.${domain}: in a zone file a name without a final dot gets the zone's name added)` : '';
      return fail(`your MX names ${host}, which has no A record${relative}: publish one with the receiver's address, ${ctx.receiver.address}`);
    }
    if (!addresses.includes(ctx.receiver.address)) return fail(`${host}'s A record says ${addresses.join(', ')}; the lab's receiver, where your mailbox is, is ${ctx.receiver.address}`);
  }
  const first = records.toSorted((a, b) => a.priority - b.priority)[0];
  return pass(`MX ${first.priority} ${first.exchange} and its A record lead to ${ctx.receiver.address}, the receiver`);
}

async function spfRecords(ctx: LookupContext): Promise<string[]> {
  return (await texts(ctx, ctx.student.domain)).filter((t) => /^v=spf1(\s|$)/i.test(t));
}

// SPF evaluated as a receiver would for mail from this address.
async function spfFor(ctx: LookupContext, ip: string): Promise<{ result: string; comment: string }> {
  const resolver = async (name: string, type: string) => {
    try {
      return await ctx.resolver.resolve(name, type, (q) => ctx.dns.push(q));
    } catch (error) {
      throw Object.assign(new Error((error as Error).message), { code: (error as DnsError).code });
    }
  };
  const result = await spf({ sender: ctx.student.address, ip, helo: 'check.lab.test', mta: ctx.receiver.hostname, resolver: resolver as never });
  if (result.status.result === 'temperror') throw new LabDnsFault(`SPF for ${ip} gave temperror: ${result.status.comment}`);
  return { result: result.status.result, comment: result.status.comment ?? '' };
}

async function spfRecord(ctx: LookupContext, params: Record<string, unknown>): Promise<Outcome> {
  const { domain } = ctx.student;
  const records = await spfRecords(ctx);
  if (records.length === 0) return fail(`no SPF record at ${domain}: a TXT record starting "v=spf1" says which servers send your mail`);
  if (records.length > 1) return fail(`${records.length} SPF records at ${domain}: with more than one, SPF gives permerror (RFC 7208 section 4.5): make them one record`);
  const [record] = records;
  const sender = ctx.peers.sender;
  const own = await spfFor(ctx, sender.address);
  if (own.result !== 'pass') {
    const names = /ip4:192\.0\.2\.10\b|a:mta\.sender\.test\b|include:/i.test(record) ? '' : `: it does not name ${sender.address} or ${sender.hostname}`;
    return fail(`your SPF record "${record}" gives ${own.result} for ${sender.address} (${sender.hostname}, where your mail leaves the lab)${names}`);
  }
  if (params.all) {
    const attacker = ctx.peers.attacker;
    const other = await spfFor(ctx, attacker.address);
    if (other.result !== params.all) {
      const hint = other.result === 'softfail' ? ': it ends in ~all, which says "probably not"; -all says "no"' : other.result === 'neutral' ? ': it ends in ?all, which says nothing' : other.result === 'pass' ? `: it lets ${attacker.hostname} send as you` : '';
      return fail(`your SPF record "${record}" gives ${other.result} for ${attacker.address} (${attacker.hostname}), not ${params.all}${hint}`);
    }
  }
  return pass(`one SPF record, "${record}": pass for ${sender.address}${params.all ? `, ${params.all} for everyone else` : ''}`);
}

// The sender and every address named still pass: the record was fixed
// without losing anyone it was meant to authorise.
async function spfAuthorises(ctx: LookupContext, params: Record<string, unknown>): Promise<Outcome> {
  const records = await spfRecords(ctx);
  if (records.length !== 1) return fail(`${records.length || 'no'} SPF record${records.length === 1 ? '' : 's'} at ${ctx.student.domain}: one is needed`);
  const addresses = [ctx.peers.sender.address, ...(params.addresses as string[])];
  const failing: string[] = [];
  for (const ip of addresses) {
    const { result, comment } = await spfFor(ctx, ip);
    if (result === 'permerror') return fail(`your SPF record gives permerror for ${ip}: ${comment.replace(/^[^:]*: /, '')} (SPF allows 10 lookups: include, a, mx, ptr, exists and redirect each cost one; ip4 costs none)`);
    if (result !== 'pass') failing.push(`${ip} (${result})`);
  }
  if (failing.length) return fail(`your SPF record "${records[0]}" no longer authorises ${failing.join(', ')}: the services must still pass`);
  return pass(`"${records[0]}" passes for all ${addresses.length} addresses, within SPF's 10 lookups`);
}

// The keys the sender signs the student's mail with, each published as it is.
async function dkimKey(ctx: LookupContext): Promise<Outcome> {
  const { domain } = ctx.student;
  let keys: KeyView[];
  try {
    keys = (await ctx.peers.api<KeyView[]>(ctx.peers.sender, `/api/classroom/dkim?domain=${encodeURIComponent(domain)}`)) ?? [];
  } catch (error) {
    return { status: 'error', reason: `${ctx.peers.sender.hostname} did not say which keys it holds: ${(error as Error).message}` };
  }
  if (keys.length === 0) return fail(`${ctx.peers.sender.hostname} holds no DKIM key for ${domain}, so your mail goes out unsigned: make a key pair (the sender's console, Keys), then publish its record`);
  const good: string[] = [];
  for (const key of keys) {
    const published = (await texts(ctx, key.name)).filter((t) => /v=DKIM1|p=/i.test(t));
    if (published.length === 0) return fail(`nothing is published at ${key.name}: the sender signs with selector ${key.selector}, and receivers look for its public key there. Publish: ${key.zoneLine}`);
    if (published.length > 1) return fail(`${published.length} records at ${key.name}: a receiver cannot tell which key is meant; publish one`);
    const wanted = tag(key.record, 'p') ?? '';
    const got = tag(published[0], 'p');
    if (got === undefined) return fail(`the record at ${key.name} has no p= tag: "${published[0]}"`);
    if (got === '') return fail(`the record at ${key.name} has an empty p=: that says the key is revoked (RFC 6376 section 3.6.1)`);
    if (got !== wanted) {
      let at = 0;
      while (at < Math.min(got.length, wanted.length) && got[at] === wanted[at]) at++;
      const window = (s: string) => `...${s.slice(Math.max(0, at - 8), at + 8)}...`;
      const length = got.length !== wanted.length ? ` (${got.length} characters published, the key has ${wanted.length})` : '';
      return fail(`the key published at ${key.name} differs from the one ${ctx.peers.sender.hostname} signs with, at character ${at + 1} of p=${length}: published ${window(got)}, the sender's ${window(wanted)}. Copy the record again, whole`);
    }
    const k = tag(published[0], 'k') ?? 'rsa';
    if (k !== (tag(key.record, 'k') ?? 'rsa')) return fail(`the record at ${key.name} says k=${k}, but the key is ${tag(key.record, 'k')}`);
    good.push(key.name);
  }
  return pass(`published as the sender holds ${good.length === 1 ? 'it' : 'them'}: ${good.join(', ')}`);
}

// A tag's value in a tag=value; list (DKIM and DMARC records), spaces removed from keys' values.
function tag(record: string, name: string): string | undefined {
  for (const part of record.split(';')) {
    const [key, ...value] = part.split('=');
    if (key.trim().toLowerCase() === name) return name === 'p' ? value.join('=').replace(/\s+/g, '') : value.join('=').trim();
  }
  return undefined;
}

const TAG_MEANING: Record<string, string> = {
  p: 'the policy for your domain',
  sp: 'the policy for names below it that exist',
  np: 'the policy for names below it that do not exist',
  adkim: 'DKIM alignment (r relaxed, s strict)',
  aspf: 'SPF alignment (r relaxed, s strict)',
};

async function dmarcRecord(ctx: LookupContext, params: Record<string, unknown>): Promise<Outcome> {
  const { domain } = ctx.student;
  const name = `_dmarc.${domain}`;
  const all = await texts(ctx, name);
  const records = all.filter((t) => /^v=DMARC1\s*(;|$)/i.test(t));
  if (records.length === 0) {
    const near = all.find((t) => /dmarc/i.test(t));
    return fail(`no DMARC record at ${name}${near ? `: "${near}" does not start with exactly "v=DMARC1;"` : ''}${(await texts(ctx, domain)).some((t) => /^v=DMARC1/i.test(t)) ? `; there is one at ${domain} itself, where receivers do not look` : ''}`);
  }
  if (records.length > 1) return fail(`${records.length} DMARC records at ${name}: receivers then use none (RFC 9989): publish one`);
  const [record] = records;
  const p = tag(record, 'p');
  if (!p || !['none', 'quarantine', 'reject'].includes(p.toLowerCase())) return fail(`your DMARC record "${record}" has ${p ? `p=${p}, which is not none, quarantine or reject` : 'no p= tag'}`);
  const effective: Record<string, string | undefined> = { p: p.toLowerCase(), adkim: tag(record, 'adkim')?.toLowerCase() ?? 'r', aspf: tag(record, 'aspf')?.toLowerCase() ?? 'r' };
  effective.sp = tag(record, 'sp')?.toLowerCase() ?? effective.p;
  effective.np = tag(record, 'np')?.toLowerCase() ?? effective.sp;
  for (const key of ['p', 'sp', 'np', 'adkim', 'aspf']) {
    const wanted = params[key];
    if (wanted === undefined || effective[key] === wanted) continue;
    const written = tag(record, key);
    const how = written === undefined ? `no ${key}= tag, so ${key}=${effective[key]}${key === 'np' ? ' (from sp=, or p=)' : key === 'sp' ? ' (from p=)' : ' (the default)'}` : `${key}=${written}`;
    const monitorFirst = key === 'p' && wanted === 'none' ? '. Monitor first: a policy that acts before you know who sends in your name (your reports tell you) can lose your own mail' : '';
    return fail(`your DMARC record "${record}" has ${how}; this exercise asks for ${key}=${wanted}: ${TAG_MEANING[key]}${monitorFirst}`);
  }
  if (params.rua === 'own') {
    const rua = tag(record, 'rua');
    if (!rua) return fail(`your DMARC record "${record}" asks for no reports: add rua=mailto:${ctx.student.address}, so that receivers tell you who sends mail in your name`);
    for (const uri of rua.split(',').map((u) => u.trim())) {
      const address = /^mailto:([^!]+)/i.exec(uri)?.[1]?.toLowerCase();
      if (!address) return fail(`rua=${uri} is not a mailto: address`);
      const at = address.slice(address.lastIndexOf('@') + 1);
      if (at !== domain && !at.endsWith(`.${domain}`)) return fail(`rua=${uri} sends your reports to ${at}, outside ${domain}: use a mailbox of your own (${ctx.student.address}); another domain would have to publish that it accepts them`);
    }
  }
  return pass(`"${record}" at ${name}`);
}

async function host(ctx: LookupContext, params: Record<string, unknown>): Promise<Outcome> {
  const name = `${params.name}.${ctx.student.domain}`;
  const found = [...(await resolve(ctx, name, 'A')), ...(await resolve(ctx, name, 'MX'))];
  if (found.length === 0) return fail(`${name} does not exist: publish an A record for it (e.g. ${params.name} A ${ctx.receiver.address})`);
  return pass(`${name} exists`);
}
