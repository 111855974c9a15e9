// The web console of one MTA instance: a view per route (the part of the
// address after #), the mailboxes at the side, and live news from the API's
// event stream, so that new sessions show up without a reload. In a
// classroom lab it first asks who is logged in: no one gets the login
// screen; a student or the teacher gets the console as the server scopes it,
// with their zone, their DKIM keys (at the sender) or the class.
import { errorBox, getJson, h, throttle } from './dom.js';
import { classView } from './class.js';
import { exercisesView } from './exercises.js';
import { keysView } from './keys.js';
import { dnsView, mailboxView, queueView, sessionsView } from './lists.js';
import { showLogin } from './login.js';
import { messageView, sessionView } from './message.js';
import { reportsView } from './reports.js';
import { logOut, whoAmI } from './session.js';
import { zoneView } from './zone.js';

const main = document.getElementById('main');
const enc = encodeURIComponent;
let view = {}; // the current view's hooks for news: live(sessionRow), queueChanged(), exercise(event), refresh()
let me; // who is logged in, in a classroom lab: { role, student?, class }
let keysHere = false; // whether this instance makes students' DKIM keys (the sender)
let exercisesHere = false; // whether this instance checks the class's exercises (the receiver)
let events; // the event stream
let out = false; // logged out: the login screen is shown, no view loads

async function route() {
  if (out) return;
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
    else if (kind === 'reports') view = await reportsView(section);
    else if (me && kind === 'zone') await zoneView(section, rest[0], me);
    else if (me && kind === 'keys') await keysView(section, rest[0], me);
    else if (me && kind === 'class') await classView(section, keysHere);
    else if (exercisesHere && kind === 'exercises') view = await exercisesView(section, rest, me);
    else view = sessionsView(section, kind === 'sessions' ? rest[0] : '');
  } catch (error) {
    if (me && error.status === 401) return loggedOut('Your login has ended (logged out elsewhere, expired after 12 hours, or the MTA restarted): log in again.');
    section.append(errorBox(error));
  }
}

function markCurrent() {
  const here = location.hash || '#/sessions';
  for (const link of document.querySelectorAll('#nav a')) {
    const href = link.getAttribute('href');
    const current = here === href || here.startsWith(`${href}/`);
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

// The Reports link, where the mailboxes hold any DMARC report.
async function loadReportsLink() {
  const reports = await getJson('/api/reports').catch(() => []);
  document.getElementById('reports-link').hidden = reports.length === 0;
  document.getElementById('reports-count').textContent = reports.length ? String(reports.length) : '';
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
function listen() {
  events = new EventSource('/api/events');
  events.addEventListener('open', () => {
    setLive(true);
    loadMailboxes();
    loadQueueCount();
    loadReportsLink();
    view.refresh?.();
  });
  events.addEventListener('error', () => {
    setLive(false);
    // A login that ends ends its stream, and the browser's next try is refused (401).
    if (me && events.readyState === EventSource.CLOSED) checkLogin();
  });
  const mailboxesSoon = throttle(loadMailboxes, 500); // a burst of sessions, one look at the counts
  const reportsSoon = throttle(loadReportsLink, 2000);
  events.addEventListener('session', (event) => {
    const row = JSON.parse(event.data);
    view.live?.(row);
    mailboxesSoon();
    if (row.transactions?.some((t) => /^Report Domain:/i.test(t.subject ?? ''))) reportsSoon();
  });
  events.addEventListener('exercise', (event) => view.exercise?.(JSON.parse(event.data)));
  events.addEventListener('queue', (event) => {
    loadQueueCount(JSON.parse(event.data).entries);
    view.queueChanged?.();
  });
}

// The console for whoever is logged in (no one, without a class).
async function begin(loggedIn) {
  me = loggedIn;
  if (me) {
    // Only the sender has the keys route; elsewhere it is 404. A HEAD, so
    // that the teacher's probe does not fetch every student's keys.
    // The exercises, at the receiver only: a GET, which every other instance answers 404.
    [keysHere, exercisesHere] = await Promise.all([fetch('/api/classroom/dkim', { method: 'HEAD' }), fetch('/api/exercises')].map(async (answer) => (await answer).status !== 404));
    showWho();
  }
  listen();
  window.addEventListener('hashchange', route);
  route();
}

// Who is logged in, a way out, and their part of the classroom in the nav.
function showWho() {
  const student = me.student;
  document.getElementById('who').replaceChildren(
    h('span', {}, 'Logged in as ', h('strong', {}, student ? student.name : 'teacher'), student ? ` (${student.domain})` : '', h('span', { class: 'muted' }, ` · ${me.class}`)),
    h('button', { type: 'button', onclick: leave }, 'Log out'),
  );
  const links = student
    ? [['#/zone', 'My zone'], keysHere && ['#/keys', 'DKIM keys'], exercisesHere && ['#/exercises', 'Exercises']]
    : [['#/class', 'Class'], ['#/zone', 'Zones'], keysHere && ['#/keys', 'DKIM keys'], exercisesHere && ['#/exercises', 'Exercises']];
  document.getElementById('classroom').replaceChildren(
    h('h2', {}, 'Classroom'),
    h('ul', {}, links.filter(Boolean).map(([href, text]) => h('li', {}, h('a', { href }, text)))),
  );
}

async function leave() {
  try {
    await logOut();
  } catch (error) {
    if (error.status !== 401) return document.getElementById('who').append(errorBox(error)); // a login that has ended already is out
  }
  loggedOut('You are logged out.');
}

async function checkLogin() {
  getJson('/api/health').then(({ instance, hostname }) => {
  document.getElementById('instance').textContent = instance;
  document.getElementById('hostname').textContent = hostname;
  document.title = `${instance} · mail-lab console`;
}, () => undefined);
const who = await whoAmI().catch(() => undefined);
  if (who?.classroom && !who.me) loggedOut('Your login has ended (logged out elsewhere, expired after 12 hours, or the MTA restarted): log in again.');
}

// Nothing of the last login stays on the page; the next login starts afresh.
function loggedOut(notice) {
  out = true;
  events?.close();
  history.replaceState(null, '', location.pathname); // the next one starts at the start
  document.getElementById('live').hidden = true;
  for (const id of ['main', 'mailboxes', 'classroom', 'who']) document.getElementById(id).replaceChildren();
  showLogin(() => location.reload(), notice);
}

getJson('/api/health').then(({ instance, hostname }) => {
  document.getElementById('instance').textContent = instance;
  document.getElementById('hostname').textContent = hostname;
  document.title = `${instance} · mail-lab console`;
}, () => undefined);
const who = await whoAmI().catch(() => ({ classroom: false })); // a failure here shows in the views as before
if (who.classroom && !who.me) {
  out = true;
  document.getElementById('live').hidden = true;
  showLogin((login) => {
    out = false;
    document.getElementById('live').hidden = false;
    begin(login);
  });
} else begin(who.me);
