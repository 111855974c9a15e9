// Unit tests of the zone-file parser: each thing it claims to read, and each
// mistake it reports (with file:line and what it expected).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRdata, parseTtl, parseZoneFile, type ZoneRecord } from '../services/dns/zone-file.ts';

const SOA = '@ SOA ns.lab.test. hostmaster.lab.test. 2026112801 3600 600 604800 5';

// A zone example.test with $TTL 300 whose body starts on line 4.
function zone(body: string) {
  return parseZoneFile(`$ORIGIN example.test.\n$TTL 300\n${SOA}\n${body}\n`, 'example.zone');
}

// The records other than the SOA, without the fields a test does not care about.
function records(body: string): ZoneRecord[] {
  return zone(body).records.filter((r) => r.type !== 'SOA');
}

function txt(body: string): string[] {
  const record = records(body)[0];
  assert.equal(record.type, 'TXT');
  return record.type === 'TXT' ? record.data.map((b) => b.toString('latin1')) : [];
}

function fails(text: string, message: string) {
  assert.throws(() => parseZoneFile(text, 'bad.zone'), { name: 'ZoneSyntaxError', message });
}

// The same, for a body placed on line 4 of a valid zone.
function bodyFails(body: string, message: string) {
  fails(`$ORIGIN example.test.\n$TTL 300\n${SOA}\n${body}\n`, message);
}

test('$ORIGIN and $TTL apply to the records after them', () => {
  const z = parseZoneFile(
    ['$ORIGIN one.test.', '$TTL 60', SOA, 'a A 192.0.2.1', '$TTL 1h', '$ORIGIN sub.one.test.', 'b A 192.0.2.2', '@ A 192.0.2.3'].join('\n'),
    'one.zone',
  );
  assert.equal(z.origin, 'one.test');
  assert.equal(z.file, 'one.zone');
  assert.deepEqual(
    z.records.map((r) => [r.name, r.type, r.ttl]),
    [
      ['one.test', 'SOA', 60],
      ['a.one.test', 'A', 60],
      ['b.sub.one.test', 'A', 3600],
      ['sub.one.test', 'A', 3600],
    ],
  );
});

test('directives are case-insensitive and may carry a comment', () => {
  const z = parseZoneFile(`$origin One.Test. ; the zone\n$ttl 5 ; short\n${SOA}\n`, 'one.zone');
  assert.equal(z.origin, 'one.test');
  assert.equal(z.soa.ttl, 5);
});

test('the origin may also be given by the caller', () => {
  const z = parseZoneFile(`$TTL 5\n${SOA}\nwww A 192.0.2.1\n`, 'one.zone', 'One.Test.');
  assert.equal(z.origin, 'one.test');
  assert.equal(z.records[1].name, 'www.one.test');
});

test('@ is the origin; relative names get the origin, absolute ones are kept; all are lower case', () => {
  assert.deepEqual(
    records('@ A 192.0.2.1\nWWW A 192.0.2.2\nOther.Example.Test. A 192.0.2.3\na.b A 192.0.2.4').map((r) => r.name),
    ['example.test', 'www.example.test', 'other.example.test', 'a.b.example.test'],
  );
});

test('a line that starts with white space belongs to the previous owner', () => {
  const list = records('www A 192.0.2.1\n  TXT "x"\n\tMX 10 @');
  assert.deepEqual(
    list.map((r) => [r.name, r.type]),
    [
      ['www.example.test', 'A'],
      ['www.example.test', 'TXT'],
      ['www.example.test', 'MX'],
    ],
  );
});

test('parentheses join lines, with comments inside', () => {
  const z = parseZoneFile(
    [
      '$ORIGIN example.test.',
      '$TTL 300',
      '@ IN SOA ns.lab.test. hostmaster.lab.test. ( ; start',
      '    2026112801 ; serial',
      '    1h         ; refresh',
      '',
      '    10m 1w 5 ) ; minimum',
      'www A 192.0.2.1',
    ].join('\n'),
    'example.zone',
  );
  assert.deepEqual(z.soa, {
    type: 'SOA',
    name: 'example.test',
    ttl: 300,
    primary: 'ns.lab.test',
    admin: 'hostmaster.lab.test',
    serial: 2026112801,
    refresh: 3600,
    retry: 600,
    expiration: 604800,
    minimum: 5,
  });
  assert.equal(z.records[1].name, 'www.example.test');
});

test('line numbers stay right after parentheses and multi-line strings', () => {
  bodyFails('a TXT ( "one"\n  "two" )\nb TXT "three\nfour"\nc A 300.0.0.1', 'bad.zone:8: "300.0.0.1" is not an IPv4 address');
});

