// A fuzz test of the students' zone edits (issue 14): 1,000 edits in one
// burst from several students at once, each to their own zone: malformed
// record lines, oversized TXT, names outside the student's zone (another
// student's, a lab zone, the root), CNAME at the apex and beside other data,
// NS and SOA, odd TTLs, binary junk, and plausible records at a few shared
// names so that edits collide. Then: every refusal was a 400 naming its line
// (or the limit), no change was lost (each zone's serial counts its changes),
// every student's zone as served passes kzonecheck, an idle student's zone
// and every lab zone answer exactly as before. Deterministic: FUZZ_SEED=<n>
// replays a run.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadZoneDir } from '../services/dns/zones.ts';
import { parseZoneFile } from '../services/dns/zone-file.ts';
import { absoluteName } from '../services/dns/zone-text.ts';
import { dig } from './support/dig.ts';
import { call, HOST, makeClass, startDns, type RunningDns, type TestClass } from './support/dns-class.ts';
import { requireTool } from './support/tools.ts';

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
const EDITS = 1000;
const EDITORS = ['ana', 'ben', 'chloe', 'dan', 'eve'];
const IDLE = 'fay'; // makes no edit: her zone must stay as it started
const root = new URL('../', import.meta.url).pathname;

// mulberry32: small, fast and the same on every machine.
function makeRandom(seed: number) {
  let state = seed;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { int, chance: (p: number) => next() < p, pick: <T>(items: readonly T[]): T => items[int(items.length)] };
}
type Random = ReturnType<typeof makeRandom>;

interface Edit {
  method: 'PUT' | 'POST';
  body: unknown;
  refused?: RegExp; // must be refused with 400 and this error
}

const LINE = /^((add |delete )?line \d+: |the records (are|would be) \d+ bytes of text)/;

