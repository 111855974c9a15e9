// The students' zones in the lab DNS (issue 14): the DNS as a process
// (services/dns/main.ts) with a class of its own (LAB_CLASS_DIR) and a data
// directory of its own (DNS_DATA_DIR), asked with dig over UDP and TCP and
// through its control endpoint. A student's zone starts with the lab's SOA
// and NS; what the student publishes is served at once and kept across a
// restart; another student's credential is refused with the reason; the
// teacher may do everything; the zone CLI drives the same endpoint.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { dig } from './support/dig.ts';
import { call, HOST, makeClass, startDns, type RunningDns, type TestClass } from './support/dns-class.ts';
import { lockEmbeddedLab } from './support/lab-lock.ts';
import { requireTool } from './support/tools.ts';

const root = new URL('../', import.meta.url).pathname;
const SOA = 'ns.lab.test. hostmaster.lab.test.';

// The TXT strings of dig's answer lines, as sent (dig prints each quoted).
const txtStrings = (line: string) => [...line.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1].replace(/\\(.)/g, '$1'));
const serialOf = async (dns: RunningDns, domain: string) => Number((await dig(dns.port, ['+short', domain, 'SOA'], HOST)).text.trim().split(' ')[2]);

describe('students’ zones', () => {
  let klass: TestClass;
  let dataDir: string;
  let dns: RunningDns;
  let ana: string, ben: string, teacher: string;
  // A real DKIM key record: longer than one 255-byte string.
  const dkim = `v=DKIM1; k=rsa; p=${generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`;

  before(async () => {
    klass = makeClass('name: DNS test class\nstudents: [ana, ben]\n');
    [ana, ben, teacher] = ['ana', 'ben', 'teacher'].map((n) => klass.credentials.get(n)!);
    dataDir = mkdtempSync(join(tmpdir(), 'dns-class-data-'));
    dns = await startDns({ LAB_CLASS_DIR: klass.dir, DNS_DATA_DIR: dataDir });
  });
  after(async () => {
    await dns?.stop();
    rmSync(klass.dir, { recursive: true, force: true });
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("a student's zone starts with the lab's SOA and NS only, over UDP and TCP", async () => {
    const view = (await call(`${dns.control}/zones/ana.test`, ana)).body;
    assert.equal(view.records, '');
    assert.equal(view.serial, 1);
    assert.deepEqual(view.history, []);
    assert.match(view.zone, /^@ 5 SOA ns\.lab\.test\. hostmaster\.lab\.test\. 1 3600 600 604800 5$/m);
    assert.match(view.zone, /^@ 5 NS ns\.lab\.test\.$/m);
    for (const transport of ['+notcp', '+tcp']) {
      const soa = await dig(dns.port, [transport, 'ana.test', 'SOA'], HOST);
      assert.equal(soa.status, 'NOERROR');
      assert.ok(soa.flags.includes('aa'), 'authoritative');
      assert.deepEqual(soa.answer, [`ana.test. 5 IN SOA ${SOA} 1 3600 600 604800 5`]);
      assert.deepEqual((await dig(dns.port, [transport, 'ana.test', 'NS'], HOST)).answer, ['ana.test. 5 IN NS ns.lab.test.']);
      for (const type of ['MX', 'TXT', 'A']) {
        const none = await dig(dns.port, [transport, 'ana.test', type], HOST);
        assert.deepEqual([none.status, none.answer, none.authority], ['NOERROR', [], [`ana.test. 5 IN SOA ${SOA} 1 3600 600 604800 5`]], `${type}: NODATA`);
      }
      assert.equal((await dig(dns.port, [transport, '_dmarc.ana.test', 'TXT'], HOST)).status, 'NXDOMAIN');
    }
  });

  test('the student publishes SPF, MX, A, a DKIM key of over 255 bytes and DMARC: each is served at once, the serial rises, the history shows the diff', async () => {
    const steps: [string, string, string, (answer: string[]) => void][] = [
      ['@ 300 TXT "v=spf1 ip4:192.0.2.10 -all"', 'ana.test', 'TXT', (a) => assert.deepEqual(a, ['ana.test. 300 IN TXT "v=spf1 ip4:192.0.2.10 -all"'])],
      ['@ 300 MX 10 mx.receiver.test.', 'ana.test', 'MX', (a) => assert.deepEqual(a, ['ana.test. 300 IN MX 10 mx.receiver.test.'])],
      ['mail A 192.0.2.10', 'mail.ana.test', 'A', (a) => assert.deepEqual(a, ['mail.ana.test. 5 IN A 192.0.2.10'])],
      [`s1._domainkey 300 TXT "${dkim}"`, 's1._domainkey.ana.test', 'TXT', (a) => assert.deepEqual(a.map(txtStrings), [[dkim.slice(0, 255), dkim.slice(255)]])],
      ['_dmarc 300 TXT "v=DMARC1; p=reject; rua=mailto:ana@ana.test"', '_dmarc.ana.test', 'TXT', (a) => assert.deepEqual(a, ['_dmarc.ana.test. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:ana@ana.test"'])],
    ];
    let serial = await serialOf(dns, 'ana.test');
    for (const [line, name, type, check] of steps) {
      const change = await call(`${dns.control}/zones/ana.test/records`, ana, 'POST', { add: [line] });
      assert.equal(change.status, 200, JSON.stringify(change.body));
      assert.equal(change.body.serial, serial + 1);
      assert.match(change.body.diff, /^\+[^+]/m);
      // At once: the very next queries, over UDP and over TCP.
      check((await dig(dns.port, ['+notcp', name, type], HOST)).answer);
      check((await dig(dns.port, ['+tcp', name, type], HOST)).answer);
      assert.equal(await serialOf(dns, 'ana.test'), serial + 1);
      serial++;
    }
    // The MX target's address comes along, as for the lab's own zones.
    assert.ok((await dig(dns.port, ['ana.test', 'MX'], HOST)).additional.some((l) => l.startsWith('mx.receiver.test. 5 IN A 192.0.2.20')));

    const view = (await call(`${dns.control}/zones/ana.test`, ana)).body;
    assert.equal(view.serial, serial);
    assert.equal(view.records.split('\n').filter(Boolean).length, 5);
    assert.deepEqual(view.history.map((h: any) => [h.serial, h.by]), [5, 4, 3, 2, 1].map((n) => [n + 1, 'ana']));
    const newest = view.history[0];
    assert.match(newest.at, /^\d{4}-\d\d-\d\dT/);
    assert.equal(newest.diff.split('\n').slice(0, 2).join('\n'), `--- ana.test serial ${serial - 1}\n+++ ana.test serial ${serial}`);
    assert.match(newest.diff, /^\+_dmarc 300 TXT "v=DMARC1; p=reject; rua=mailto:ana@ana\.test"$/m);
    assert.match(newest.diff, /^ @ 300 MX 10 mx\.receiver\.test\.$/m, 'context lines');

    // A PUT made against an older serial (another tab) is refused; with the current one it goes in.
    const stale = await call(`${dns.control}/zones/ana.test`, ana, 'PUT', { records: view.records + 'www A 192.0.2.11\n', serial: serial - 1 });
    assert.equal(stale.status, 409);
    assert.match(stale.body.error, new RegExp(`changed since serial ${serial - 1}: it is at serial ${serial}`));
    const put = await call(`${dns.control}/zones/ana.test`, ana, 'PUT', { records: view.records + 'www A 192.0.2.11\n', serial });
    assert.deepEqual([put.status, put.body.serial], [200, serial + 1]);
    assert.match(put.body.diff, /^\+www 5 A 192\.0\.2\.11$/m);
    assert.equal((await call(`${dns.control}/zones/ana.test`, ana, 'PUT', { records: view.records + 'www A 192.0.2.11\n' })).body.diff, '', 'the same records again: no change');
    assert.equal(await serialOf(dns, 'ana.test'), serial + 1);
    // Deleting by name and type, and by the record itself (TTL aside).
    const removed = await call(`${dns.control}/zones/ana.test/records`, ana, 'POST', { delete: ['www 60 A 192.0.2.11'] });
    assert.equal(removed.status, 200, JSON.stringify(removed.body));
    assert.equal((await dig(dns.port, ['www.ana.test', 'A'], HOST)).status, 'NXDOMAIN');
  });

  test('a bad record is refused with its line; nothing of that change is written or served', async () => {
    const before = (await call(`${dns.control}/zones/ana.test`, ana)).body;
    const file = join(dataDir, 'zones', 'ana.test.zone');
    const onDisk = readFileSync(file, 'utf8');
    const refusals: [unknown, string, RegExp][] = [
      [{ records: 'ok A 192.0.2.1\nbad A 192.0.2\n' }, 'PUT', /^line 2: "192\.0\.2" is not an IPv4 address$/],
      [{ records: 'ok A 192.0.2.1\n\n@ CNAME mx.receiver.test.\n' }, 'PUT', /^line 3: a CNAME cannot be at the apex ana\.test/],
      [{ add: ['ok A 192.0.2.1', 'mail CNAME mx.receiver.test.'] }, 'POST', /^add line 2: "mail\.ana\.test" has a CNAME and other data \(A\)/],
      [{ add: ['x.ben.test. A 192.0.2.1'] }, 'POST', /^add line 1: "x\.ben\.test" is outside your zone ana\.test$/],
      [{ add: ['sub NS ns.lab.test.'] }, 'POST', /^add line 1: NS records are the lab's/],
      [{ delete: ['nothing TXT'] }, 'POST', /^delete line 1: the zone has no TXT record at "nothing\.ana\.test"$/],
    ];
    for (const [body, method, error] of refusals) {
      const url = `${dns.control}/zones/ana.test${method === 'POST' ? '/records' : ''}`;
      const refused = await call(url, ana, method, body);
      assert.equal(refused.status, 400, JSON.stringify(body));
      assert.match(refused.body.error, error);
    }
    assert.equal((await dig(dns.port, ['ok.ana.test', 'A'], HOST)).status, 'NXDOMAIN');
    assert.equal((await call(`${dns.control}/zones/ana.test`, ana)).body.serial, before.serial);
    assert.equal(readFileSync(file, 'utf8'), onDisk);
  });

  test("another student's credential gets 403 with the reason, none or a wrong one 401, ten wrong ones 429; the teacher reads and edits both zones", async () => {
    const zone = `${dns.control}/zones/ana.test`;
    const records = `${zone}/records`;
    const attempts: [string, string, unknown?][] = [
      [zone, 'GET'],
      [zone, 'PUT', { records: '@ TXT "v=spf1 +all"\n' }],
      [records, 'POST', { add: ['@ TXT "v=spf1 +all"'] }],
    ];
    for (const [url, method, body] of attempts) {
      const refused = await call(url, ben, method, body);
      assert.deepEqual([refused.status, refused.body], [403, { error: "ana.test is ana's zone; you are ben (ben.test)" }], `${method} ${url}`);
      const anonymous = await call(url, undefined, method, body);
      assert.equal(anonymous.status, 401);
      assert.match(anonymous.body.error, /^log in: send your credential as Authorization: Bearer <credential>/);
    }
    assert.deepEqual((await call(`${dns.control}/zones/sender.test`, ben)).status, 404, 'a lab zone is no student zone');
    // Not from a web page, even with ana's own credential: another origin, or a body a form could send.
    const page = await call(zone, ana, 'PUT', { records: '' }, undefined, { origin: 'http://attacker.test' });
    assert.deepEqual([page.status, page.body.error], [403, "changes to the lab's DNS are not taken from web pages of other origins (http://attacker.test)"]);
    assert.equal((await call(zone, ana, 'PUT', { records: '' }, undefined, { 'content-type': 'text/plain' })).status, 415);
    assert.deepEqual((await call(`${dns.control}/classroom`, ben)).body, { name: 'DNS test class', students: [{ name: 'ben', domain: 'ben.test' }] });
    assert.deepEqual((await call(`${dns.control}/classroom`, teacher)).body.students.map((s: any) => s.domain), ['ana.test', 'ben.test']);
    assert.ok(!(await dig(dns.port, ['+short', 'ana.test', 'TXT'], HOST)).text.includes('+all'), "ana's SPF is unchanged");

    // Ten wrong credentials from one address; then that address is refused
    // even with a right one, and other addresses are not.
    const guesser = '127.0.0.77';
    for (let i = 1; i <= 10; i++) {
      const wrong = await call(zone, `ana-${'x'.repeat(19)}${i % 10}`, 'GET', undefined, guesser);
      assert.deepEqual([wrong.status, wrong.body.error], [401, "log in: that credential is no one's in this class"], `guess ${i}`);
    }
    const locked = await call(zone, ana, 'GET', undefined, guesser);
    assert.equal(locked.status, 429);
    assert.match(locked.body.error, /^too many wrong credentials from 127\.0\.0\.77: try again in \d+ s$/);
    assert.ok(Number(locked.headers['retry-after']) > 290 && Number(locked.headers['retry-after']) <= 300, `Retry-After ${locked.headers['retry-after']}`);
    assert.equal((await call(zone, ana)).status, 200, 'another address is not locked out');

    // The teacher reads and edits both zones.
    for (const domain of ['ana.test', 'ben.test']) {
      assert.equal((await call(`${dns.control}/zones/${domain}`, teacher)).body.domain, domain);
      const change = await call(`${dns.control}/zones/${domain}/records`, teacher, 'POST', { add: ['teacher 60 TXT "checked"'] });
      assert.equal(change.status, 200, JSON.stringify(change.body));
      assert.deepEqual((await dig(dns.port, [`teacher.${domain}`, 'TXT'], HOST)).answer, [`teacher.${domain}. 60 IN TXT "checked"`]);
      assert.equal((await call(`${dns.control}/zones/${domain}`, teacher)).body.history[0].by, 'teacher');
    }
  });

  test('overrides need the teacher; a student sees only the queries for names in their zone', async () => {
    const override = { name: '_dmarc.sender.test', type: 'TXT', values: ['v=DMARC1; p=none'] };
    const refused = await call(`${dns.control}/overrides`, ana, 'POST', override);
    assert.deepEqual([refused.status, refused.body.error], [403, "changing the lab's DNS with overrides is the teacher's; you are ana (ana.test)"]);
    assert.equal((await call(`${dns.control}/overrides`, undefined, 'POST', override)).status, 401);
    assert.equal((await call(`${dns.control}/overrides?name=_dmarc.sender.test`, ana, 'DELETE')).status, 403);
    assert.equal((await call(`${dns.control}/overrides`, teacher, 'POST', override)).status, 200);
    assert.deepEqual((await dig(dns.port, ['_dmarc.sender.test', 'TXT'], HOST)).answer, ['_dmarc.sender.test. 5 IN TXT "v=DMARC1; p=none"']);
    assert.deepEqual((await call(`${dns.control}/overrides?name=_dmarc.sender.test`, teacher, 'DELETE')).body, { cleared: 1 });

    for (const name of ['ana.test', 'mail.ana.test', 'ben.test', 'sender.test']) await dig(dns.port, [name, 'A'], HOST);
    const seen = (await call(`${dns.control}/queries?limit=1000`, ana)).body.map((q: any) => q.name);
    assert.ok(seen.includes('ana.test') && seen.includes('mail.ana.test'), seen.join(' '));
    assert.ok(seen.every((n: string) => n === 'ana.test' || n.endsWith('.ana.test')), seen.join(' '));
    const other = await call(`${dns.control}/queries?name=ben.test`, ana);
    assert.deepEqual([other.status, other.body.error], [403, 'ben.test is not in your zone; you are ana (ana.test): you see the queries for names in it']);
    const all = (await call(`${dns.control}/queries?limit=1000`, teacher)).body.map((q: any) => q.name);
    assert.ok(all.includes('ben.test') && all.includes('sender.test'));
    assert.equal((await call(`${dns.control}/queries`, undefined)).status, 401);
    assert.equal((await call(`${dns.control}/health`, undefined)).status, 200, 'health stays open');
  });

  test('the history keeps the newest 50 changes, and its file stays bounded', async () => {
    const start = (await call(`${dns.control}/zones/ben.test`, ben)).body.serial;
    for (let i = 1; i <= 110; i++) {
      const change = await call(`${dns.control}/zones/ben.test/records`, ben, 'POST', { add: [`h${i} A 192.0.2.${i}`] });
      assert.equal(change.body.serial, start + i);
    }
    const { history } = (await call(`${dns.control}/zones/ben.test`, ben)).body;
    assert.deepEqual(history.map((h: any) => h.serial), Array.from({ length: 50 }, (_, i) => start + 110 - i));
    assert.match(history[0].diff, /^\+h110 5 A 192\.0\.2\.110$/m);
    const lines = readFileSync(join(dataDir, 'zones', 'ben.test.history.jsonl'), 'utf8').split('\n').filter(Boolean);
    assert.ok(lines.length >= 50 && lines.length <= 100, `${lines.length} lines`);
    assert.equal(JSON.parse(lines.at(-1)!).serial, start + 110);
  });

  test('the zones, serials and histories survive a restart of the DNS', async () => {
    const before = (await call(`${dns.control}/zones/ana.test`, ana)).body;
    const bens = (await call(`${dns.control}/zones/ben.test`, ben)).body;
    const answer = (await dig(dns.port, ['s1._domainkey.ana.test', 'TXT'], HOST)).answer;
    await dns.stop();
    dns = await startDns({ LAB_CLASS_DIR: klass.dir, DNS_DATA_DIR: dataDir });
    assert.deepEqual((await call(`${dns.control}/zones/ana.test`, ana)).body, before);
    assert.deepEqual((await call(`${dns.control}/zones/ben.test`, ben)).body, bens);
    assert.deepEqual((await dig(dns.port, ['s1._domainkey.ana.test', 'TXT'], HOST)).answer, answer);
    assert.equal(await serialOf(dns, 'ana.test'), before.serial);
    const next = await call(`${dns.control}/zones/ana.test/records`, ana, 'POST', { add: ['after 60 A 192.0.2.12'] });
    assert.equal(next.body.serial, before.serial + 1);
  });
});

describe('starting the DNS with a class', () => {
  const main = join(root, 'services/dns/main.ts');
  const run = (env: Record<string, string>) => spawnSync(process.execPath, [main], { cwd: root, env: { ...process.env, LOG_LEVEL: 'silent', DNS_LISTEN: `${HOST}:0`, DNS_CONTROL_LISTEN: `${HOST}:0`, ...env }, encoding: 'utf8', timeout: 10_000 });

  test('a class domain that is a lab zone stops the start, naming the class file and the domain', (t) => {
    const klass = makeClass('name: Clash\nstudents: [ana, sender]\n');
    const dataDir = mkdtempSync(join(tmpdir(), 'dns-class-data-'));
    t.after(() => [klass.dir, dataDir].forEach((d) => rmSync(d, { recursive: true, force: true })));
    const result = run({ LAB_CLASS_DIR: klass.dir, DNS_DATA_DIR: dataDir });
    assert.equal(result.status, 1);
    assert.equal(result.stderr, `dns: cannot start: ${join(klass.dir, 'class.yaml')}: sender.test, the domain of student sender, is also a lab zone (dns-zone/sender.test.zone): choose another domain pattern\n`);
  });

  test('a class without credentials, or a stored zone that breaks a rule, stops the start with the file', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'dns-class-'));
    const dataDir = mkdtempSync(join(tmpdir(), 'dns-class-data-'));
    t.after(() => [dir, dataDir].forEach((d) => rmSync(d, { recursive: true, force: true })));
    writeFileSync(join(dir, 'class.yaml'), 'name: No credentials\nstudents: [ana]\n');
    const missing = run({ LAB_CLASS_DIR: dir, DNS_DATA_DIR: dataDir });
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /^configuration error: LAB_CLASS_DIR: .*credentials\.json: missing: run `npm run lab -- class init`/);

    const klass = makeClass('name: Stored\nstudents: [ana]\n');
    t.after(() => rmSync(klass.dir, { recursive: true, force: true }));
    const zones = join(dataDir, 'zones');
    mkdirSync(zones);
    writeFileSync(join(zones, 'ana.test.zone'), '$ORIGIN ana.test.\n@ 5 SOA ns.lab.test. hostmaster.lab.test. 4 3600 600 604800 5\n@ 5 NS ns.lab.test.\nwww 5 CNAME x.test.\nwww 5 A 192.0.2.1\n');
    const broken = run({ LAB_CLASS_DIR: klass.dir, DNS_DATA_DIR: dataDir });
    assert.equal(broken.status, 1);
    assert.match(broken.stderr, /ana\.test\.zone:5: "www\.ana\.test" has a CNAME and other data/);
  });

  test('without a class the control endpoint is as before: no credentials, no student routes', async (t) => {
    const dns = await startDns({ LAB_CLASS_DIR: join(tmpdir(), 'no-such-class-dir') });
    t.after(() => dns.stop());
    const missing = await call(`${dns.control}/zones/ana.test`, undefined);
    assert.deepEqual([missing.status, missing.body.error], [404, 'the lab has no class (LAB_CLASS_DIR holds no class.yaml), so no student zones']);
    const override = await call(`${dns.control}/overrides`, undefined, 'POST', { name: 'ana.sender.test', type: 'A', values: ['192.0.2.99'] });
    assert.equal(override.status, 200);
    assert.deepEqual((await dig(dns.port, ['ana.sender.test', 'A'], HOST)).answer, ['ana.sender.test. 5 IN A 192.0.2.99']);
    assert.equal((await call(`${dns.control}/queries`, undefined)).status, 200);
    assert.equal((await dig(dns.port, ['ana.test', 'SOA'], HOST)).status, 'NXDOMAIN', 'no student zones');
  });
});

