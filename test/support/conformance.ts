// Public DKIM and ARC conformance data read into one shape: "worlds", each a
// set of DNS key records and the messages to verify against them, with what
// the suite's own tests expect of each message. Messages get CRLF line ends:
// the files keep LF, and a receiving MTA sees the SMTP form (stalwart's tests
// convert the same way; the ARC suite and dkimpy's messages give the same
// results either way, as the suites' reference code canonicalizes LF to CRLF).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { dkimSign, type DKIMSignOptions } from 'mailauth';
import type { Envelope, Verdict } from '../../services/mta/inbound/verify.ts';
import { zoneFiles } from './spf-suite.ts';

export interface Check {
  what: string; // the part of the verdict, as a report names it
  expected: string; // a result, or "not pass" where the suite only says "does not verify"
  observe: (verdict: Verdict) => string;
}

export interface Case {
  id: string;
  message: Buffer;
  envelope: Envelope;
  checks: Check[];
}

export interface World {
  txt: Map<string, string[]>; // name -> the strings of its one TXT record
  cases: Case[];
}

export const agrees = (expected: string, actual: string) => (expected === 'not pass' ? actual !== 'pass' : actual === expected);

// ---------------------------------------------------------------------------
// What a check looks at

const dkimOf =
  (selector: string): Check['observe'] =>
  (v) =>
    v.dkim.find((s) => s.selector === selector)?.result ?? 'absent';
const lastDkim: Check['observe'] = (v) => v.dkim.at(-1)?.result ?? 'absent';
const someDkim: Check['observe'] = (v) => (v.dkim.some((s) => s.result === 'pass') ? 'pass' : v.dkim.map((s) => s.result).join(',') || 'none');
const arc: Check['observe'] = (v) => v.arc.result;

const dkimPass = (selector: string): Check => ({ what: `DKIM s=${selector}`, expected: 'pass', observe: dkimOf(selector) });

// ---------------------------------------------------------------------------
// Suites

// RFC 8463 Appendix A as mailauth keeps it: dns.json is {name: {TXT: [[strings]]}}.
export function rfc8463(dir: string): World[] {
  const dns = JSON.parse(readFileSync(join(dir, 'dns.json'), 'utf8')) as Record<string, { TXT: string[][] }>;
  const txt = new Map(Object.entries(dns).map(([name, { TXT }]) => [name, TXT[0]]));
  const message = readMessage(join(dir, 'signed.eml'));
  return [{ txt, cases: [{ id: 'signed.eml', ...message, checks: [dkimPass('brisbane'), dkimPass('test')] }] }];
}

// Stalwart mail-auth resources/dkim or resources/arc: `name value` key lines,
// a blank line, the message. One world per file, as upstream gives each file
// its own cache. Expected as upstream asserts: dkim/ -> the last signature
// passes; arc/ -> ARC passes and some DKIM signature passes.
export function stalwart(dir: string, kind: 'dkim' | 'arc'): World[] {
  return readdirSync(join(dir, kind))
    .sort()
    .map((file) => {
      const text = readFileSync(join(dir, kind, file), 'utf8');
      const blank = text.indexOf('\n\n');
      const txt = new Map<string, string[]>();
      for (const line of text.slice(0, blank).split('\n')) {
        const space = line.indexOf(' ');
        txt.set(line.slice(0, space), [line.slice(space + 1)]);
      }
      const checks: Check[] =
        kind === 'dkim'
          ? [{ what: 'last DKIM signature', expected: 'pass', observe: lastDkim }]
          : [
              { what: 'ARC', expected: 'pass', observe: arc },
              { what: 'some DKIM signature', expected: 'pass', observe: someDkim },
            ];
      return { txt, cases: [{ id: `${kind}/${file}`, ...asMessage(text.slice(blank + 2)), checks }] };
    });
}

