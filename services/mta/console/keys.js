// A student's DKIM keys, at the sender's console (the instance whose
// /api/classroom/dkim answers): make a key pair for a selector, then the
// exact line to add to the zone, and a button that adds it. The sender
// signs the student's mail with the new key at once; publishing the public
// key is the student's choice, made with that button and nothing else.
import { badge, errorBox, getJson, h } from './dom.js';
import { studentPicker } from './class.js';
import { send } from './session.js';

const enc = encodeURIComponent;

export async function keysView(section, domain, me) {
  if (me.role === 'teacher') {
    const { students } = await getJson('/api/classroom');
    section.append(studentPicker(students, domain, '#/keys/'));
    if (!domain) return section.append(h('h2', {}, 'DKIM keys'), h('p', { class: 'muted' }, "Choose a student to see and make their keys."));
  }
  const owner = domain ?? me.student.domain;
  const mine = me.role === 'student';
  const query = `?domain=${enc(owner)}`;

  const selector = h('input', { id: 'selector', value: 's1', required: true, maxlength: 63, pattern: '[a-z0-9]([a-z0-9\\-]*[a-z0-9])?', spellcheck: 'false', 'aria-describedby': 'selector-help' });
  const algorithm = h(
    'select',
    { id: 'algorithm' },
    h('option', { value: 'rsa-2048' }, 'RSA, 2048 bits'),
    h('option', { value: 'ed25519' }, 'Ed25519'),
  );
  const generate = h('button', { type: 'submit' }, 'Generate key');
  const made = h('div', { 'aria-live': 'polite' });
  const list = h('div');
  section.append(
    h('h2', {}, 'DKIM keys ', h('span', { class: 'muted' }, `for ${owner}`)),
    h(
      'p',
      { class: 'muted' },
      `A key pair for a selector of ${owner}: the sender keeps the private key and signs ${mine ? 'your' : 'their'} mail with it from now on; the public key is a TXT record that receivers look up in ${mine ? 'your' : 'the'} zone. Nothing is published until ${mine ? 'you choose' : 'someone chooses'} to.`,
    ),
    h(
      'form',
      { class: 'key-form', onsubmit: (event) => (event.preventDefault(), make()) },
      h('label', { for: 'selector' }, 'Selector '),
      selector,
      h('label', { for: 'algorithm' }, 'Algorithm '),
      algorithm,
      generate,
      h('p', { id: 'selector-help', class: 'muted small' }, 'One DNS label: lower-case letters, digits and hyphens. A new key for a selector you have replaces the old one.'),
    ),
    made,
    h('h3', {}, `Selectors of ${owner}`),
    list,
  );
  await refresh();

  async function make() {
    generate.disabled = true;
    made.replaceChildren(h('p', { class: 'muted' }, 'Making the key…'));
    try {
      const key = await send('POST', '/api/classroom/dkim', { selector: selector.value.trim(), algorithm: algorithm.value, domain: owner });
      const status = h('p', { role: 'status' });
      made.replaceChildren(
        h(
          'div',
          { class: 'made' },
          h('h3', {}, `New key for ${key.selector} (${key.algorithm})`),
          h('p', {}, `The sender signs mail from ${owner} with it from now on. Until its public key is published, receivers cannot check those signatures. Add this line to ${mine ? 'your' : 'the'} zone:`),
          h('pre', { class: 'body zone-line' }, key.zoneLine),
          h('button', { type: 'button', onclick: (e) => publish(key, e.target, status) }, mine ? 'Add it to my zone' : `Add it to ${owner}'s zone`),
          status,
        ),
      );
      await refresh();
    } catch (error) {
      made.replaceChildren(errorBox(error));
    } finally {
      generate.disabled = false;
    }
  }

  // The key's record in the zone, in place of any record at its name (an
  // old key of that selector): one change, through the zone API.
  async function publish(key, button, status) {
    button.disabled = true;
    try {
      const zone = await getJson(`/api/zone${query}`);
      const name = `${key.selector}._domainkey`;
      const before = txtAt(zone.records, name);
      const result = await send('POST', `/api/zone/records${query}`, { ...(before.length && { delete: [`${name} TXT`] }), add: [key.zoneLine] });
      status.replaceChildren(
        result.diff ? `✓ Published in ${owner}'s zone: serial ${result.serial}${before.length ? ', in place of the record that was at that name' : ''}.` : `It was published already (serial ${result.serial}).`,
      );
      await refresh();
    } catch (error) {
      status.replaceChildren(errorBox(error));
      button.disabled = false;
    }
  }

  async function refresh() {
    try {
      const keys = await getJson(`/api/classroom/dkim${query}`);
      // The zone says which keys are published; without it, the keys still show.
      const zone = await getJson(`/api/zone${query}`).catch((error) => ({ error }));
      if (keys.length === 0) return list.replaceChildren(h('p', { class: 'muted' }, 'No keys yet.'), zone.error ? errorBox(zone.error) : '');
      const rows = keys.map((key) => {
        const status = h('div', { class: 'small' });
        return h(
          'tr',
          {},
          h('th', { scope: 'row' }, key.selector),
          h('td', { class: 'nowrap' }, key.algorithm),
          h('td', {}, h('code', {}, key.name), h('div', {}, h('code', { class: 'small' }, key.record))),
          h('td', {}, zone.error ? badge('plain', '?', 'zone not read') : published(key, zone), status),
          h(
            'td',
            {},
            zone.error || txtAt(zone.records, `${key.selector}._domainkey`).includes(key.record)
              ? ''
              : h('button', { type: 'button', 'aria-label': `Publish ${key.selector} in ${owner}'s zone`, onclick: (e) => publish(key, e.target, status) }, 'Publish'),
          ),
        );
      });
      list.replaceChildren(
        h('div', { class: 'scroll' }, h('table', { class: 'list keys' }, h('thead', {}, h('tr', {}, ['Selector', 'Algorithm', 'Record', 'In the zone', ''].map((t) => h('th', { scope: 'col' }, t)))), h('tbody', {}, rows))),
        zone.error ? errorBox(zone.error) : '',
      );
    } catch (error) {
      list.replaceChildren(errorBox(error));
    }
  }
}

function published(key, zone) {
  const there = txtAt(zone.records, `${key.selector}._domainkey`);
  if (there.includes(key.record)) return badge('good', '✓', 'published');
  if (there.length) return badge('warn', '⚠', 'another record there', `${key.name} holds a TXT record that is not this key (an older key?): receivers check signatures against it and fail`);
  return badge('plain', '–', 'not published');
}

// The TXT values at a name in a zone's records text, as the DNS writes it:
// `s1._domainkey 300 TXT "v=DKIM1; ..." "..."`, strings joined, \" \\ \DDD read.
function txtAt(records, name) {
  const values = [];
  for (const line of records.split('\n')) {
    const match = /^(\S+)\s+\d+\s+TXT\s+(.*)$/.exec(line);
    if (!match || match[1].toLowerCase() !== name) continue;
    const strings = [...match[2].matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((s) => s[1].replace(/\\(\d{3}|.)/g, (_, c) => (c.length === 3 ? String.fromCharCode(Number(c)) : c)));
    values.push(strings.join(''));
  }
  return values;
}