// `npm run lab -- zone ...` (node scripts/lab.ts, what npm runs) finds the DNS
// control endpoint where the embedded lab has it, 127.0.2.53:8053: this DNS
// listens there, with the embedded lab's lock held.
describe('the zone command', () => {
  let klass: TestClass;
  let dataDir: string;
  let dns: RunningDns | undefined;
  let skip: string | false = false;
  const lab = async (env: Record<string, string>, ...args: string[]) => {
    try {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, ['scripts/lab.ts', 'zone', ...args], { cwd: root, env: { ...process.env, ...env }, timeout: 20_000 });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };

  before(async () => {
    await lockEmbeddedLab();
    const free = await new Promise<boolean>((resolve) => {
      const probe = createServer().once('error', () => resolve(false));
      probe.listen(8053, HOST, () => probe.close(() => resolve(true)));
    });
    if (!free) {
      if (process.env.CI === 'true') throw new Error(`${HOST}:8053 is taken: is a lab running?`);
      skip = `${HOST}:8053 is taken (is a lab running?)`;
      return;
    }
    klass = makeClass('name: CLI class\nstudents: [ana, ben]\n');
    dataDir = mkdtempSync(join(tmpdir(), 'dns-class-data-'));
    dns = await startDns({ LAB_CLASS_DIR: klass.dir, DNS_DATA_DIR: dataDir, DNS_CONTROL_LISTEN: `${HOST}:8053` });
  });
  after(async () => {
    await dns?.stop();
    for (const dir of [klass?.dir, dataDir]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('add, show, delete, set and history, with the student’s credential; a bad line is named', async (t: TestContext) => {
    if (skip) return t.skip(skip);
    const env = { LAB_TOKEN: klass.credentials.get('ana')! };
    const added = await lab(env, 'add', '@ MX 10 mx.receiver.test.', '_dmarc TXT "v=DMARC1; p=none"');
    assert.equal(added.code, 0, added.stderr);
    assert.equal(added.stdout, 'ana.test: serial 2\n--- ana.test serial 1\n+++ ana.test serial 2\n@@ -0,0 +1,2 @@\n+@ 5 MX 10 mx.receiver.test.\n+_dmarc 5 TXT "v=DMARC1; p=none"\n');
    assert.deepEqual((await dig(dns!.port, ['_dmarc.ana.test', 'TXT'], HOST)).answer, ['_dmarc.ana.test. 5 IN TXT "v=DMARC1; p=none"']);

    const shown = await lab(env, 'show');
    assert.equal(shown.stdout, "; ana.test, ana's zone, serial 2 (the SOA and NS are the lab's)\n@ 5 MX 10 mx.receiver.test.\n_dmarc 5 TXT \"v=DMARC1; p=none\"\n");

    // What show prints, edited and set back.
    const file = join(dataDir, 'edited.zone');
    writeFileSync(file, shown.stdout.replace('p=none', 'p=reject'));
    const set = await lab(env, 'set', file);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /^-_dmarc 5 TXT "v=DMARC1; p=none"\n\+_dmarc 5 TXT "v=DMARC1; p=reject"$/m);
    writeFileSync(file, '@ MX 10 mx.receiver.test.\nmail A 192.0.2.300\n');
    const bad = await lab(env, 'set', file);
    assert.deepEqual([bad.code, bad.stderr], [1, 'lab: zone: line 2: "192.0.2.300" is not an IPv4 address\n']);

    const deleted = await lab(env, 'delete', '_dmarc TXT');
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal((await dig(dns!.port, ['_dmarc.ana.test', 'TXT'], HOST)).status, 'NXDOMAIN');
    const history = await lab(env, 'history');
    assert.deepEqual([...history.stdout.matchAll(/^serial (\d+), \S+, by (\w+)$/gm)].map((m) => [Number(m[1]), m[2]]), [[4, 'ana'], [3, 'ana'], [2, 'ana']]);

    // Another student's zone is refused by name; the teacher names the zone.
    const other = await lab(env, 'show', '--domain', 'ben.test');
    assert.deepEqual([other.code, other.stderr], [1, "lab: zone: ben.test is ben's zone; you are ana (ana.test)\n"]);
    const teacher = { LAB_TOKEN: klass.credentials.get('teacher')! };
    assert.match((await lab(teacher, 'show')).stderr, /the teacher's credential is for every zone: name one with --domain D/);
    assert.equal((await lab(teacher, 'add', '--domain', 'ben.test', 'www A 192.0.2.40')).code, 0);
    assert.match((await lab({ LAB_TOKEN: 'ben-xxxxxxxxxxxxxxxxxxxx' }, 'show')).stderr, /^lab: zone: log in: that credential is no one's in this class\n$/);
    assert.match((await lab({ LAB_TOKEN: '' }, 'show')).stderr, /give your credential with --token or in LAB_TOKEN/);
  });
});
