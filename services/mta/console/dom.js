// Small helpers for building the console's pages. Everything that comes from
// mail or the network goes into the page as text nodes or attribute values,
// never as markup: h() has no way to insert HTML. Bidi controls in that text
// are shown as marks, never obeyed (below).

import { decodeWords } from './mime.js';

// h('a', { href: '#/x', class: 'y' }, 'text', child, [more]) -> an element.
// Attributes whose value is null, undefined or false are left out; "on*"
// functions become event listeners.
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? '' : name === 'title' ? marked(String(value)) : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else if (child instanceof Node) element.append(child);
    else element.append(...visible(String(child)));
  }
}

// Bidi controls (embeddings, overrides, isolates, LRM/RLM, ALM): in mail they
// can reorder what a reader sees, e.g. make "exe.pdf" look like "fdp.exe" or a
// reason read backwards. The console shows each as a mark, ⟨U+202E⟩, and never
// lets it act (issue 13).
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const BIDI_NAMES = {
  0x061c: 'ARABIC LETTER MARK',
  0x200e: 'LEFT-TO-RIGHT MARK',
  0x200f: 'RIGHT-TO-LEFT MARK',
  0x202a: 'LEFT-TO-RIGHT EMBEDDING',
  0x202b: 'RIGHT-TO-LEFT EMBEDDING',
  0x202c: 'POP DIRECTIONAL FORMATTING',
  0x202d: 'LEFT-TO-RIGHT OVERRIDE',
  0x202e: 'RIGHT-TO-LEFT OVERRIDE',
  0x2066: 'LEFT-TO-RIGHT ISOLATE',
  0x2067: 'RIGHT-TO-LEFT ISOLATE',
  0x2068: 'FIRST STRONG ISOLATE',
  0x2069: 'POP DIRECTIONAL ISOLATE',
};
const mark = (c) => `⟨U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}⟩`;

// Text for an attribute: each bidi control as its mark.
export const marked = (text) => text.replace(BIDI, mark);

// Text for the page: strings between the controls, and each control as a
// highlighted mark that names it on hover.
function visible(text) {
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(BIDI)) {
    parts.push(text.slice(last, match.index), h('span', { class: 'bidi', title: `${BIDI_NAMES[match[0].codePointAt(0)]}: a control that reorders text, shown and not obeyed` }, mark(match[0])));
    last = match.index + 1;
  }
  parts.push(text.slice(last));
  return parts.filter((p) => p !== '');
}

// A header value from mail (Subject, From, To) as a reader wants it: RFC 2047
// encoded words decoded, the raw value on hover; `none` when there is none.
export function headerText(raw, none) {
  if (!raw) return none;
  const text = decodeWords(raw);
  return text === raw ? raw : h('span', { class: 'decoded', title: `As sent: ${raw}` }, text);
}

export async function getJson(path) {
  const response = await fetch(path, { headers: { accept: 'application/json' } });
  const body = await response.json().catch(() => undefined);
  if (!response.ok) throw Object.assign(new Error(body?.error ?? `${path}: HTTP ${response.status}`), { status: response.status });
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
