// DMARC aggregate reports (RFC 9990) from hand-made evaluations: the XML
// validates against the RFC's schema (xmllint --schema, libxml2-utils), its
// counts, read back by xmllint, are the evaluations'; names from mail cannot
// break it; the message carries it as the RFC says (read by mailparser); and
// Debian's dmarc-cat, a reader that is not ours, counts what we counted.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { simpleParser } from 'mailparser';
import { aggregate, reportXml, type AggregateReport, type ReportMeta } from '../services/mta/reports/aggregate.ts';
import type { Evaluation, Published } from '../services/mta/reports/evaluation.ts';
import { reportMessage } from '../services/mta/reports/report-message.ts';
import { requireTool } from './support/tools.ts';

const SCHEMA = resolve(import.meta.dirname, 'fixtures/dmarc/dmarc-xml-0.2.xsd');
const work = mkdtempSync(join(tmpdir(), 'reports-aggregate-'));
after(() => rmSync(work, { recursive: true, force: true }));
const meta: ReportMeta = { orgName: 'mail-lab receiver', email: 'dmarc-reports@receiver.test', reportId: '5f1c0a9e3b7d4c21', begin: 1795996800, end: 1795997400 };

const rejecting: Published = { domain: 'sender.test', p: 'reject', adkim: 'r', aspf: 'r', testing: 'n', rua: ['mailto:dmarc@sender.test'], ruf: [] };

function evaluation(changes: Partial<Evaluation> = {}): Evaluation {
  return {
    at: '2026-12-01T12:00:00.000Z',
    sourceIp: '192.0.2.10',
    headerFrom: 'sender.test',
    envelopeFrom: 'sender.test',
    envelopeTo: 'receiver.test',
    policyDomain: 'sender.test',
    published: rejecting,
    disposition: 'none',
    dkim: 'pass',
    spf: 'pass',
    reasons: [],
    authDkim: [{ domain: 'sender.test', selector: 'rsa2048', result: 'pass' }],
    authSpf: { domain: 'sender.test', scope: 'mfrom', result: 'pass' },
    ...changes,
  };
}

async function* stream(evaluations: Evaluation[]): AsyncIterable<Evaluation> {
  yield* evaluations;
}

function repeat(n: number, e: Evaluation): Evaluation[] {
  return Array.from({ length: n }, () => e);
}

let files = 0;
function writeXml(xml: string): string {
  const file = join(work, `report-${++files}.xml`);
  writeFileSync(file, xml);
  return file;
}

function validate(file: string): void {
  const lint = spawnSync('xmllint', ['--noout', '--schema', SCHEMA, file], { encoding: 'utf8' });
  assert.equal(lint.status, 0, `${file} does not validate:\n${lint.stderr}`);
}

