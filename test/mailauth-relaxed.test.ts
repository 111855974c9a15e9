// mailauth-relaxed.ts canonicalizes a header field in one pass over its
// bytes: it must give exactly what mailauth's own formatRelaxedLine gives, for
// header fields of every shape and for random bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const tools = require('mailauth/lib/tools.js') as { formatRelaxedLine: (line: unknown, suffix?: string) => Buffer };
const mailauths = tools.formatRelaxedLine;
await import('../services/mta/inbound/mailauth-relaxed.ts');
const ours = tools.formatRelaxedLine;

const same = (line: Buffer | string, suffix?: string) => {
  const expected = mailauths(typeof line === 'string' ? Buffer.from(line, 'latin1') : line, suffix);
  const got = ours(typeof line === 'string' ? Buffer.from(line, 'latin1') : line, suffix);
  assert.equal(got.toString('latin1'), expected.toString('latin1'), JSON.stringify(typeof line === 'string' ? line : line.toString('latin1')));
};

test('the replacement is in place', () => {
  assert.notEqual(ours, mailauths);
});

test('header fields of every shape canonicalize as mailauth does', () => {
  const fields = [
    'Subject: Hello world',
    'SUBJECT:   Hello    world   ',
    'Subject :\t Hello\t\tworld\t',
    'Subject: folded\r\n\tline\r\n  and more',
    'DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=sender.test;\r\n s=rsa2048; h=from:to:subject; bh=abc=;\r\n b=AbC dEf\r\n gHi=',
    'From: "Ali  ce" <alice@sender.test>',
    'X-Odd: a\rb',
    'X-Odd: a\r\r\nb',
    'X-Odd: a\n\nb',
    'X-Odd:a\r',
    'No colon here  at all ',
    '   leading white space: value',
    ': empty name',
    ' \t: empty name after white space',
    'Key: value: with: colons',
    'Na me With Spaces : v',
    'Fold\r\n ed-Name: v',
    'Ünïcödé-ÉNAME: ÀB',
    'X-Latin1-Upper-\xc9\xc0: \xc9',
    'Trailing:',
    'Trailing:   \t ',
    '\t \r\n ',
    '',
    ':',
    '\r\n',
    'X: \x00\x7f\xff',
  ];
  for (const field of fields) {
    same(field);
    same(field, '\r\n');
  }
});

test('random bytes canonicalize as mailauth does', () => {
  const alphabet = [0x61, 0x41, 0x5a, 0x7a, 0x20, 0x09, 0x0d, 0x0a, 0x3a, 0xc9, 0xe9, 0x00, 0x7f, 0x40, 0x3b];
  let seed = 12345;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (let i = 0; i < 50_000; i++) {
    const line = Buffer.from(Array.from({ length: random(24) }, () => alphabet[random(alphabet.length)]));
    same(line, random(2) ? '\r\n' : undefined);
  }
});

test('a string goes the original way', () => {
  assert.equal(ours('Subject:  A\u0100', '\r\n').toString('latin1'), mailauths('Subject:  A\u0100', '\r\n').toString('latin1'));
  assert.equal(ours(undefined).length, 0);
});