test('comments: whole lines, ends of lines, and ";" inside quotes is text', () => {
  assert.deepEqual(txt('; a comment line\nwww TXT "a;b" ; the end'), ['a;b']);
});

test('TXT: several strings, an empty one, and unquoted words', () => {
  assert.deepEqual(txt('@ TXT "v=spf1 " "-all" "" word'), ['v=spf1 ', '-all', '', 'word']);
});

test('TXT escapes: \\" \\\\ \\; and \\DDD bytes', () => {
  const record = records('@ TXT "say \\"hi\\" \\\\ \\; \\065\\000\\255"')[0];
  assert.equal(record.type, 'TXT');
  if (record.type !== 'TXT') return;
  assert.deepEqual(record.data, [Buffer.concat([Buffer.from('say "hi" \\ ; A'), Buffer.from([0, 255])])]);
});

test('TXT keeps UTF-8 text, outside the BMP too', () => {
  const record = records('@ TXT "é 😀" x\\😀')[0];
  assert.equal(record.type, 'TXT');
  if (record.type !== 'TXT') return;
  assert.deepEqual(record.data, [Buffer.from('é 😀'), Buffer.from('x😀')]);
});

test('TXT strings longer than 255 bytes are split into 255-byte strings', () => {
  const long = 'k'.repeat(600);
  assert.deepEqual(txt(`@ TXT "${long}" "end"`), ['k'.repeat(255), 'k'.repeat(255), 'k'.repeat(90), 'end']);
});

test('TTL units, in records and in $TTL', () => {
  assert.equal(parseTtl('300'), 300);
  assert.equal(parseTtl('1h30m'), 5400);
  assert.equal(parseTtl('2D'), 172800);
  assert.equal(parseTtl('1w1s'), 604801);
  assert.equal(parseTtl('1x'), undefined);
  assert.equal(parseTtl('h'), undefined);
  assert.deepEqual(
    records('a 1h A 192.0.2.1\nb 10s A 192.0.2.2\nc A 192.0.2.3').map((r) => r.ttl),
    [3600, 10, 300],
  );
});

test('class IN may come before or after the TTL, in any case', () => {
  assert.deepEqual(
    records('a IN 60 A 192.0.2.1\nb 60 in A 192.0.2.2\nc IN A 192.0.2.3').map((r) => r.ttl),
    [60, 60, 300],
  );
});

test('without $TTL the SOA takes its minimum as TTL', () => {
  const z = parseZoneFile(`$ORIGIN example.test.\n${SOA}\nwww 60 A 192.0.2.1\n`, 'example.zone');
  assert.equal(z.soa.ttl, 5);
  assert.equal(z.records[1].ttl, 60);
});

test('each record type', () => {
  const list = records(
    [
      'a A 192.0.2.1',
      'b AAAA 2001:db8::1',
      'c AAAA ::ffff:192.0.2.1',
      '@ MX 10 mx',
      '@ NS ns.lab.test.',
      'd CNAME a',
      'e TXT "text"',
      '1 PTR host.example.',
    ].join('\n'),
  );
  assert.deepEqual(
    list.map(({ name: _name, ttl: _ttl, ...rdata }) => rdata),
    [
      { type: 'A', address: '192.0.2.1' },
      { type: 'AAAA', address: '2001:0db8:0000:0000:0000:0000:0000:0001' },
      { type: 'AAAA', address: '0000:0000:0000:0000:0000:ffff:c000:0201' },
      { type: 'MX', priority: 10, exchange: 'mx.example.test' },
      { type: 'NS', ns: 'ns.lab.test' },
      { type: 'CNAME', domain: 'a.example.test' },
      { type: 'TXT', data: [Buffer.from('text')] },
      { type: 'PTR', domain: 'host.example' },
    ],
  );
});

test('the root zone', () => {
  const z = parseZoneFile(`$ORIGIN .\n$TTL 5\n${SOA}\n@ NS ns.lab.test.\nns.lab.test. A 192.0.2.53\n`, 'root.zone');
  assert.equal(z.origin, '');
  assert.deepEqual(
    z.records.map((r) => r.name),
    ['', '', 'ns.lab.test'],
  );
});

