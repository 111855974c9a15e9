// The web console of one MTA instance: a view per route (the part of the
// address after #), the mailboxes at the side, and live news from the API's
// event stream, so that new sessions show up without a reload.
import { errorBox, getJson, h, throttle } from './dom.js';
import { dnsView, mailboxView, queueView, sessionsView } from './lists.js';
import { messageView, sessionView } from './message.js';

const main = document.getElementById('main');
const enc = encodeURIComponent;
let view = {}; // the current view's hooks for news: live(sessionRow), queueChanged(), refresh()

async function route() {
  const [kind = '', ...rest] = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  // A fresh section per route: a slow view still loading fills a section no longer shown.
  const section = h('section', { class: 'view' });
  main.replaceChildren(section);
  view = {};
  markCurrent();
  try {
    if (kind === 'mailbox') view = mailboxView(section, rest[0], rest[1] || 'INBOX');
    else if (kind === 'message') await messageView(section, rest[0], rest[1] || 'why');
    else if (kind === 'session') await sessionView(section, rest[0]);
    else if (kind === 'queue') view = queueView(section);
    else if (kind === 'dns') view = dnsView(section);
    else view = sessionsView(section, kind === 'sessions' ? rest[0] : '');
  } catch (error) {
    section.append(errorBox(error));
  }
}

function markCurrent() {
  const here = location.hash || '#/sessions';
  for (const link of document.querySelectorAll('#nav a')) {
    const href = link.getAttribute('href');
    const current = here === href || (href === '#/sessions' && here.startsWith('#/sessions'));
    if (current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

async function loadMailboxes() {
  const list = document.getElementById('mailboxes');
  try {
    const mailboxes = await getJson('/api/mailboxes');
    list.replaceChildren(
      ...mailboxes.map(({ mailbox, folders }) =>
        h(
          'li',
          {},
          h('span', { class: 'mailbox' }, mailbox),
          h(
            'span',
            { class: 'folders' },
            folders.map((f) => h('a', { href: `#/mailbox/${enc(mailbox)}/${f.folder}` }, f.folder, ' ', h('span', { class: 'count', title: `${f.unseen} not yet read by a mail client` }, f.messages))),
          ),
        ),
      ),
    );
    if (mailboxes.length === 0) list.replaceChildren(h('li', { class: 'muted small' }, 'No mail stored yet.'));
    markCurrent();
  } catch (error) {
    list.replaceChildren(h('li', {}, errorBox(error)));
  }
}

async function loadQueueCount(entries) {
  const count = entries ?? (await getJson('/api/queue').catch(() => [])).length;
  document.getElementById('queue-count').textContent = count ? String(count) : '';
}

function setLive(live) {
  const status = document.getElementById('live');
  status.className = `live ${live ? 'on' : 'off'}`;
  status.textContent = live ? '● Live' : '○ Reconnecting…';
  status.title = live ? 'New sessions appear as they happen' : 'The event stream is down; the browser tries again every 2 s';
}

// Live news. Whenever the stream (re)opens, the view catches up on what
// happened while it was not listening, including in the moment before the
// first connection.
const events = new EventSource('/api/events');
events.addEventListener('open', () => {
  setLive(true);
  loadMailboxes();
  loadQueueCount();
  view.refresh?.();
});
events.addEventListener('error', () => setLive(false));
const mailboxesSoon = throttle(loadMailboxes, 500); // a burst of sessions, one look at the counts
events.addEventListener('session', (event) => {
  view.live?.(JSON.parse(event.data));
  mailboxesSoon();
});
events.addEventListener('queue', (event) => {
  loadQueueCount(JSON.parse(event.data).entries);
  view.queueChanged?.();
});

window.addEventListener('hashchange', route);
route();
getJson('/api/health').then(({ instance, hostname }) => {
  document.getElementById('instance').textContent = instance;
  document.getElementById('hostname').textContent = hostname;
  document.title = `${instance} · mail-lab console`;
}, () => undefined);
