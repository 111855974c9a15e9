// The teacher's view of the class: every student with their domain, their
// zone's serial and last change (from the zone API), and links to their
// zone. And the list of the class that the teacher picks a student from in
// the zone and key views.
import { errorBox, getJson, h, time } from './dom.js';

const enc = encodeURIComponent;
const AT_ONCE = 4; // zone requests in flight: a class of 100 fills in without a burst of 100

export function studentPicker(students, current, base) {
  const select = h(
    'select',
    { id: 'student', onchange: (e) => (location.hash = `${base}${enc(e.target.value)}`) },
    h('option', { value: '', selected: !current, disabled: true }, 'choose a student'),
    students.map((s) => h('option', { value: s.domain, selected: s.domain === current }, `${s.name} (${s.domain})`)),
  );
  return h('p', { class: 'picker' }, h('label', { for: 'student' }, 'Student '), select);
}

export async function classView(section, keysHere) {
  const { name, students } = await getJson('/api/classroom');
  const rows = students.map((s) => {
    const serial = h('td', { class: 'number' }, h('span', { class: 'muted' }, '…'));
    const last = h('td', {}, h('span', { class: 'muted' }, '…'));
    const row = h(
      'tr',
      {},
      h('th', { scope: 'row' }, s.name),
      h('td', {}, h('code', {}, s.domain)),
      h('td', {}, s.address),
      serial,
      last,
      h('td', { class: 'nowrap' }, h('a', { href: `#/zone/${enc(s.domain)}` }, 'Zone'), keysHere ? [' · ', h('a', { href: `#/keys/${enc(s.domain)}` }, 'DKIM keys')] : ''),
    );
    return { student: s, row, serial, last };
  });
  section.append(
    h('h2', {}, 'Class ', h('span', { class: 'muted' }, name)),
    h('p', { class: 'muted count' }, `${students.length} student${students.length === 1 ? '' : 's'}; each zone's serial rises with every change.`),
    h('div', { class: 'scroll' }, h('table', { class: 'list class' }, h('thead', {}, h('tr', {}, ['Student', 'Domain', 'Mailbox', 'Zone serial', 'Last change', 'Open'].map((t) => h('th', { scope: 'col' }, t)))), h('tbody', {}, rows.map((r) => r.row)))),
  );
  // Each row's zone, a few at a time, filled in as they come.
  const queue = [...rows];
  const next = async () => {
    for (let r = queue.shift(); r; r = queue.shift()) {
      try {
        const zone = await getJson(`/api/zone?domain=${enc(r.student.domain)}`);
        const change = zone.history[0];
        r.serial.replaceChildren(String(zone.serial));
        r.last.replaceChildren(...(change ? [time(change.at), ` by ${change.by}`] : [h('span', { class: 'muted' }, 'none yet: SOA and NS only')]));
      } catch (error) {
        r.last.replaceChildren(errorBox(error));
      }
    }
  };
  for (let i = 0; i < AT_ONCE; i++) next();
}