// An XPath over the report, by xmllint: the counts are read back by a parser
// that is not ours. Elements are in the DMARC namespace, hence local-name().
function xpath(file: string, expression: string): string {
  const run = spawnSync('xmllint', ['--xpath', expression.replace(/(^|[/[])([a-z_]+)(?![\w(])/g, '$1*[local-name()="$2"]'), file], { encoding: 'utf8' });
  assert.equal(run.status, 0, `xmllint --xpath ${expression}: ${run.stderr}`);
  return run.stdout.replace(/\n$/, '');
}

// One domain's traffic, the way a period in the lab looks: its own MTA, the
// attacker spoofing it, a list forwarding it, a bounce (null sender).
const spoof = evaluation({
  sourceIp: '192.0.2.66',
  envelopeFrom: 'attacker.test',
  disposition: 'reject',
  dkim: 'fail',
  spf: 'fail',
  authDkim: [],
  authSpf: { domain: 'attacker.test', scope: 'mfrom', result: 'pass' },
});
const period = [
  ...repeat(5, evaluation()),
  ...repeat(3, spoof),
  ...repeat(2, { ...spoof, envelopeTo: 'other.test' }),
  evaluation({
    sourceIp: '192.0.2.30',
    envelopeFrom: 'forwarder.test',
    disposition: 'none',
    dkim: 'fail',
    spf: 'fail',
    reasons: [{ type: 'mailing_list', comment: 'ARC sealed by list.forwarder.test, chain valid' }],
    authDkim: [{ domain: 'sender.test', selector: 'rsa2048', result: 'fail' }, { domain: 'forwarder.test', selector: 'ed25519', result: 'pass' }],
    authSpf: { domain: 'forwarder.test', scope: 'mfrom', result: 'pass' },
  }),
  evaluation({ envelopeFrom: '', authSpf: { domain: 'mta.sender.test', scope: 'helo', result: 'pass' }, spf: 'fail' }),
  ...repeat(4, evaluation({ headerFrom: 'news.quarantine.test', envelopeFrom: 'news.quarantine.test', policyDomain: 'quarantine.test', published: { domain: 'quarantine.test', p: 'quarantine', sp: 'none', np: 'reject', adkim: 's', aspf: 's', testing: 'y', fo: '1', rua: ['mailto:agg@quarantine.test'], ruf: [] }, dkim: 'fail', spf: 'fail', disposition: 'none', reasons: [{ type: 'policy_test_mode' }], authDkim: [{ domain: 'quarantine.test', selector: 'old', result: 'neutral' }], authSpf: { domain: 'news.quarantine.test', scope: 'mfrom', result: 'softfail' } })),
];

test('one report per policy domain; identical evaluations share a row; the counts are the evaluations\'', async () => {
  const reports = await aggregate(stream(period));
  assert.deepEqual(reports.map((r) => r.policyDomain), ['sender.test', 'quarantine.test']);
  const [sender, quarantine] = reports;
  assert.deepEqual(
    sender.rows.map((r) => [r.sourceIp, r.envelopeFrom, r.envelopeTo, r.authSpf.scope, r.count]),
    [
      ['192.0.2.10', 'sender.test', 'receiver.test', 'mfrom', 5],
      ['192.0.2.66', 'attacker.test', 'receiver.test', 'mfrom', 3],
      ['192.0.2.66', 'attacker.test', 'other.test', 'mfrom', 2],
      ['192.0.2.30', 'forwarder.test', 'receiver.test', 'mfrom', 1],
      ['192.0.2.10', '', 'receiver.test', 'helo', 1],
    ],
  );
  assert.equal(sender.messages, 12);
  assert.deepEqual(quarantine.rows.map((r) => r.count), [4]);
  assert.equal(quarantine.messages, 4);
});

test('the XML validates against the RFC 9990 schema, and xmllint reads back the counts and the policy', async (t) => {
  if (!requireTool(t, 'xmllint', 'libxml2-utils')) return;
  validate(resolve(import.meta.dirname, 'fixtures/dmarc/dmarc-xml-0.2.xml')); // the schema loads and takes the RFC's sample
  const [sender, quarantine] = await aggregate(stream(period));
  const senderFile = writeXml(reportXml(sender, meta));
  const quarantineFile = writeXml(reportXml(quarantine, meta));
  validate(senderFile);
  validate(quarantineFile);
  assert.equal(xpath(senderFile, 'sum(//count)'), '12');
  assert.equal(xpath(senderFile, 'count(//record)'), '5');
  assert.equal(xpath(senderFile, 'sum(//record[row/source_ip="192.0.2.66"]/row/count)'), '5', 'the attacker\'s messages, over its two rows');
  assert.equal(xpath(senderFile, 'string(//report_id)'), meta.reportId);
  assert.equal(xpath(senderFile, 'string(//date_range/begin)'), String(meta.begin));
  assert.equal(xpath(senderFile, 'string(//policy_published/p)'), 'reject');
  assert.equal(xpath(senderFile, 'string(//record[row/source_ip="192.0.2.30"]/row/policy_evaluated/reason/type)'), 'mailing_list');
  assert.equal(xpath(senderFile, 'count(//record[row/source_ip="192.0.2.30"]/auth_results/dkim)'), '2');
  assert.equal(xpath(senderFile, 'count(//record[identifiers/envelope_from=""]/auth_results/spf/scope)'), '0', 'no scope for a HELO result: the schema knows only mfrom');
  assert.equal(xpath(quarantineFile, 'concat(//policy_published/domain, " ", //p, " ", //sp, " ", //np, " ", //adkim, " ", //testing, " ", //fo, " ", //discovery_method)'), 'quarantine.test quarantine none reject s y 1 treewalk');
  assert.equal(xpath(quarantineFile, 'string(//record/identifiers/header_from)'), 'news.quarantine.test');
  assert.equal(xpath(quarantineFile, 'string(//auth_results/spf/result)'), 'softfail');
});

test('a policy that changed during the period is reported as last seen; wrong values keep the report valid', async (t) => {
  if (!requireTool(t, 'xmllint', 'libxml2-utils')) return;
  const before = evaluation({ published: { ...rejecting, p: 'none' } });
  const after = evaluation({
    published: { ...rejecting, p: 'reject', sp: 'bogus' },
    authDkim: [{ domain: 'sender.test', selector: 'rsa2048', result: 'hardfail' }],
  });
  const [report] = await aggregate(stream([before, after]));
  const file = writeXml(reportXml(report, meta));
  validate(file);
  assert.equal(xpath(file, 'string(//policy_published/p)'), 'reject');
  assert.equal(xpath(file, 'count(//policy_published/sp)'), '0');
  assert.match(xpath(file, 'string(//report_metadata/error)'), /sp=bogus is not none, quarantine or reject/);
  assert.equal(xpath(file, 'string(//record[2]/auth_results/dkim/result)'), 'permerror');
  assert.equal(xpath(file, 'string(//record[2]/auth_results/dkim/human_result)'), 'the verifier said: hardfail');
});

test('names from mail cannot break the XML: markup is escaped, characters XML cannot carry become U+FFFD', async (t) => {
  if (!requireTool(t, 'xmllint', 'libxml2-utils')) return;
  const hostile = 'x.test</header_from></identifiers><record>&amp;]]><!--"\'';
  const report = (
    await aggregate(
      stream([
        evaluation({
          sourceIp: '192.0.2.66<count>999</count>',
          headerFrom: hostile,
          envelopeFrom: 'a\u0000b\u001bc\uD800d\uFFFEe\r\nf',
          authDkim: [{ domain: hostile, selector: '<selector>', result: 'pass' }],
          reasons: [{ type: 'other', comment: ']]></comment><type>reject</type>' }],
        }),
      ]),
    )
  )[0];
  const file = writeXml(reportXml(report, meta));
  validate(file);
  assert.equal(xpath(file, 'sum(//count)'), '1');
  assert.equal(xpath(file, 'string(//header_from)'), hostile);
  assert.equal(xpath(file, 'string(//source_ip)'), '192.0.2.66<count>999</count>');
  assert.equal(xpath(file, 'string(//envelope_from)'), 'a\uFFFDb\uFFFDc\uFFFDd\uFFFDe\r\nf');
  assert.equal(xpath(file, 'string(//auth_results/dkim/selector)'), '<selector>');
  assert.equal(xpath(file, 'string(//reason/comment)'), ']]></comment><type>reject</type>');
});

test('a row carries at most 100 DKIM results, the aligned passing ones first', async () => {
  const failing = Array.from({ length: 150 }, (_, i) => ({ domain: `s${i}.example.test`, selector: 'k', result: 'fail' }));
  const authDkim = [...failing, { domain: 'other.test', selector: 'k', result: 'pass' }, { domain: 'mail.sender.test', selector: 'k', result: 'pass' }, { domain: 'sender.test', selector: 'k', result: 'pass' }];
  const [report] = await aggregate(stream(repeat(2, evaluation({ authDkim }))));
  assert.equal(report.rows.length, 1);
  assert.equal(report.rows[0].count, 2);
  assert.equal(report.rows[0].authDkim.length, 100);
  assert.deepEqual(report.rows[0].authDkim.slice(0, 4).map((s) => s.domain), ['sender.test', 'mail.sender.test', 'other.test', 's0.example.test']);
});

test('the message: RFC 9990 Subject and filename, the gzipped XML as application/gzip, CRLF lines', async () => {
  const [report] = await aggregate(stream(period));
  const now = new Date('2026-12-01T12:10:05Z');
  const { raw, messageId, filename } = reportMessage({ report, meta, from: 'dmarc-reports@receiver.test', to: ['dmarc@sender.test', 'agg@sender.test'], hostname: 'mx.receiver.test' }, now);
  const text = raw.toString('latin1');
  assert.doesNotMatch(text, /[^\r]\n/, 'every line ends with CRLF');
  assert.ok(text.split('\r\n').every((line) => line.length <= 998), 'no line over 998 characters');
  assert.equal(filename, `receiver.test!sender.test!${meta.begin}!${meta.end}!${meta.reportId}.xml.gz`);
  assert.equal(messageId, `<${meta.reportId}@mx.receiver.test>`);

  const mail = await simpleParser(raw);
  assert.equal(mail.subject, `Report Domain: sender.test Submitter: receiver.test Report-ID: ${meta.reportId}`);
  assert.equal(mail.messageId, messageId);
  assert.equal(mail.date?.toISOString(), now.toISOString());
  assert.equal(mail.from?.text, 'dmarc-reports@receiver.test');
  assert.deepEqual([mail.to].flat().flatMap((a) => a!.value.map((v) => v.address)), ['dmarc@sender.test', 'agg@sender.test']);
  assert.equal(mail.headers.get('mime-version'), '1.0');
  assert.equal((mail.headers.get('content-type') as { value: string }).value, 'multipart/mixed');
  assert.match(mail.text ?? '', /12 messages from 3 source addresses, 6 passed DMARC, 6 failed/);
  assert.equal(mail.attachments.length, 1);
  const [attachment] = mail.attachments;
  assert.equal(attachment.contentType, 'application/gzip');
  assert.equal(attachment.filename, filename);
  assert.equal(gunzipSync(attachment.content).toString('utf8'), reportXml(report, meta));
});

test('an independent reader, Debian\'s dmarc-cat, reads the attached report under its filename and counts the same', async (t) => {
  if (!requireTool(t, 'dmarc-cat', 'dmarc-cat')) return;
  const [report] = await aggregate(stream(period));
  const mail = await simpleParser(reportMessage({ report, meta, from: 'dmarc-reports@receiver.test', to: ['dmarc@sender.test'], hostname: 'mx.receiver.test' }).raw);
  const [attachment] = mail.attachments;
  const file = join(work, attachment.filename!); // dmarc-cat takes only files named as RFC 9990 says
  writeFileSync(file, attachment.content);
  // -N: no reverse lookups. -j 1: with its default of two parallel jobs,
  // dmarc-cat 0.15 now and then prints one record's count beside another's
  // address (5 runs in 40 of one file here; 60 in 60 right with -j 1).
  const run = spawnSync('dmarc-cat', ['-N', '-j', '1', file], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /Domain: sender\.test/);
  assert.match(run.stdout, /Policy: p=reject/);
  const perSource = new Map<string, number>();
  for (const [, ip, count] of run.stdout.matchAll(/^(\d+\.\d+\.\d+\.\d+)\s+(\d+)\s/gm)) perSource.set(ip, (perSource.get(ip) ?? 0) + Number(count));
  assert.deepEqual(Object.fromEntries(perSource), { '192.0.2.10': 6, '192.0.2.66': 5, '192.0.2.30': 1 });
});

test('names that are not plain domains or addresses cannot reach the header', async () => {
  const [report] = await aggregate(stream([evaluation()]));
  const mail = { report, meta, from: 'dmarc-reports@receiver.test', to: ['dmarc@sender.test'], hostname: 'mx.receiver.test' };
  const hostile: AggregateReport = { ...report, policyDomain: 'sender.test\r\nBcc: victim@example.test' };
  assert.throws(() => reportMessage({ ...mail, report: hostile }), /"sender.test\\r\\nBcc: victim@example.test" is not a domain name/);
  assert.throws(() => reportMessage({ ...mail, to: ['dmarc@sender.test>, <victim@example.test'] }), /is not a plain address/);
  assert.throws(() => reportMessage({ ...mail, to: ['"x\r\nBcc: y"@sender.test'] }), /is not a plain address/);
  assert.throws(() => reportMessage({ ...mail, meta: { ...meta, reportId: 'a!b' } }), /Report-ID "a!b" must be letters and digits/);
  assert.ok(reportMessage(mail).raw.length > 0);
});
