// The Reports view: the DMARC aggregate reports (RFC 9990) in the mailboxes
// this console may read, as the API reads them (GET /api/reports). Per
// domain, a chart of the mail that passed and failed DMARC, report after
// report; per report, who sent it, the period and the policy published, and
// a row per source address: the domain's own servers pass DMARC, a source
// that fails is sending in the domain's name without its leave (the
// attacker, or a service the owner forgot). Everything in a report was
// written by whoever sent it: it goes into the page as text only (h()), and
// the chart holds numbers and the domain's name as text nodes.
import { badge, errorBox, getJson, h, time } from './dom.js';

const enc = encodeURIComponent;
const SVG = 'http://www.w3.org/2000/svg';

export async function reportsView(section) {
  await show(section);
  const reload = () => show(section).catch((error) => section.replaceChildren(errorBox(error)));
  return {
    refresh: reload,
    // A report arrives as mail: a session that carried one.
    live: (row) => row.transactions?.some((t) => /^Report Domain:/i.test(t.subject ?? '') && t.deliveries?.length) && reload(),
  };
}

async function show(section) {
  const reports = await getJson('/api/reports');
  const read = reports.filter((r) => !r.error);
  const unread = reports.filter((r) => r.error);
  const domains = [...new Set(read.map((r) => r.policyDomain))];
  const parts = [
    h('h2', {}, 'DMARC reports'),
    h(
      'p',
      { class: 'muted intro' },
      'Aggregate reports (RFC 9990) that receivers sent to the mailboxes here: how much mail each address sent in a domain’s name, and whether it passed DMARC. ',
      'The domain’s own servers pass; an address that fails is sending in its name without leave: an attacker, or a service the owner forgot to authorise.',
    ),
    reports.length === 0 && h('p', { class: 'muted' }, 'No report has arrived yet. The receiver sends them each period, or at once with npm run lab -- reports --send.'),
    domains.map((domain) => domainSection(domain, read.filter((r) => r.policyDomain === domain))),
    unread.length > 0 && h('section', { class: 'report-domain', 'aria-label': 'Reports that could not be read' }, h('h3', {}, 'Reports that could not be read'), unread.map(unreadReport)),
  ];
  section.replaceChildren(...parts.flat().filter(Boolean));
}

function domainSection(domain, reports) {
  return h(
    'section',
    { class: 'report-domain', 'aria-label': `Reports for ${domain}` },
    h('h3', {}, 'Reports for ', h('code', {}, domain)),
    chart(domain, [...reports].sort((a, b) => a.begin.localeCompare(b.begin) || a.end.localeCompare(b.end))),
    reports.map(reportArticle),
  );
}