// dkimpy's data under the DNS names its tests give it (test_dkim.py,
// test_dkim_ed25519.py). Two signed messages verify; its sign-then-verify
// tests are repeated with mailauth signing: ed25519test.msg in every
// canonicalization verifies, and test.message signed with test.private
// verifies against test.txt but not against badversion.txt or badk.txt.
export async function dkimpy(dir: string): Promise<World[]> {
  const read = (file: string) => readFileSync(join(dir, file), 'utf8').trim();
  const sign = async (file: string, selector: string, privateKey: Buffer, canonicalization = 'relaxed/relaxed') => {
    const { message } = readMessage(join(dir, file));
    // mailauth's types want signingDomain, selector and privateKey at the top
    // level too, where its signer never reads them: it signs signatureData.
    const options = { canonicalization, signatureData: [{ signingDomain: 'example.com', selector, privateKey }] } as DKIMSignOptions;
    const signed = await dkimSign(message, options);
    if (!signed.signatures) throw new Error(`signing ${file} failed: ${signed.errors.map((e) => e.err.message).join('; ')}`);
    return asMessage(signed.signatures + message.toString());
  };

  const edKey = Buffer.from(read('ed25519test.key'), 'base64'); // a raw 32-byte seed
  const signedEd: Case[] = [];
  for (const canonicalization of ['simple/simple', 'simple/relaxed', 'relaxed/simple', 'relaxed/relaxed']) {
    const message = await sign('ed25519test.msg', 'test', edKey, canonicalization);
    signedEd.push({ id: `ed25519test.msg signed ${canonicalization}`, ...message, checks: [dkimPass('test')] });
  }
  const published = {
    txt: new Map([
      // dnsfunc5 of test_dkim.py: the RFC 8463 Ed25519 key, and test.txt for the RSA one
      ['brisbane._domainkey.football.example.com', ['v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=']],
      ['test._domainkey.football.example.com', [read('test.txt')]],
      ['sed._domainkey.test.ex', [read('eximtest.dns')]],
      ['test._domainkey.example.com', [read('ed25519test.dns')]],
    ]),
    cases: [
      { id: 'rfc6376.signed.msg', ...readMessage(join(dir, 'rfc6376.signed.msg')), checks: [dkimPass('brisbane'), dkimPass('test')] },
      { id: 'ed25519test2.msg', ...readMessage(join(dir, 'ed25519test2.msg')), checks: [dkimPass('sed')] },
      ...signedEd,
    ],
  };

  const rsaKey = readFileSync(join(dir, 'test.private'));
  const records = [
    ['test.txt', 'pass'],
    ['badversion.txt', 'not pass'],
    ['badk.txt', 'not pass'],
  ];
  const rsa: World[] = [];
  for (const [record, expected] of records) {
    const message = await sign('test.message', 'test', rsaKey);
    rsa.push({
      txt: new Map([['test._domainkey.example.com', [read(record)]]]),
      cases: [{ id: `test.message signed, key ${record}`, ...message, checks: [{ what: 'DKIM s=test', expected, observe: dkimOf('test') }] }],
    });
  }
  return [published, ...rsa];
}

// The ValiMail ARC validation suite: one world per scenario (its txt-records),
// cv compared with the ARC result; an empty cv means fail (as mailauth's own
// run of the suite reads it).
export function arcSuite(file: string): World[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).map((document) => {
    const scenario = document.toJS() as {
      tests: Record<string, { message?: string; cv?: string }>;
      'txt-records'?: Record<string, string>;
    };
    const txt = new Map(Object.entries(scenario['txt-records'] ?? {}).map(([name, value]) => [name, [value]]));
    const cases = Object.entries(scenario.tests).map(([id, test]) => ({
      id,
      ...asMessage(test.message ?? ''),
      checks: [{ what: 'ARC', expected: (test.cv || 'fail').toLowerCase(), observe: arc }],
    }));
    return { txt, cases };
  });
}

// ---------------------------------------------------------------------------
// Messages and DNS data

function readMessage(file: string) {
  return asMessage(readFileSync(file, 'utf8'));
}

// The message with CRLF line ends, and the envelope a sending MTA would give:
// the lab's sender, and MAIL FROM taken from Return-Path, else From.
function asMessage(text: string): { message: Buffer; envelope: Envelope } {
  const message = Buffer.from(text.replace(/\r?\n/g, '\r\n'));
  const header = text.split(/\r?\n\r?\n/)[0].replace(/\r?\n[ \t]+/g, ' ');
  const returnPath = /^Return-Path:[ \t]*<([^>]*)>/im.exec(header);
  const from = /^From:[^\n]*<([^>]+)>/im.exec(header) ?? /^From:[ \t]*(\S+@\S+)/im.exec(header);
  const mailFrom = (returnPath ?? from)?.[1] ?? '';
  return { message, envelope: { clientAddress: '192.0.2.10', helo: 'mta.sender.test', mailFrom } };
}

// Zone files that publish the world's records (the SPF suite's writer: one
// zone per top-level domain and a root zone, so every other name is NXDOMAIN).
export function worldZones(world: World): Map<string, string> {
  const names = new Map(
    [...world.txt].map(([name, strings]) => [name.toLowerCase(), { records: [{ type: 'TXT' as const, strings }], timeout: false, spf: false }]),
  );
  return zoneFiles({ description: '', cases: [], names });
}

// Runs the jobs, at most `limit` at a time; the results in the jobs' order.
export async function inBatches<T>(jobs: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const at = next++;
      results[at] = await jobs[at]();
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  return results;
}
