// The console's lists: a mailbox folder, the sessions, the outbound queue,
// the lab DNS's recent queries. Each view fills its section and returns
// hooks for live news: live(sessionRow), queueChanged(), refresh().
import { badge, bytes, errorBox, fateBadge, getJson, h, headerText, interruptedBadge, moreButton, throttle, time, verdictBadges } from './dom.js';

const PAGE = 50;
const enc = encodeURIComponent;
const go = (href) => () => (location.hash = href);

// Wide tables scroll inside their box rather than push the page sideways.
function table(headings, tbody) {
  return h('div', { class: 'scroll' }, h('table', { class: 'list' }, h('thead', {}, h('tr', {}, headings.map((t) => h('th', { scope: 'col' }, t)))), tbody));
}

// A paged list, newest first: the first page, an "Older" button for the
// next, and live rows put on top (or in place of their old selves) and marked
// for a moment. The view gives its page address, its rows and its words.
function pagedList({ url, key, row, headings, noun, empty }) {
  const tbody = h('tbody');
  const count = h('p', { class: 'muted count', 'aria-live': 'polite' });
  const foot = h('div');
  const shown = new Map(); // key -> row element
  let total = 0;
  const showCount = () => count.replaceChildren(total === 0 ? empty : `${total} ${noun}${total === 1 ? '' : 's'}, newest first`);
  const put = (item, where) => {
    const element = row(item);
    const old = shown.get(key(item));
    if (old) old.replaceWith(element);
    else tbody[where](element);
    shown.set(key(item), element);
    return element;
  };
  async function load(before) {
    const page = await getJson(url(before));
    for (const item of page.items) if (!shown.has(key(item))) put(item, 'append');
    total = page.total;
    showCount();
    foot.replaceChildren(moreButton(page, load) ?? '');
  }
  load().catch((error) => foot.replaceChildren(errorBox(error)));
  return {
    element: [count, table(headings, tbody), foot],
    // The first page again: what is not shown yet goes on top.
    refresh: () =>
      getJson(url()).then((page) => {
        for (const item of page.items.filter((item) => !shown.has(key(item))).reverse()) put(item, 'prepend');
        total = page.total;
        showCount();
      }, (error) => foot.replaceChildren(errorBox(error))),
    live(item) {
      if (!shown.has(key(item))) total++;
      const element = put(item, 'prepend');
      element.classList.add('new');
      setTimeout(() => element.classList.remove('new'), 4000);
      showCount();
    },
  };
}

export function mailboxView(section, mailbox, folder) {
  const row = (m) => {
    const href = `#/message/${enc(m.id)}`;
    return h(
      'tr',
      { class: 'link', onclick: go(href) },
      h('td', { class: 'nowrap' }, time(m.at)),
      h('td', {}, headerText(m.from, h('span', { class: 'muted' }, `<${m.mailFrom}>`))),
      h('td', {}, h('a', { href }, headerText(m.subject, '(no subject)'))),
      h('td', { class: 'nowrap' }, verdictBadges(m.verdicts)),
      h('td', {}, fateBadge(m)),
    );
  };
  const list = pagedList({
    url: (before) => `/api/mailboxes/${enc(mailbox)}/${enc(folder)}?limit=${PAGE}${before ? `&before=${enc(before)}` : ''}`,
    key: (m) => m.id,
    row,
    headings: ['Received', 'From', 'Subject', 'Checks', 'Fate'],
    noun: 'message',
    empty: 'No messages yet: they appear here as they arrive.',
  });
  section.append(h('h2', {}, mailbox, h('span', { class: 'muted' }, ` / ${folder}`)), ...list.element);
  return {
    refresh: list.refresh,
    live(session) {
      for (const t of session.transactions) {
        for (const d of t.deliveries) {
          if (d.mailbox.toLowerCase() === mailbox.toLowerCase() && d.folder === folder) list.live({ ...t, ...d, session: session.id, client: session.client.address });
        }
      }
    },
  };
}

const DISPOSITIONS = [
  ['', 'All'],
  ['inbox', 'Inbox'],
  ['junk', 'Junk'],
  ['reject', 'Rejected'],
  ['defer', 'Deferred'],
  ['refused', 'Refused'],
];

export function sessionsView(section, disposition = '') {
  const row = (s) => {
    const href = `#/session/${enc(s.id)}`;
    const ts = s.transactions;
    return h(
      'tr',
      { class: 'link', onclick: go(href) },
      h('td', { class: 'nowrap' }, h('a', { href }, time(s.startedAt))),
      h('td', {}, s.client.address, h('div', { class: 'muted small' }, s.client.hostname ?? 'no PTR name', s.client.helo ? `, HELO ${s.client.helo}` : '', s.tls ? ', TLS' : '')),
      h(
        'td',
        {},
        ts.length
          ? ts.map((t) => h('div', { class: 'message' }, headerText(t.subject, '(no subject)'), h('div', { class: 'muted small' }, `<${t.mailFrom}> → ${t.rcptTo.join(', ')}`)))
          : h('span', { class: 'muted' }, 'no message'),
      ),
      h('td', { class: 'nowrap' }, ts.map((t) => h('div', { class: 'message' }, verdictBadges(t.verdicts)))),
      h('td', { class: 'nowrap' }, ts.length ? ts.map((t) => h('div', { class: 'message' }, fateBadge(t), forwards(t))) : refusal(s), interrupted(s)),
    );
  };
  const list = pagedList({
    url: (before) => `/api/sessions/page?limit=${PAGE}${disposition ? `&disposition=${disposition}` : ''}${before ? `&before=${enc(before)}` : ''}`,
    key: (s) => s.id,
    row,
    headings: ['Started', 'Client', 'Message', 'Checks', 'Outcome'],
    noun: 'session',
    empty: 'No sessions yet: they appear here as clients connect.',
  });
  const filter = h(
    'select',
    { onchange: (e) => (location.hash = `#/sessions/${e.target.value}`) },
    DISPOSITIONS.map(([value, label]) => h('option', { value, selected: value === disposition }, label)),
  );
  section.append(h('div', { class: 'heading' }, h('h2', {}, 'Sessions'), h('label', {}, 'Show ', filter)), ...list.element);
  return {
    refresh: list.refresh,
    live(session) {
      if (!disposition || session.transactions.some((t) => t.disposition === disposition)) list.live(session);
    },
  };
}