function reportArticle(report) {
  const own = report.rows.filter(passes);
  const others = report.rows.filter((r) => !passes(r));
  const p = report.published;
  const policy = ['p', 'sp', 'np', 'adkim', 'aspf', 'testing'].filter((k) => p[k] !== undefined).map((k) => `${k}=${p[k]}`).join('; ');
  return h(
    'article',
    { class: 'report' },
    h('h4', {}, 'From ', report.reporter.orgName, ' ', h('span', { class: 'muted' }, `<${report.reporter.email}>`)),
    h(
      'dl',
      { class: 'meta' },
      h('dt', {}, 'Period'),
      h('dd', {}, time(report.begin), ' to ', time(report.end)),
      h('dt', {}, 'Policy published'),
      h('dd', {}, h('code', {}, policy || '(none given)')),
      h('dt', {}, 'Messages'),
      h('dd', { class: 'totals' }, `${report.messages}: `, badge('good', '✓', `${report.passed} passed`), ' ', badge(report.failed ? 'bad' : 'plain', '✗', `${report.failed} failed`)),
      h('dt', {}, 'Report'),
      h('dd', {}, h('code', {}, report.reportId), ' · ', h('a', { href: `#/message/${enc(report.id)}` }, `the message in ${report.mailbox}`), ' · received ', time(report.receivedAt)),
    ),
    h('p', { class: 'report-summary' }, summary(report.policyDomain, own, others)),
    h(
      'div',
      { class: 'scroll' },
      h(
        'table',
        { class: 'list sources' },
        h('caption', { class: 'muted small' }, 'Per source address. DMARC passes when SPF or DKIM passed for a domain aligned with the From domain.'),
        h('thead', {}, h('tr', {}, ['Source', 'Messages', 'SPF', 'DKIM', 'DMARC', 'Disposition'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, report.rows.map(sourceRow)),
      ),
    ),
  );
}

const passes = (row) => row.dkim === 'pass' || row.spf === 'pass';
const sourceText = (row) => (row.sourceName ? `${row.sourceName} (${row.sourceIp})` : row.sourceIp);
const count = (rows) => rows.reduce((sum, r) => sum + r.count, 0);
const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

// In words: whose mail passed, and who sent in the domain's name and failed.
function summary(domain, own, others) {
  const list = (rows) => [...new Set(rows.map(sourceText))].join(', ');
  const parts = [];
  if (own.length) parts.push(`${list(own)} sent ${plural(count(own), 'message')} that passed DMARC: ${domain}'s own mail.`);
  if (others.length) parts.push(` ${list(others)} sent ${plural(count(others), 'message')} in ${domain}'s name that failed DMARC: not ${domain}'s servers, an attacker (or a service ${domain} has not authorised).`);
  return parts.length ? parts : `No messages in this report.`;
}

function sourceRow(row) {
  const ok = passes(row);
  return h(
    'tr',
    { class: ok ? 'source own' : 'source stranger' },
    h(
      'th',
      { scope: 'row' },
      h('div', {}, row.sourceName ?? h('span', { class: 'muted' }, 'no name in DNS')),
      h('code', { class: 'small' }, row.sourceIp),
      h('div', {}, ok ? badge('good', '✓', "the domain's own", 'It passed DMARC: a server the domain authorised') : badge('bad', '✗', 'not the domain’s', 'It failed DMARC: it sends in the domain’s name without leave')),
    ),
    h('td', { class: 'number' }, row.count),
    h('td', {}, aligned(row.spf), row.authSpf && h('div', { class: 'small muted' }, `SPF ${row.authSpf.result} for `, h('code', {}, row.authSpf.domain))),
    h('td', {}, aligned(row.dkim), row.authDkim.length === 0 ? h('div', { class: 'small muted' }, 'no signature') : row.authDkim.map((s) => h('div', { class: 'small muted' }, `${s.result} d=`, h('code', {}, s.domain), s.selector ? [' s=', h('code', {}, s.selector)] : ''))),
    h('td', {}, ok ? badge('good', '✓', 'DMARC pass') : badge('bad', '✗', 'DMARC fail')),
    h('td', {}, badge(row.disposition === 'none' ? 'plain' : 'warn', row.disposition === 'none' ? '–' : '!', row.disposition, dispositionTitle(row.disposition))),
  );
}

// policy_evaluated's dkim and spf: passed for a domain aligned with the From, or not.
function aligned(result) {
  return result === 'pass' ? badge('good', '✓', 'aligned pass') : badge('bad', '✗', `${result}`, 'not passed for a domain aligned with the From');
}

function dispositionTitle(disposition) {
  return { none: 'delivered as usual', quarantine: 'put in Junk', reject: 'refused (550)' }[disposition] ?? 'the policy the receiver applied';
}

function unreadReport(report) {
  return h(
    'article',
    { class: 'report unread' },
    h('h4', {}, report.subject || '(no Subject)'),
    h('p', {}, h('a', { href: `#/message/${enc(report.id)}` }, `The message in ${report.mailbox}`), ', received ', time(report.receivedAt)),
    errorBox(`could not be read: ${report.error}`),
  );
}

// Passing and failing volume, one bar a report, oldest first: an SVG with a
// title and a description, and the same numbers as a table beside it.
function chart(domain, reports) {
  const id = `chart-${domain.replace(/[^a-z0-9-]/gi, '_')}`;
  const width = 640;
  const height = 200;
  const left = 44;
  const bottom = 34;
  const top = 12;
  const max = Math.max(1, ...reports.map((r) => r.messages));
  const slot = (width - left - 8) / reports.length;
  const bar = Math.min(48, slot * 0.7);
  const y = (n) => top + (height - top - bottom) * (1 - n / max);
  const passed = count(reports.map((r) => ({ count: r.passed })));
  const failed = count(reports.map((r) => ({ count: r.failed })));
  const description = `${plural(reports.length, 'report')}: ${passed} messages passed DMARC and ${failed} failed.`;
  const every = Math.ceil(64 / slot); // a time under every bar that has room for one
  const bars = reports.map((r, i) => {
    const x = left + slot * i + (slot - bar) / 2;
    const label = clock(r.end);
    return svg(
      'g',
      { class: 'bar' },
      svg('title', {}, `${clock(r.begin)} to ${label}: ${r.passed} passed, ${r.failed} failed`),
      svg('rect', { class: 'pass', x, y: y(r.passed), width: bar, height: y(0) - y(r.passed) }),
      svg('rect', { class: 'fail', x, y: y(r.messages), width: bar, height: y(r.passed) - y(r.messages) }),
      i % every === 0 && svg('text', { x: x + bar / 2, y: height - bottom + 14, 'text-anchor': 'middle', class: 'tick' }, label),
    );
  });
  return h(
    'figure',
    { class: 'chart' },
    svg(
      'svg',
      { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-labelledby': `${id}-title ${id}-desc`, class: 'volume' },
      svg('title', { id: `${id}-title` }, `Messages in ${domain}'s name that passed and failed DMARC, per report`),
      svg('desc', { id: `${id}-desc` }, description),
      svg('line', { x1: left, y1: y(0), x2: width - 8, y2: y(0), class: 'axis' }),
      svg('line', { x1: left, y1: top, x2: left, y2: y(0), class: 'axis' }),
      svg('text', { x: left - 6, y: y(max) + 4, 'text-anchor': 'end', class: 'tick' }, String(max)),
      svg('text', { x: left - 6, y: y(0) + 4, 'text-anchor': 'end', class: 'tick' }, '0'),
      bars,
    ),
    h('figcaption', { class: 'legend' }, h('span', { class: 'swatch pass', 'aria-hidden': 'true' }), '✓ passed DMARC ', h('span', { class: 'swatch fail', 'aria-hidden': 'true' }), '✗ failed DMARC', h('span', { class: 'muted small' }, ` · one bar a report, by the end of its period · ${description}`)),
    h(
      'details',
      {},
      h('summary', {}, 'The chart as a table'),
      h(
        'table',
        { class: 'list chart-table' },
        h('thead', {}, h('tr', {}, ['Period', 'Passed', 'Failed'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, reports.map((r) => h('tr', {}, h('td', {}, time(r.begin), ' to ', time(r.end)), h('td', { class: 'number' }, r.passed), h('td', { class: 'number' }, r.failed)))),
      ),
    ),
  );
}

const clock = (iso) => new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });

// An SVG element: attributes as values, text as text nodes.
function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  for (const child of children.flat()) if (child !== false) element.append(typeof child === 'string' ? document.createTextNode(child) : child);
  return element;
}
