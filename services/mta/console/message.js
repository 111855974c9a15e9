// One message (its "why", then headers, text, HTML, source, download) and
// one session (its conversation and the story of each message in it).
import { bytes, fateBadge, getJson, getText, h, headerText, interruptedBadge, time, verdictBadges } from './dom.js';
import { conversation, story } from './why.js';

const enc = encodeURIComponent;
const SOURCE_SHOWN = 1024 * 1024; // longer sources are cut on screen; the download has it all

const TABS = [
  ['why', 'Why'],
  ['headers', 'Headers'],
  ['text', 'Text'],
  ['html', 'HTML'],
  ['source', 'Source'],
];

export async function messageView(section, id, tab = 'why') {
  const message = await getJson(`/api/messages/${enc(id)}`);
  const record = await getJson(`/api/sessions/${enc(message.session)}`);
  const t = record.transactions.find((x) => x.deliveries.some((d) => d.id === id));
  const header = (name) => message.headers.find((f) => f.name.toLowerCase() === name)?.value;
  const row = { ...t, code: t.decision.code, enhanced: t.decision.enhanced, disposition: t.decision.disposition, reason: t.decision.reason };
  const base = `#/message/${enc(id)}`;
  const raw = `/api/messages/${enc(id)}/raw`;

  section.append(
    h('p', { class: 'crumbs' }, h('a', { href: `#/mailbox/${enc(message.mailbox)}/${message.folder}` }, `← ${message.mailbox} / ${message.folder}`), ' · ', h('a', { href: `#/session/${enc(record.id)}` }, 'its session')),
    h('h2', {}, headerText(header('subject'), '(no subject)')),
    h(
      'dl',
      { class: 'meta' },
      field('From', headerText(header('from'), '–')),
      field('To', headerText(header('to'), '–')),
      field('Date', header('date') ?? '–'),
      field('Envelope', `<${t.envelope.mailFrom}> → ${t.envelope.rcptTo.join(', ')}`),
      field('Received', [time(t.at), ` from ${record.client.address}`, record.client.hostname ? ` (${record.client.hostname})` : '']),
      field('Size', bytes(message.size)),
    ),
    h('div', { class: 'verdict' }, verdictBadges(t.checks && verdicts(t.checks)), fateBadge(row)),
    h(
      'nav',
      { class: 'tabs', 'aria-label': 'Message views' },
      TABS.map(([name, label]) => h('a', { href: `${base}/${name}`, 'aria-current': name === tab ? 'page' : null }, label)),
      h('a', { href: raw, download: `${id}.eml`, class: 'download' }, '⬇ Download .eml'),
    ),
  );
  const panel = h('div', { class: 'panel' });
  section.append(panel);

  if (tab === 'why') panel.append(conversation(record, t), ...story(t, record));
  if (tab === 'headers') {
    const interesting = /^(authentication-results|received-spf|dkim-signature|arc-.*|received|return-path|from)$/i;
    panel.append(
      h('p', { class: 'muted' }, 'In order, top first: this server prepended its trace and authentication fields to what the client sent.'),
      h(
        'table',
        { class: 'list headers' },
        h('tbody', {}, message.headers.map((f) => h('tr', { class: interesting.test(f.name) ? 'mark' : null }, h('th', { scope: 'row' }, f.name), h('td', {}, h('code', {}, f.value))))),
      ),
    );
  }
  if (tab === 'text' || tab === 'html') {
    const parts = await getJson(`/api/messages/${enc(id)}/parts`);
    if (tab === 'text') panel.append(parts.text ? h('pre', { class: 'body' }, parts.text) : h('p', { class: 'muted' }, 'No text part.'));
    else if (!parts.html) panel.append(h('p', { class: 'muted' }, 'No HTML part.'));
    else {
      panel.append(
        h('p', { class: 'muted small' }, 'Shown in a sandbox: no script runs, nothing loads from elsewhere, no form can be sent, links go nowhere.'),
        // No allow-* token at all: an opaque origin without scripts, forms or popups.
        h('iframe', { class: 'mail-html', sandbox: '', src: `/api/messages/${enc(id)}/html`, referrerpolicy: 'no-referrer', title: 'The HTML part' }),
      );
    }
    if (parts.attachments.length) {
      panel.append(h('h3', {}, 'Attachments'), h('ul', {}, parts.attachments.map((a) => h('li', {}, `${a.filename ?? '(no name)'} — ${a.contentType}, ${bytes(a.size)}`))));
    }
  }
  if (tab === 'source') {
    const text = await getText(raw);
    panel.append(
      h('pre', { class: 'body source' }, text.slice(0, SOURCE_SHOWN)),
      text.length > SOURCE_SHOWN ? h('p', { class: 'muted' }, `Cut at ${bytes(SOURCE_SHOWN)}; download the .eml for all of it.`) : '', // append() would show null as "null"
    );
  }
}

export async function sessionView(section, id) {
  const record = await getJson(`/api/sessions/${enc(id)}`);
  section.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/sessions' }, '← Sessions')),
    h('h2', {}, 'Session ', h('code', {}, record.id)),
    h(
      'dl',
      { class: 'meta' },
      field('Client', [record.client.address, record.client.hostname ? ` (${record.client.hostname})` : ' (no PTR name)']),
      field('Started', time(record.startedAt)),
      field('Ended', ended(record)),
      field('Messages', String(record.transactions.length)),
    ),
    conversation(record),
  );
  if (record.transactions.length === 0) {
    section.append(h('p', { class: 'muted' }, 'No message was transferred in this session.'));
  }
  record.transactions.forEach((t, i) => {
    section.append(
      h('h2', { class: 'transaction' }, `Message ${i + 1}: `, headerText(t.message?.subject, '(no subject)'), h('span', { class: 'muted small' }, ` <${t.envelope.mailFrom}> → ${t.envelope.rcptTo.join(', ')}`)),
      ...story(t, record),
    );
  });
}

// When the session ended; for one closed at start after a crash, also why,
// and what the end time rests on.
function ended(record) {
  if (!record.endedAt) return 'still open';
  if (!record.interrupted) return time(record.endedAt);
  const { reason, endedAtFrom } = record.interrupted;
  return [interruptedBadge(record), ' ', time(record.endedAt), h('div', { class: 'muted small' }, `${reason}. The end time is ${endedAtFrom}.`)];
}

function field(name, value) {
  return [h('dt', {}, name), h('dd', {}, value)];
}

function verdicts(c) {
  const dkim = c.dkim.find((d) => d.result === 'pass') ?? c.dkim[0];
  return { spf: c.spf.result, dkim: dkim?.result ?? 'none', dmarc: c.dmarc.result, arc: c.arc.result };
}
