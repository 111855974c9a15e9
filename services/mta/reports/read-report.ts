// Reading a DMARC aggregate report (RFC 9990) that arrived as mail, for the
// console's Reports view. Reports come from anyone who can send mail, so
// everything here is bounded: the gzip is inflated to at most MAX_XML
// bytes, the XML is read by a small strict reader of its own (no DTD, so no
// entities beyond XML's five; at most MAX_DEPTH elements deep), and anything
// it cannot read is an error that says why, never a crash.
import { isIP } from 'node:net';
import { gunzipSync } from 'node:zlib';

export const MAX_XML = 10 * 1024 * 1024; // a report's XML, inflated
const MAX_DEPTH = 32; // RFC 9990's elements nest 5 deep
const MAX_RECORDS = 10_000;
const MAX_ELEMENTS = 500_000; // about 25 a record

export interface ReadReport {
  reporter: { orgName: string; email: string };
  reportId: string;
  policyDomain: string;
  begin: string; // ISO
  end: string;
  published: { p?: string; sp?: string; np?: string; adkim?: string; aspf?: string; testing?: string };
  rows: ReadRow[];
  messages: number;
  passed: number; // DMARC pass: DKIM or SPF aligned and passing (policy_evaluated)
  failed: number;
}

export interface ReadRow {
  sourceIp: string;
  sourceName?: string; // its PTR name, which the API adds (api/reports.ts)
  count: number;
  disposition: string;
  dkim: string; // policy_evaluated: aligned and passing, or not
  spf: string;
  headerFrom: string;
  envelopeFrom?: string;
  authDkim: { domain: string; selector?: string; result: string }[];
  authSpf?: { domain: string; result: string };
}

export class ReportError extends Error {}

// The report in a stored message: its gzipped XML attachment.
export async function readReportMessage(raw: Buffer): Promise<ReadReport> {
  const { simpleParser } = await import('mailparser');
  const mail = await simpleParser(raw, { skipHtmlToText: true, skipTextToHtml: true, skipTextLinks: true, skipImageLinks: true });
  const gz = mail.attachments.find((a) => /^application\/(x-)?gzip$/i.test(a.contentType) || /\.gz$/i.test(a.filename ?? ''));
  if (!gz) {
    const zip = mail.attachments.some((a) => /zip$/i.test(a.contentType) || /\.zip$/i.test(a.filename ?? ''));
    throw new ReportError(zip ? 'the report is a zip file: only gzip (RFC 9990) is read' : 'no gzipped report attached (application/gzip, a .xml.gz file)');
  }
  return readReport(inflate(gz.content));
}

