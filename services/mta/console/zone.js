// A student's zone in the lab DNS (classroom mode): its records as text to
// edit and save, the zone as the DNS serves it, and every change with its
// diff. The DNS checks a change in full before serving it; a refusal names
// the line, and the view shows the reason at that line. The teacher picks
// the student from the class.
import { errorBox, getJson, h, time } from './dom.js';
import { studentPicker } from './class.js';
import { send } from './session.js';

const enc = encodeURIComponent;

export async function zoneView(section, domain, me) {
  if (me.role === 'teacher') {
    const { students } = await getJson('/api/classroom');
    section.append(studentPicker(students, domain, '#/zone/'));
    if (!domain) return section.append(h('h2', {}, 'Zones'), h('p', { class: 'muted' }, "Choose a student to see their zone, change it and read its history."));
  }
  // The heading first: a refusal is shown under the zone it refuses.
  const heading = h('h2', {}, 'Zone ', h('code', {}, domain ?? me.student.domain));
  section.append(heading);
  const where = `/api/zone${domain ? `?domain=${enc(domain)}` : ''}`;
  let zone = await getJson(where);

  const records = h('textarea', { id: 'records', class: 'zone-text', rows: 14, spellcheck: 'false', autocomplete: 'off', 'aria-describedby': 'records-help records-problem', oninput: () => records.removeAttribute('aria-invalid') });
  const save = h('button', { type: 'submit' }, 'Save');
  const undo = h('button', { type: 'button', onclick: () => ((records.value = zone.records), clear()) }, 'Undo my edits');
  const status = h('span', { class: 'muted', role: 'status' });
  const problem = h('div', { id: 'records-problem' });
  const served = h('pre', { class: 'body zone-served' });
  const history = h('div');
  const form = h(
    'form',
    { class: 'zone-editor', onsubmit: (event) => (event.preventDefault(), saveText()) },
    h('label', { for: 'records' }, 'Records'),
    h(
      'p',
      { id: 'records-help', class: 'muted small' },
      'One record a line, as in a zone file: name, TTL (optional), type, data. Names are relative to the domain: @ is the domain itself, then mail, _dmarc, s1._domainkey. The SOA and NS are the lab\'s. Every change is checked before it is served.',
    ),
    records,
    h('div', { class: 'actions' }, save, undo, status),
    problem,
  );
  section.append(
    form,
    h('h3', {}, 'As served'),
    h('p', { class: 'muted small' }, "The whole zone as the lab DNS answers for it: the lab's SOA and NS, then the records above."),
    served,
    h('h3', {}, 'History'),
    history,
  );
  render(zone);

  function render(now) {
    zone = now;
    heading.replaceChildren('Zone ', h('code', {}, zone.domain), h('span', { class: 'muted' }, ` · ${zone.student}'s · serial ${zone.serial}`));
    records.value = zone.records;
    served.replaceChildren(zone.zone);
    history.replaceChildren(historyList(zone.history));
  }

  function clear() {
    problem.replaceChildren();
    status.replaceChildren();
    records.removeAttribute('aria-invalid');
  }

  async function saveText() {
    const text = records.value;
    save.disabled = true;
    clear();
    try {
      const result = await send('PUT', where, { records: text, serial: zone.serial });
      render(await getJson(where));
      status.replaceChildren(result.diff ? `✓ Saved: serial ${result.serial}, served now.` : 'No change: the zone already says this.');
    } catch (error) {
      if (error.status === 409) await conflict(error, text);
      else refusal(error, text);
    } finally {
      save.disabled = false;
    }
  }

  // Someone else changed the zone (another tab, the teacher, the CLI): the
  // editor shows the zone as it is now, and the text not saved stays at hand.
  async function conflict(error, text) {
    try {
      render(await getJson(where));
    } catch (again) {
      return problem.replaceChildren(errorBox(again));
    }
    problem.replaceChildren(
      h(
        'div',
        { class: 'error', role: 'alert' },
        h('p', {}, `⚠ Not saved: someone changed ${zone.domain} meanwhile. The editor now shows it as it is, at serial ${zone.serial}.`),
        h('p', { class: 'small' }, error.message),
        h('details', { open: true }, h('summary', {}, 'Your text, not saved: copy what you need'), h('pre', { class: 'body' }, text)),
      ),
    );
  }

  // A refusal that names a line ("line 3: ...") is shown at that line, with
  // the lines around it; the line is selected in the editor.
  function refusal(error, text) {
    const line = error.status === 400 && Number(/^line (\d+): /.exec(error.message)?.[1]);
    if (!line) return problem.replaceChildren(errorBox(error));
    const lines = text.split('\n');
    if (lines.length > 1 && lines.at(-1) === '') lines.pop(); // the end of the last line, not a line
    const first = Math.max(1, line - 2);
    const last = Math.min(lines.length, line + 2);
    const shown = [];
    for (let n = first; n <= last; n++) {
      const bad = n === line;
      shown.push(h('li', { value: n, class: bad ? 'bad' : null }, h('code', {}, lines[n - 1] || ' '), bad ? h('div', { class: 'reason' }, '✗ ', error.message) : ''));
    }
    problem.replaceChildren(h('div', { class: 'error', role: 'alert' }, h('p', {}, `✗ Not saved: the DNS refused line ${line}. Nothing in the zone changed.`), h('ol', { class: 'zone-lines' }, shown)));
    records.setAttribute('aria-invalid', 'true');
    const start = lines.slice(0, line - 1).reduce((sum, l) => sum + l.length + 1, 0);
    records.focus();
    records.setSelectionRange(start, start + (lines[line - 1]?.length ?? 0));
  }
}

function historyList(changes) {
  if (changes.length === 0) return h('p', { class: 'muted' }, "No change yet: the zone has the lab's SOA and NS only.");
  return h(
    'ul',
    { class: 'history' },
    changes.map((c) => h('li', {}, h('p', { class: 'change-head' }, h('strong', {}, `Serial ${c.serial}`), ' · ', time(c.at), ` · by ${c.by}`), diffText(c.diff))),
  );
}

// A unified diff as text, a line an element: added lines marked +, removed
// ones −, each with its colour too; put in as text, never as markup.
function diffText(diff) {
  const lines = diff.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return h(
    'pre',
    { class: 'diff' },
    lines.map((line) => {
      if (line.startsWith('+++') || line.startsWith('---')) return h('span', { class: 'file' }, line, '\n');
      if (line.startsWith('+')) return h('ins', { title: 'added' }, line, '\n');
      if (line.startsWith('-')) return h('del', { title: 'removed' }, line, '\n');
      if (line.startsWith('@@')) return h('span', { class: 'hunk' }, line, '\n');
      return h('span', {}, line, '\n');
    }),
  );
}