function forwards(t) {
  return (t.forwarded ?? []).map((f) => h('div', { class: 'muted small wrap' }, `↪ sent on by the ${f.kind} ${f.address} to ${f.to.join(', ')}`));
}

// A session that carried no message: what the client was refused, if anything.
function refusal(session) {
  if (!session.refusal) return h('span', { class: 'muted' }, session.endedAt ? 'no message' : 'in progress');
  const [kind, symbol] = session.refusal.startsWith('4') ? ['warn', '⟳'] : ['bad', '✗'];
  return badge(`${kind} fate`, symbol, session.refusal, 'the last refusal the client heard');
}

// A session a crash left open, closed at the next start: said under its outcome.
function interrupted(session) {
  if (!session.interrupted) return null;
  return h('div', { class: 'message' }, interruptedBadge(session), h('div', { class: 'muted small wrap' }, session.interrupted.reason));
}

export function queueView(section) {
  const body = h('div');
  section.append(h('h2', {}, 'Outbound queue'), h('p', { class: 'muted' }, 'Messages waiting to be delivered; a delivered message leaves the queue.'), body);
  const refresh = async () => {
    try {
      const entries = await getJson('/api/queue');
      if (entries.length === 0) return body.replaceChildren(h('p', { class: 'muted count' }, 'The queue is empty.'));
      const rows = entries.map((e) =>
        h(
          'tr',
          {},
          h('td', { class: 'nowrap' }, time(e.createdAt), h('div', { class: 'muted small' }, e.id)),
          h('td', {}, `<${e.mailFrom}>`, h('div', { class: 'muted small' }, `${e.origin}${e.submittedBy ? ` by ${e.submittedBy}` : ''} · ${bytes(e.size)}`)),
          h('td', {}, e.recipients.map((r) => h('div', {}, recipientBadge(r.status), ` ${r.address}`, r.lastReply ? h('div', { class: 'muted small' }, r.lastReply) : ''))),
          h('td', { class: 'number' }, e.attempts),
          h('td', {}, e.lastError ?? h('span', { class: 'muted' }, 'none')),
          h('td', { class: 'nowrap' }, nextTry(e.nextAttemptAt)),
        ),
      );
      body.replaceChildren(table(['Queued', 'Sender', 'Recipients', 'Attempts', 'Last error', 'Next try'], h('tbody', {}, rows)));
    } catch (error) {
      body.replaceChildren(errorBox(error));
    }
  };
  refresh();
  return { refresh, queueChanged: refresh };
}

function recipientBadge(status) {
  const [kind, symbol] = { delivered: ['good', '✓'], failed: ['bad', '✗'], queued: ['warn', '⟳'] }[status] ?? ['plain', '?'];
  return badge(kind, symbol, status);
}

function nextTry(iso) {
  const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
  return h('span', { title: iso }, seconds <= 0 ? 'now' : `in ${seconds} s`);
}

export function dnsView(section) {
  const body = h('div');
  const name = h('input', { type: 'search', id: 'dns-name', placeholder: 'a name, e.g. _dmarc.sender.test', size: 32, onchange: () => refresh() });
  section.append(
    h('div', { class: 'heading' }, h('h2', {}, 'Lab DNS: recent queries'), h('label', {}, 'Only ', name), h('button', { type: 'button', onclick: () => refresh() }, 'Refresh')),
    h('p', { class: 'muted' }, 'What the lab DNS server was asked, by every host, newest first (its query log, through this API).'),
    body,
  );
  const refresh = async () => {
    try {
      const filter = name.value.trim() ? `&name=${enc(name.value.trim())}` : '';
      const { control, queries } = await getJson(`/api/dns/queries?limit=200${filter}`);
      const rows = queries.map((q) =>
        h(
          'tr',
          {},
          h('td', { class: 'nowrap' }, time(q.time)),
          h('td', {}, q.client),
          h('td', {}, h('code', {}, q.name), ' ', h('span', { class: 'rrtype' }, q.type)),
          h('td', {}, rcodeBadge(q.rcode), q.truncated ? ' truncated' : '', q.fault ? h('span', { class: 'muted' }, ` fault: ${q.fault}`) : ''),
          h('td', { class: 'number' }, q.answers),
          h('td', {}, q.transport),
        ),
      );
      body.replaceChildren(
        rows.length ? table(['Time', 'Client', 'Question', 'Answer', 'Records', 'Over'], h('tbody', {}, rows)) : h('p', { class: 'muted count' }, 'No queries yet.'),
        h('p', { class: 'muted small' }, `From the control endpoint at ${control}.`),
      );
    } catch (error) {
      body.replaceChildren(errorBox(error));
    }
  };
  refresh();
  return { refresh, live: throttle(refresh, 1000) };
}

function rcodeBadge(rcode) {
  if (rcode === 'NOERROR') return badge('good', '✓', rcode);
  return rcode === 'NXDOMAIN' ? badge('plain', '–', rcode, 'no such name') : badge('bad', '✗', rcode);
}