function inflate(data: Buffer): Buffer {
  try {
    return gunzipSync(data, { maxOutputLength: MAX_XML });
  } catch (error) {
    if ((error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw new ReportError(`the gzipped report inflates to more than ${MAX_XML / 1024 / 1024} MiB: not read`);
    throw new ReportError(`the attachment is not valid gzip (${(error as Error).message})`);
  }
}

// The report in its XML.
export function readReport(bytes: Buffer): ReadReport {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ReportError('the report is not UTF-8 text');
  }
  const root = parseXml(text);
  if (root.name !== 'feedback') throw new ReportError(`the XML's root is <${root.name}>, not RFC 9990's <feedback>`);
  const metadata = need(root, 'report_metadata');
  const policy = need(root, 'policy_published');
  const range = need(metadata, 'date_range');
  const records = root.children.filter((c) => c.name === 'record');
  if (records.length > MAX_RECORDS) throw new ReportError(`the report has ${records.length} records: more than ${MAX_RECORDS} are not read`);
  const rows = records.map(readRow);
  const messages = rows.reduce((sum, r) => sum + r.count, 0);
  const passed = rows.reduce((sum, r) => sum + (r.dkim === 'pass' || r.spf === 'pass' ? r.count : 0), 0);
  const optional = (tag: string) => child(policy, tag)?.text;
  return {
    reporter: { orgName: text_(metadata, 'org_name'), email: text_(metadata, 'email') },
    reportId: text_(metadata, 'report_id'),
    policyDomain: text_(policy, 'domain'),
    begin: isoTime(range, 'begin'),
    end: isoTime(range, 'end'),
    published: { p: optional('p'), sp: optional('sp'), np: optional('np'), adkim: optional('adkim'), aspf: optional('aspf'), testing: optional('testing') },
    rows,
    messages,
    passed,
    failed: messages - passed,
  };
}

function readRow(record: XmlElement): ReadRow {
  const row = need(record, 'row');
  const evaluated = need(row, 'policy_evaluated');
  const identifiers = need(record, 'identifiers');
  const auth = need(record, 'auth_results');
  const sourceIp = text_(row, 'source_ip');
  if (!isIP(sourceIp)) throw new ReportError(`<source_ip> ${JSON.stringify(sourceIp.slice(0, 100))} is not an IP address`);
  const count = Number(text_(row, 'count'));
  if (!Number.isSafeInteger(count) || count < 0) throw new ReportError(`<count> of ${sourceIp} is not a whole number`);
  const spf = auth.children.find((c) => c.name === 'spf');
  return {
    sourceIp,
    count,
    disposition: text_(evaluated, 'disposition'),
    dkim: text_(evaluated, 'dkim'),
    spf: text_(evaluated, 'spf'),
    headerFrom: text_(identifiers, 'header_from'),
    envelopeFrom: child(identifiers, 'envelope_from')?.text,
    authDkim: auth.children.filter((c) => c.name === 'dkim').map((d) => ({ domain: text_(d, 'domain'), selector: child(d, 'selector')?.text, result: text_(d, 'result') })),
    authSpf: spf && { domain: text_(spf, 'domain'), result: text_(spf, 'result') },
  };
}

function isoTime(range: XmlElement, tag: string): string {
  const seconds = Number(text_(range, tag));
  const date = new Date(seconds * 1000);
  if (!Number.isSafeInteger(seconds) || Number.isNaN(date.getTime())) throw new ReportError(`<${tag}> of <date_range> is not seconds since 1970`);
  return date.toISOString();
}

const child = (parent: XmlElement, tag: string) => parent.children.find((c) => c.name === tag);

function need(parent: XmlElement, tag: string): XmlElement {
  const found = child(parent, tag);
  if (!found) throw new ReportError(`<${parent.name}> has no <${tag}>`);
  return found;
}

function text_(parent: XmlElement, tag: string): string {
  return need(parent, tag).text.trim();
}

// A small strict XML reader for data like RFC 9990's: elements, attributes
// (read past: the namespace is not checked, reports under RFC 7489 have
// none), text with the five predefined entities and character references,
// CDATA, comments and processing instructions. A DOCTYPE is refused: a
// report has none, and it is where entity bombs live.
export interface XmlElement {
  name: string; // without a prefix
  children: XmlElement[];
  text: string; // the element's own text, children's left out
}

const NAME = /[A-Za-z_:][-A-Za-z0-9_.:]*/y;
const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

export function parseXml(xml: string): XmlElement {
  let at = 0;
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  let elements = 0;
  const fail = (why: string): never => {
    const line = xml.slice(0, at).split('\n').length;
    throw new ReportError(`not a readable XML report: ${why} (line ${line})`);
  };
  const skipPast = (end: string, what: string) => {
    const found = xml.indexOf(end, at);
    if (found === -1) fail(`${what} not closed`);
    const inside = xml.slice(at, found);
    at = found + end.length;
    return inside;
  };
  if (xml.charCodeAt(0) === 0xfeff) at = 1;
  while (at < xml.length) {
    const lt = xml.indexOf('<', at);
    const text = xml.slice(at, lt === -1 ? xml.length : lt);
    if (text) {
      if (stack.length) stack.at(-1)!.text += decodeText(text, fail);
      else if (text.trim()) fail('text outside the root element');
    }
    if (lt === -1) break;
    at = lt;
    if (xml.startsWith('<!--', at)) {
      at += 4;
      skipPast('-->', 'a comment');
    } else if (xml.startsWith('<?', at)) {
      at += 2;
      skipPast('?>', 'a processing instruction');
    } else if (xml.startsWith('<![CDATA[', at)) {
      at += 9;
      const data = skipPast(']]>', 'a CDATA section');
      if (!stack.length) fail('CDATA outside the root element');
      stack.at(-1)!.text += data;
    } else if (xml.startsWith('<!', at)) {
      fail(xml.startsWith('<!DOCTYPE', at) ? 'a DOCTYPE is not allowed (a report has none; its entities are not expanded)' : 'an unknown <! declaration');
    } else if (xml.startsWith('</', at)) {
      at += 2;
      const name = readName(fail);
      if (!/^\s*>/.test(xml.slice(at, at + 64))) fail(`</${name} not closed with >`);
      at = xml.indexOf('>', at) + 1;
      const open = stack.pop();
      if (!open || open.name !== localName(name)) fail(`</${name}> closes ${open ? `<${open.name}>` : 'nothing'}`);
    } else {
      at += 1;
      const name = readName(fail);
      const end = readAttributes(fail);
      if (++elements > MAX_ELEMENTS) fail(`more than ${MAX_ELEMENTS} elements`);
      const element: XmlElement = { name: localName(name), children: [], text: '' };
      if (stack.length) stack.at(-1)!.children.push(element);
      else if (root) fail('a second root element');
      else root = element;
      if (end === '>') {
        stack.push(element);
        if (stack.length > MAX_DEPTH) fail(`elements nested deeper than ${MAX_DEPTH}`);
      }
    }
  }
  if (stack.length) fail(`<${stack.at(-1)!.name}> not closed at the end`);
  if (!root) fail('no element at all');
  return root!;

  function readName(fail: (why: string) => never): string {
    NAME.lastIndex = at;
    const match = NAME.exec(xml);
    if (!match) fail('a tag without a name');
    at += match![0].length;
    return match![0];
  }

  // Past the attributes to the tag's end: '>' or '/>'.
  function readAttributes(fail: (why: string) => never): string {
    for (;;) {
      const space = /^\s*/.exec(xml.slice(at, at + 256))![0].length;
      at += space;
      if (xml.startsWith('/>', at)) return (at += 2), '/>';
      if (xml.startsWith('>', at)) return (at += 1), '>';
      if (!space) fail('a tag not closed with > or />');
      readName(fail);
      const match = /^\s*=\s*("[^"<]*"|'[^'<]*')/.exec(xml.slice(at, at + 4096));
      if (!match) fail('an attribute without a quoted value');
      decodeText(match![1], fail);
      at += match![0].length;
    }
  }
}

const localName = (name: string) => name.slice(name.indexOf(':') + 1);

function decodeText(text: string, fail: (why: string) => never): string {
  return text.replace(/&([^;&<]{0,10});?/g, (whole, ref: string) => {
    if (!whole.endsWith(';')) fail('an & that starts no entity');
    if (ENTITIES[ref]) return ENTITIES[ref];
    const code = /^#x([0-9a-f]{1,6})$/i.exec(ref) ? parseInt(ref.slice(2), 16) : /^#([0-9]{1,7})$/.test(ref) ? Number(ref.slice(1)) : undefined;
    if (code === undefined) fail(`the entity &${ref}; is not one of XML's own (a report declares none)`);
    if (code! > 0x10ffff || code === 0 || (code! >= 0xd800 && code! <= 0xdfff)) fail(`&${ref}; is not a character`);
    return String.fromCodePoint(code!);
  });
}