// Edits that break a rule, each with the refusal it must get ("L" = its line).
function badEdits(domain: string, other: string): Edit[] {
  const add = (line: string, error: string): Edit => ({ method: 'POST', body: { add: [line] }, refused: new RegExp(`^add line 1: ${error}`) });
  const put = (text: string, error: RegExp): Edit => ({ method: 'PUT', body: { records: text }, refused: error });
  return [
    add('www A 999.1.1.1', '"999\\.1\\.1\\.1" is not an IPv4 address'),
    add('www AAAA 192.0.2.1', '"192\\.0\\.2\\.1" is not an IPv6 address'),
    add('www MX ten mail', 'MX preference must be a number'),
    add('www MX 10', 'MX needs a preference and an exchange name'),
    add('www TXT "never closed', 'quoted string is not closed'),
    add('www ( A 192.0.2.1', '"\\(" is not closed'),
    add('www FOO bar', 'unsupported record type "FOO"'),
    add('www', 'expected a record type'),
    add('www CH A 192.0.2.1', 'class CH is not supported'),
    add('', 'expected one record, found 0'),
    add('a A 192.0.2.1\nb A 192.0.2.2', 'expected one record, found 2'),
    add(`big TXT "${'a'.repeat(4001)}"`, 'a TXT record of 4001 bytes; at most 4000'),
    add(`big TXT ${Array(20).fill(`"${'b'.repeat(255)}"`).join(' ')}`, 'a TXT record of 5100 bytes; at most 4000'),
    add(`x.${other}. A 192.0.2.1`, `"x\\.${other.replace('.', '\\.')}" is outside your zone`),
    add(`${other}. TXT "v=spf1 +all"`, `"${other.replace('.', '\\.')}" is outside your zone`),
    add('sender.test. TXT "v=spf1 +all"', '"sender\\.test" is outside your zone'),
    add('_dmarc.sender.test. TXT "v=DMARC1; p=none"', '"_dmarc\\.sender\\.test" is outside your zone'),
    add('. A 192.0.2.1', '"\\." \\(the root\\) is outside your zone'),
    add('test. NS ns.lab.test.', '"test" is outside your zone'),
    add(`${domain}.evil. A 192.0.2.1`, `"${domain.replace('.', '\\.')}\\.evil" is outside your zone`),
    add('@ CNAME mx.receiver.test.', `a CNAME cannot be at the apex ${domain.replace('.', '\\.')}`),
    add(`${domain}. CNAME sender.test.`, 'a CNAME cannot be at the apex'),
    { method: 'POST', body: { add: ['dup A 192.0.2.1', 'dup CNAME mx.receiver.test.'] }, refused: /^add line 2: "dup\..*" has a CNAME and other data \(A\)/ },
    { method: 'POST', body: { add: ['two CNAME a.test.', 'two CNAME b.test.'] }, refused: /^add line 2: "two\..*" has a CNAME already/ },
    add('@ NS ns.evil.test.', "NS records are the lab's"),
    add('sub NS ns.lab.test.', "NS records are the lab's"),
    add('@ SOA ns.lab.test. hostmaster.lab.test. 99 1 1 1 1', "the SOA is the lab's"),
    add('t -1 A 192.0.2.1', 'unsupported record type "-1"'),
    add('t 2147483648 A 192.0.2.1', 'TTL 2147483648 is larger than 2147483647'),
    add('t 99999999999999999999 A 192.0.2.1', 'TTL 99999999999999999999 is larger than'),
    add('t 1.5 A 192.0.2.1', 'unsupported record type "1\\.5"'),
    add('* A 192.0.2.1', '"\\*\\..*": wildcards are not served'),
    add(`${'a'.repeat(64)} A 192.0.2.1`, 'owner name: label "a{64}" is longer than 63 bytes'),
    { method: 'POST', body: { delete: ['nothing-here TXT'] }, refused: /^delete line 1: the zone has no TXT record at "nothing-here\./ },
    { method: 'POST', body: { delete: ['nothing-here A 192.0.2.1'] }, refused: /^delete line 1: the zone has no record nothing-here A 192\.0\.2\.1$/ },
    put('ok A 192.0.2.1\n$INCLUDE /etc/passwd\n', /^line 2: unsupported directive \$INCLUDE/),
    put(`$ORIGIN ${other}.\nwww A 192.0.2.1\n`, /^line 2: ".*" is outside your zone/),
    put('ok A 192.0.2.1\n;@fault ok servfail\n', /^line 2: ;@fault directives are for the lab's zone files/),
    put(Array.from({ length: 201 }, (_, i) => `r${i} A 192.0.2.1\n`).join(''), /^line 201: 201 records; a student's zone holds at most 200$/),
    put(`${'x'.repeat(70 * 1024)}\n`, /^the records are 71681 bytes of text; a zone holds at most 65536$/),
    { method: 'PUT', body: { records: 42 }, refused: /^"records" must be the zone's records as zone-file text$/ },
    { method: 'POST', body: { add: 'www A 192.0.2.1' }, refused: /^"add" must be a list of record lines$/ },
    { method: 'POST', body: {}, refused: /^nothing to change/ },
  ];
}

// Plausible records at a few names, so that edits of one zone collide
// (a CNAME where an A is, the 201st record); and junk.
const NAMES = ['@', 'www', 'mail', '_dmarc', 's1._domainkey', 'a.b', 'x-1', '_spf', 'cn'];
function recordLine(r: Random): string {
  const name = r.pick(NAMES);
  const ttl = r.pick(['', '0 ', '60 ', '1h ', '2147483647 ']);
  switch (r.int(7)) {
    case 0:
      return `${name} ${ttl}A 192.0.2.${r.int(256)}`;
    case 1:
      return `${name} ${ttl}AAAA 2001:db8::${r.int(65536).toString(16)}`;
    case 2:
      return `${name} ${ttl}MX ${r.int(100)} ${r.pick(['mx.receiver.test.', 'mail', '.'])}`;
    case 3:
      return `${name} ${ttl}TXT "${'v=spf1 -all '.repeat(1 + r.int(300)).slice(0, 1 + r.int(3999))}"`;
    case 4:
      return `${r.pick(NAMES.slice(1))} ${ttl}CNAME ${r.pick(['mx.receiver.test.', 'www', 'sender.test.'])}`;
    case 5:
      return `${name} ${ttl}PTR host${r.int(10)}.example.test.`;
    default:
      return `${name} ${ttl}TXT "ünïcödé \\"quoted\\" \\\\ back\\255slash" "second"`;
  }
}

function junk(r: Random): string {
  const alphabet = ['\u0000', '\u0001', '\n', '\r', '\t', ' ', '"', '\\', '(', ')', ';', '$', '@', '.', 'A', 'TXT', '\u00ff', '\ud800', '\u{1f600}', 'é', '0', '9'];
  return Array.from({ length: 1 + r.int(60) }, () => (r.chance(0.5) ? r.pick(alphabet) : String.fromCharCode(r.int(0x250)))).join('');
}

function randomEdit(r: Random, domain: string, other: string): Edit {
  const roll = r.int(100);
  if (roll < 30) return r.pick(badEdits(domain, other));
  if (roll < 40) return { method: 'POST', body: { add: [junk(r)] } };
  if (roll < 45) return { method: 'PUT', body: { records: junk(r) } };
  if (roll < 80) return { method: 'POST', body: { add: Array.from({ length: 1 + r.int(3) }, () => recordLine(r)) } };
  if (roll < 92) return { method: 'POST', body: { delete: [`${r.pick(NAMES)} ${r.pick(['A', 'TXT', 'MX', 'CNAME', 'AAAA', 'PTR'])}`] } };
  return { method: 'PUT', body: { records: Array.from({ length: r.int(12) }, () => `${recordLine(r)}\n`).join('') } };
}

let klass: TestClass;
let dataDir: string;
let dns: RunningDns;

before(async () => {
  klass = makeClass(`name: Fuzz class\nstudents: [${[...EDITORS, IDLE].join(', ')}]\n`);
  dataDir = mkdtempSync(join(tmpdir(), 'dns-class-fuzz-'));
  dns = await startDns({ LAB_CLASS_DIR: klass.dir, DNS_DATA_DIR: dataDir });
});
after(async () => {
  await dns?.stop();
  rmSync(klass.dir, { recursive: true, force: true });
  rmSync(dataDir, { recursive: true, force: true });
});

// Every lab name with each type it has, and a few it has not: their answers
// before and after the burst must be the same. Names with a fault (a
// timeout, a delay) are left out: they are there to be slow.
async function labAnswers(): Promise<Map<string, string>> {
  const questions = new Set<string>();
  const faulty = new Set<string>();
  for (const zone of loadZoneDir(join(root, 'dns-zone'))) {
    for (const record of zone.records) questions.add(`${record.name || '.'} ${record.type}`);
    questions.add(`nosuchname.${zone.origin || 'test'} A`);
    questions.add(`${zone.origin || '.'} TXT`);
    for (const fault of zone.faults) faulty.add(fault.name || '.');
  }
  const answers = new Map<string, string>();
  const list = [...questions].filter((q) => !faulty.has(q.split(' ')[0])).sort();
  for (let i = 0; i < list.length; i += 16) {
    await Promise.all(
      list.slice(i, i + 16).map(async (q) => {
        const [name, type] = q.split(' ');
        const a = await dig(dns.port, ['+tcp', name, type], HOST);
        answers.set(q, [a.status, ...a.answer, '|', ...a.authority].join('\n'));
      }),
    );
  }
  return answers;
}

test(`1,000 edits in a burst from ${EDITORS.length} students: refusals name their line, no change is lost, every zone served passes kzonecheck, no other zone changes (seed ${SEED})`, { timeout: 60_000 }, async (t) => {
  if (!requireTool(t, 'kzonecheck', 'knot-dnssecutils')) return;
  const labBefore = await labAnswers();
  const idleBefore = (await call(`${dns.control}/zones/${IDLE}.test`, klass.credentials.get('teacher'))).body;

  const r = makeRandom(SEED);
  const agent = new Agent({ keepAlive: true, maxSockets: 24 }); // the endpoint takes 32 connections from one address
  const send = (student: string, edit: Edit) =>
    new Promise<{ status: number; body: any }>((resolve, reject) => {
      const path = `/zones/${student}.test${edit.method === 'POST' ? '/records' : ''}`;
      const data = Buffer.from(JSON.stringify(edit.body));
      const req = request(`${dns.control}${path}`, { method: edit.method, agent, headers: { authorization: `Bearer ${klass.credentials.get(student)}`, 'content-type': 'application/json', 'content-length': data.length } }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
      });
      req.on('error', reject);
      req.end(data);
    });
  const edits = Array.from({ length: EDITS }, () => {
    const student = r.pick(EDITORS);
    return { student, edit: randomEdit(r, `${student}.test`, `${r.pick([...EDITORS, IDLE].filter((s) => s !== student))}.test`) };
  });
  const started = Date.now();
  const results = await Promise.all(edits.map(({ student, edit }) => send(student, edit)));
  const burstMs = Date.now() - started;
  agent.destroy();

  const changes = new Map<string, number>(EDITORS.map((s) => [s, 0]));
  results.forEach((result, i) => {
    const { student, edit } = edits[i];
    const what = `seed ${SEED}, edit ${i} by ${student}: ${JSON.stringify(edit.body).slice(0, 200)} -> ${result.status} ${JSON.stringify(result.body).slice(0, 300)}`;
    if (edit.refused) {
      assert.equal(result.status, 400, what);
      assert.match(result.body.error, edit.refused, what);
    } else if (result.status === 400) {
      assert.match(result.body.error, LINE, what);
    } else {
      assert.equal(result.status, 200, what);
      if (result.body.diff !== '') changes.set(student, changes.get(student)! + 1);
    }
  });
  const accepted = [...changes.values()].reduce((a, b) => a + b, 0);
  t.diagnostic(`${EDITS} edits in ${burstMs} ms: ${accepted} changes, ${results.filter((x) => x.status === 400).length} refused`);
  assert.ok(accepted > 100, `some edits went in (${accepted})`);

  const checkDir = mkdtempSync(join(tmpdir(), 'kzonecheck-'));
  t.after(() => rmSync(checkDir, { recursive: true, force: true }));
  for (const student of EDITORS) {
    const domain = `${student}.test`;
    const view = (await call(`${dns.control}/zones/${domain}`, klass.credentials.get(student))).body;
    // Each change raised the serial by one: none was lost or applied twice.
    assert.equal(view.serial, 1 + changes.get(student)!, `${domain}: seed ${SEED}`);
    const file = join(checkDir, `${domain}.zone`);
    writeFileSync(file, view.zone);
    const check = await promisify(execFile)('kzonecheck', ['-o', domain, file]).catch((e) => e);
    assert.equal(check.code ?? 0, 0, `kzonecheck refuses the served ${domain} (seed ${SEED}):\n${check.stdout}${check.stderr}\n${view.zone}`);
    // What is kept on disk is what is served.
    assert.equal(readFileSync(join(dataDir, 'zones', `${domain}.zone`), 'utf8'), view.zone);
    // And the DNS answers what the zone says: a sample of its RRsets, over TCP.
    const zone = parseZoneFile(view.zone, file);
    // (A name may hold any byte, a space too: kept apart from its type.)
    const rrsets = [...new Map(zone.records.map((rec) => [JSON.stringify([rec.name, rec.type]), [rec.name, rec.type]])).values()].slice(0, 12);
    for (const [name, type] of rrsets) {
      const rrset = `${name} ${type}`;
      // Asked as the zone text writes the name: a byte that is not printable
      // ASCII as \DDD (dig would send a name given as a string in UTF-8).
      const answer = await dig(dns.port, ['+tcp', '+norec', absoluteName(name), type], HOST);
      const expected = zone.records.filter((rec) => rec.name === name && rec.type === type).length;
      assert.equal(answer.answer.filter((line) => line.split(' ')[3] === type).length, expected, `${rrset} (seed ${SEED}): ${answer.text}`);
    }
  }
  assert.deepEqual((await call(`${dns.control}/zones/${IDLE}.test`, klass.credentials.get('teacher'))).body, idleBefore, "the idle student's zone is untouched");
  const labAfter = await labAnswers();
  for (const [question, answer] of labBefore) assert.equal(labAfter.get(question), answer, `${question} answers as before (seed ${SEED})`);
});