test('parseRdata reads the data of one record, names relative to the origin', () => {
  assert.deepEqual(parseRdata('mx', '10 mx', 'example.test', 'override'), { type: 'MX', priority: 10, exchange: 'mx.example.test' });
  assert.deepEqual(parseRdata('TXT', '"v=spf1 " "-all"', 'example.test', 'override'), { type: 'TXT', data: [Buffer.from('v=spf1 '), Buffer.from('-all')] });
  assert.throws(() => parseRdata('SRV', '0 5 5060 sip', 'example.test', 'override'), {
    message: 'override:1: unsupported record type "SRV" (expected one of A, AAAA, MX, TXT, NS, SOA, CNAME, PTR)',
  });
  assert.throws(() => parseRdata('A', '192.0.2', 'example.test', 'override'), { message: 'override:1: "192.0.2" is not an IPv4 address' });
});

test(';@fault without TYPEs: servfail for every query of the name', () => {
  const z = zone('_dmarc TXT "v=DMARC1; p=reject"\n;@fault _dmarc servfail');
  assert.deepEqual(z.faults, [{ name: '_dmarc.example.test', kind: 'servfail', delayMs: 0, types: 'all', source: 'example.zone:5' }]);
});

test(';@fault: timeout and delay, for chosen types, at @, absolute and relative names', () => {
  const z = zone(';@fault @ timeout TXT\n;@fault   Other.Example.Test.  DELAY=1500  txt mx  \n$ORIGIN sub.example.test.\n;@fault www delay=0 A');
  assert.deepEqual(
    z.faults.map(({ source: _source, ...fault }) => fault),
    [
      { name: 'example.test', kind: 'timeout', delayMs: 0, types: ['TXT'] },
      { name: 'other.example.test', kind: 'delay', delayMs: 1500, types: ['TXT', 'MX'] },
      { name: 'www.sub.example.test', kind: 'delay', delayMs: 0, types: ['A'] },
    ],
  );
});

test(';@fault before $ORIGIN is relative to the zone origin; plain comments are not faults', () => {
  const z = parseZoneFile(`;@fault @ servfail\n; @fault x servfail\n;@faults x servfail\n$ORIGIN example.test.\n$TTL 5\n${SOA}\n`, 'example.zone');
  assert.deepEqual(
    z.faults.map((f) => [f.name, f.source]),
    [['example.test', 'example.zone:1']],
  );
});

test('errors in quotes, escapes and parentheses name the line', () => {
  bodyFails('a TXT "never closed\n\nb A 192.0.2.1', 'bad.zone:4: quoted string is not closed');
  bodyFails('a TXT ( "x"\n\n', 'bad.zone:4: "(" is not closed');
  bodyFails('a TXT "x" )', 'bad.zone:4: ")" without a matching "("');
  bodyFails('a TXT ( ( "x" ) )', 'bad.zone:4: nested "(" is not allowed');
  bodyFails('a TXT "\\256"', 'bad.zone:4: escape \\256 is not a byte (000-255)');
  bodyFails('a TXT x\\\nb A 192.0.2.1', 'bad.zone:4: "\\" at the end of a line');
});

test('errors in directives', () => {
  fails('$INCLUDE other.zone', 'bad.zone:1: unsupported directive $INCLUDE (expected $ORIGIN or $TTL)');
  fails('$ORIGIN example.test', 'bad.zone:1: expected $ORIGIN <absolute name ending in ".">');
  fails('$ORIGIN', 'bad.zone:1: expected $ORIGIN <absolute name ending in ".">');
  fails('$TTL soon', 'bad.zone:1: expected $TTL <seconds>');
  fails('$TTL 2147483648', 'bad.zone:1: expected $TTL <seconds>');
});

test('errors in names', () => {
  fails(`$TTL 5\nwww A 192.0.2.1`, 'bad.zone:2: relative name "www" used before $ORIGIN');
  fails(`$TTL 5\n@ A 192.0.2.1`, 'bad.zone:2: "@" used before $ORIGIN');
  fails(`$TTL 5\n  A 192.0.2.1`, 'bad.zone:2: record has no owner name (the first record of a file must name one)');
  bodyFails(`${'x'.repeat(64)} A 192.0.2.1`, `bad.zone:4: owner name: label "${'x'.repeat(64)}" is longer than 63 bytes`);
  const long = 'abcdefghi.'.repeat(24) + 'x';
  bodyFails(`${long} A 192.0.2.1`, `bad.zone:4: owner name: "${long}.example.test" is longer than 255 bytes`);
  bodyFails('a..b A 192.0.2.1', 'bad.zone:4: owner name: "a..b.example.test" has an empty label');
  bodyFails('@ MX 10 .mx.', 'bad.zone:4: MX exchange: ".mx" has an empty label');
});

