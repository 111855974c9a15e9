// Small helpers for building the console's pages. Everything that comes from
// mail or the network goes into the page as text nodes or attribute values,
// never as markup: h() has no way to insert HTML.

// h('a', { href: '#/x', class: 'y' }, 'text', child, [more]) -> an element.
// Attributes whose value is null, undefined or false are left out; "on*"
// functions become event listeners.
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : String(child));
  }
}

export async function getJson(path) {
  const response = await fetch(path, { headers: { accept: 'application/json' } });
  const body = await response.json().catch(() => undefined);
  if (!response.ok) throw new Error(body?.error ?? `${path}: HTTP ${response.status}`);
  return body;
}

export async function getText(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.text();
}

// fn at most once per `ms`: a burst of calls becomes one call at its end.
export function throttle(fn, ms) {
  let timer;
  return () => {
    timer ??= setTimeout(() => {
      timer = undefined;
      fn();
    }, ms);
  };
}

export function errorBox(error) {
  return h('p', { class: 'error', role: 'alert' }, '⚠ ', error instanceof Error ? error.message : String(error));
}

// "14:55:38" today, "28 Nov 14:55" before; the full time on hover.
export function time(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  const today = date.toDateString() === new Date().toDateString();
  const text = today
    ? date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false })
    : date.toLocaleString(undefined, { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', hour12: false });
  return h('time', { datetime: iso, title: iso }, text);
}

// "+0.071 s" after a start time.
export function offset(iso, start) {
  return `+${((Date.parse(iso) - Date.parse(start)) / 1000).toFixed(3)} s`;
}

export function bytes(n) {
  if (n === undefined) return '';
  return n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KB` : `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// Check results in four kinds, each with its colour AND its own symbol and
// words, so that nothing depends on telling colours apart.
const KINDS = {
  pass: ['good', '✓'],
  fail: ['bad', '✗'],
  permerror: ['bad', '✗'],
  softfail: ['warn', '~'],
  neutral: ['warn', '~'],
  policy: ['warn', '~'],
  temperror: ['warn', '!'],
  none: ['plain', '–'],
};

// A badge: colour (kind: good, bad, warn, plain), a symbol, and words.
export function badge(kind, symbol, text, title) {
  return h('span', { class: `badge ${kind}`, title }, h('span', { 'aria-hidden': 'true' }, symbol), ` ${text}`);
}

export function checkBadge(check, result = 'none') {
  const [kind, symbol] = KINDS[result] ?? ['plain', '?'];
  return badge(kind, symbol, `${check} ${result}`, `${check}: ${result}`);
}

export function verdictBadges(verdicts) {
  if (!verdicts) return h('span', { class: 'muted' }, 'not checked');
  return h('span', { class: 'badges' }, checkBadge('SPF', verdicts.spf), checkBadge('DKIM', verdicts.dkim), checkBadge('DMARC', verdicts.dmarc), checkBadge('ARC', verdicts.arc));
}

const FATES = {
  inbox: ['good', '✓', 'Inbox'],
  junk: ['warn', '⚠', 'Junk'],
  reject: ['bad', '✗', 'Rejected'],
  defer: ['warn', '⟳', 'Deferred'],
  refused: ['bad', '✗', 'Refused'],
};

// The fate of a message: "✗ Rejected 550 5.7.1".
export function fateBadge(row) {
  const [kind, symbol, word] = FATES[row.disposition] ?? ['plain', '?', row.disposition];
  const code = row.code ? ` ${row.code}${row.enhanced ? ` ${row.enhanced}` : ''}` : '';
  return badge(`${kind} fate`, symbol, `${word}${code}`, row.reason);
}

// A session the MTA closed at start, found open after a crash or kill.
export function interruptedBadge(session) {
  if (!session.interrupted) return null;
  return badge('warn', '↯', 'interrupted', session.interrupted.reason);
}

// A "load older" button under a paged list; calls more(next) and hides when done.
export function moreButton(page, more) {
  if (!page.next) return null;
  const button = h('button', { type: 'button', class: 'more' }, 'Older');
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await more(page.next);
      button.remove();
    } catch (error) {
      button.replaceWith(errorBox(error));
    }
  });
  return button;
}