test('errors in the owner, TTL, class and type fields', () => {
  bodyFails('www', 'bad.zone:4: expected a record type after the owner, TTL and class');
  bodyFails('www 2147483648 A 192.0.2.1', 'bad.zone:4: TTL 2147483648 is larger than 2147483647');
  bodyFails('www CH A 192.0.2.1', 'bad.zone:4: class CH is not supported (the lab serves class IN only)');
  bodyFails('www SRV 0 5 5060 sip', 'bad.zone:4: unsupported record type "SRV" (expected one of A, AAAA, MX, TXT, NS, SOA, CNAME, PTR)');
  fails(`$ORIGIN example.test.\n${SOA}\nwww A 192.0.2.1`, 'bad.zone:3: record has no TTL and no $TTL was given');
});

test('errors in record data', () => {
  bodyFails('a A 192.0.2.256', 'bad.zone:4: "192.0.2.256" is not an IPv4 address');
  bodyFails('a A 2001:db8::1', 'bad.zone:4: "2001:db8::1" is not an IPv4 address');
  bodyFails('a AAAA 192.0.2.1', 'bad.zone:4: "192.0.2.1" is not an IPv6 address');
  bodyFails('a A', 'bad.zone:4: A needs an IPv4 address, found 0 field(s)');
  bodyFails('@ MX mx', 'bad.zone:4: MX needs a preference and an exchange name, found 1 field(s)');
  bodyFails('@ MX 65536 mx', 'bad.zone:4: MX preference must be a number from 0 to 65535, found "65536"');
  bodyFails('@ MX ten mx', 'bad.zone:4: MX preference must be a number from 0 to 65535, found "ten"');
  bodyFails('@ TXT', 'bad.zone:4: TXT needs at least one string');
  bodyFails('@ NS a. b.', 'bad.zone:4: NS needs a name server name, found 2 field(s)');
  bodyFails('a CNAME', 'bad.zone:4: CNAME needs a target name, found 0 field(s)');
  bodyFails('1 PTR a. b.', 'bad.zone:4: PTR needs a target name, found 2 field(s)');
  fails('$ORIGIN x.\n$TTL 5\n@ SOA ns. host. 1 2 3 4', 'bad.zone:3: SOA needs mname rname serial refresh retry expire minimum, found 6 field(s)');
  fails('$ORIGIN x.\n$TTL 5\n@ SOA ns. host. 4294967296 2 3 4 5', 'bad.zone:3: SOA serial must be a 32-bit number, found "4294967296"');
});

test('errors in the zone as a whole', () => {
  fails('$ORIGIN example.test.\n$TTL 5\nwww A 192.0.2.1', 'bad.zone:1: the zone has no SOA record');
  bodyFails(SOA, 'bad.zone:4: a second SOA record (a zone has exactly one)');
  bodyFails('www A 192.0.2.1\nwww CNAME other', 'bad.zone:5: "www.example.test" has a CNAME and other data (RFC 1034 section 3.6.2)');
  bodyFails('www CNAME other\nwww TXT "x"', 'bad.zone:5: "www.example.test" has a CNAME and other data (RFC 1034 section 3.6.2)');
  bodyFails('www.example.org. A 192.0.2.1', 'bad.zone:4: "www.example.org" is outside the zone example.test');
  bodyFails('notexample.test. A 192.0.2.1', 'bad.zone:4: "notexample.test" is outside the zone example.test');
});

test('errors in ;@fault directives', () => {
  const usage = 'expected ;@fault <name> servfail|timeout|delay=<ms> [TYPE ...]';
  bodyFails(';@fault', `bad.zone:4: ${usage}`);
  bodyFails(';@fault www', `bad.zone:4: ${usage}`);
  bodyFails(';@fault www refuse', `bad.zone:4: unknown fault "refuse"; ${usage}`);
  bodyFails(';@fault www delay=fast', `bad.zone:4: unknown fault "delay=fast"; ${usage}`);
  bodyFails(';@fault www delay=60001', 'bad.zone:4: a delay is at most 60000 ms');
  bodyFails(';@fault www servfail SRV', 'bad.zone:4: unknown record type "SRV" in fault');
  bodyFails(';@fault a..b servfail', 'bad.zone:4: fault name: "a..b.example.test" has an empty label');
  bodyFails(';@fault www.example.org. servfail', 'bad.zone:4: fault name "www.example.org" is outside the zone');
  bodyFails('www TXT ( "x"\n;@fault www servfail\n)', 'bad.zone:5: a ;@fault directive cannot stand inside parentheses');
});
