// The class's exercises (issue 15), at the receiver's console (the instance
// whose /api/exercises answers). A student sees her exercises, each with its
// goal, hints revealed one at a time and a Check the lab runs: it looks up
// her records and sends fresh messages, and shows what it saw (the DNS
// answers, each message's verdicts and the receiver's decision) with a link
// to the why view of each message. The teacher sees a grid of students by
// exercises, updated live by the `exercise` event, and opens any cell for
// that student's result, where a check can be run for her.
//
// Everything a check saw is the student's to shape (her TXT records appear
// in the DNS answers, her subjects in the messages): all of it goes into the
// page as text, through dom.js.
import { badge, checkBadge, errorBox, fateBadge, getJson, h, time } from './dom.js';
import { send } from './session.js';
import { answerText, DNS_ERRORS } from './why.js';

const enc = encodeURIComponent;

// A status in colour, symbol and words; none of the three alone tells it.
const STATUS = {
  pass: ['good', '✓', 'passed'],
  fail: ['bad', '✗', 'failed'],
  error: ['warn', '!', 'error'], // the lab could not check: a DNS timeout, a service down
  unchecked: ['plain', '–', 'not checked'],
  running: ['plain', '⟳', 'checking'],
};

function statusBadge(status, title) {
  const [kind, symbol, words] = STATUS[status] ?? ['plain', '?', status];
  return badge(kind, symbol, words, title);
}

// "11:05", the full time on hover.
function hhmm(iso) {
  const text = new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', hour12: false });
  return h('time', { datetime: iso, title: iso }, text);
}

// An exercise's state in words: passed once, whatever came after; the
// latest check when it says something else.
function stateLine(state) {
  if (!state) return '';
  if (state.running) return statusBadge('running', 'a check is running now');
  if (state.status !== 'pass') return [statusBadge(state.status), state.checkedAt ? [' ', h('span', { class: 'muted small' }, 'at ', hhmm(state.checkedAt))] : ''];
  return [
    statusBadge('pass'),
    ' ',
    h('span', { class: 'small' }, 'passed at ', hhmm(state.passedAt)),
    state.latest && state.latest !== 'pass' ? [' ', h('span', { class: 'muted small' }, 'latest check: '), statusBadge(state.latest)] : '',
  ];
}

// Backquoted words in a goal or a hint (`v=spf1 ...`) as code; the rest as text.
function prose(text) {
  return text.split(/`([^`\n]+)`/).map((part, i) => (i % 2 ? h('code', {}, part) : part));
}

// A goal as the exercise file wraps it: lines joined into paragraphs, a
// blank line between paragraphs, an indented line kept as it is (a record).
function paragraphs(text) {
  const blocks = [];
  for (const line of text.split('\n')) {
    const last = blocks.at(-1);
    if (line.trim() === '') blocks.push(undefined);
    else if (/^\s/.test(line)) blocks.push({ code: line.trim() });
    else if (last?.text !== undefined) last.text += ` ${line}`;
    else blocks.push({ text: line });
  }
  return blocks.filter(Boolean).map((b) => (b.code ? h('pre', { class: 'goal-line' }, b.code) : h('p', {}, prose(b.text))));
}

// #/exercises (a student's list; the teacher's grid), #/exercises/grid,
// #/exercises/ID (a student's exercise; the teacher: its text),
// #/exercises/ID/STUDENT (the teacher: that student's exercise).
export function exercisesView(section, [first, student], me) {
  if (first === 'grid' || (!first && me.role === 'teacher')) return gridView(section);
  if (!first) return listView(section);
  return exerciseView(section, first, me.role === 'teacher' ? student : undefined, me);
}

async function listView(section) {
  const { class: name, exercises } = await getJson('/api/exercises');
  const cells = new Map(); // exercise id -> its state cell
  const rows = exercises.map((x) => {
    const cell = h('td', {}, stateLine(x.state));
    cells.set(x.id, cell);
    const href = `#/exercises/${enc(x.id)}`;
    return h('tr', {}, h('td', { class: 'number' }, x.number), h('td', {}, h('a', { href }, x.title)), h('td', { class: 'nowrap number' }, `${x.minutes} min`), cell);
  });
  section.append(
    h('h2', {}, 'Exercises ', h('span', { class: 'muted' }, name)),
    h('p', { class: 'muted' }, 'The walkthrough, one step an exercise. Open one to read its goal, reveal hints and check it: the lab looks up your records and sends fresh messages, then shows what it saw.'),
    h('div', { class: 'scroll' }, h('table', { class: 'list exercises' }, h('thead', {}, h('tr', {}, ['#', 'Exercise', 'Time', 'Status'].map((t) => h('th', { scope: 'col' }, t)))), h('tbody', {}, rows))),
  );
  return {
    exercise({ exercise, state }) {
      cells.get(exercise)?.replaceChildren(h('span', {}, stateLine(state)));
    },
    refresh: () => getJson('/api/exercises').then((now) => now.exercises.forEach((x) => cells.get(x.id)?.replaceChildren(h('span', {}, stateLine(x.state)))), () => undefined),
  };
}

// One exercise: the student's own, or (the teacher) a student's, or (the
// teacher, no student) its text as every student reads it.
async function exerciseView(section, key, student, me) {
  const query = student ? `?student=${enc(student)}` : '';
  const where = `/api/exercises/${enc(key)}${query}`; // the key in the address: an id, or a number
  const teacher = me.role === 'teacher';
  let detail = await getJson(where);
  const x = detail.exercise;
  const id = x.id; // as the events name it
  const whose = teacher ? student : me.student.name;

  const status = h('span', {});
  const hints = h('ol', { class: 'hints', 'aria-live': 'polite' });
  const hintButton = h('button', { type: 'button', onclick: () => reveal() }, 'Show a hint');
  const hintNote = h('span', { class: 'muted small' });
  const checkButton = h('button', { type: 'button', class: 'check-button', onclick: () => check() }, teacher ? `Check now for ${student}` : 'Check');
  const checking = h('span', { class: 'checking', role: 'status' });
  const results = h('div', { class: 'results' });
  let running = false; // a check of this page's, in flight

  section.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/exercises' }, teacher ? '← The class' : '← Exercises')),
    h('h2', {}, `Exercise ${x.number}: ${x.title}`, whose ? h('span', { class: 'muted' }, ` · ${whose}`) : ''),
    h('p', { class: 'exercise-meta' }, h('span', {}, `About ${x.minutes} minutes`), whose ? [' · ', status] : ''),
    h('h3', {}, 'Goal'),
    h('div', { class: 'goal' }, paragraphs(x.goal)),
    h('h3', {}, 'Hints'),
    hints,
    h('p', { class: 'actions' }, teacher ? '' : hintButton, hintNote),
    h('h3', {}, 'What the lab checks'),
    h('ul', { class: 'check-titles' }, x.checks.map((c) => h('li', {}, c))),
  );
  if (!whose) {
    section.append(h('p', { class: 'muted' }, 'Open a student in the class grid to see their checks and run one.'));
    showHints(x.hints);
    return {};
  }
  section.append(
    h('div', { class: 'actions check-bar' }, checkButton, checking),
    h('p', { class: 'muted small' }, 'A check takes a few seconds: the lab looks up the records and sends fresh messages, then reads what the receiver decided.'),
    results,
  );
  show(detail);

  function show(now) {
    detail = now;
    status.replaceChildren(h('span', {}, stateLine(now.exercise.state)));
    showHints(now.exercise.hints);
    const { latest, passed } = now;
    if (!latest) return results.replaceChildren(h('p', { class: 'muted' }, 'Not checked yet.'));
    const parts = [h('h3', {}, 'Latest check'), resultView(latest)];
    if (passed && passed.checkedAt !== latest.checkedAt) {
      parts.unshift(h('p', { class: 'passed-note' }, statusBadge('pass'), ' Passed at ', hhmm(passed.checkedAt), `: it stays passed. The latest check, below, ${latest.status === 'pass' ? 'passed too' : 'did not pass'}.`));
      parts.push(h('details', { class: 'passed-result' }, h('summary', {}, 'The check that passed it, at ', hhmm(passed.checkedAt)), resultView(passed)));
    }
    results.replaceChildren(...parts);
  }

  function showHints(shown) {
    hints.replaceChildren(...shown.map((hint) => h('li', {}, prose(hint))));
    hints.hidden = shown.length === 0;
    const all = shown.length >= x.hintCount;
    hintButton.disabled = all;
    hintButton.textContent = all ? 'No more hints' : `Show a hint (${shown.length + 1} of ${x.hintCount})`;
    if (teacher) hintNote.replaceChildren(whose ? `${whose} has revealed ${detail.exercise.state?.hintsShown ?? 0} of ${x.hintCount}.` : `${x.hintCount} hints, revealed to a student one at a time.`);
    else hintNote.replaceChildren(shown.length === 0 ? 'None shown yet: the teacher sees how many you reveal.' : '');
  }

  async function reveal() {
    hintButton.disabled = true;
    try {
      const { hints: shown } = await send('POST', `/api/exercises/${enc(id)}/hint`);
      detail.exercise.hints = shown;
      showHints(shown);
      hints.lastElementChild?.setAttribute('tabindex', '-1');
      hints.lastElementChild?.focus();
    } catch (error) {
      hintNote.replaceChildren(h('span', { class: 'error', role: 'alert' }, '⚠ ', error.message));
      hintButton.disabled = false;
    }
  }

  async function check() {
    running = true;
    checkButton.disabled = true;
    const started = Date.now();
    const tick = () => checking.replaceChildren(statusBadge('running'), ` Checking… ${Math.floor((Date.now() - started) / 1000)} s`);
    tick();
    const timer = setInterval(tick, 1000);
    try {
      const result = await send('POST', `/api/exercises/${enc(id)}/check${query}`);
      show(await getJson(where));
      checking.replaceChildren(`Checked in ${((Date.now() - started) / 1000).toFixed(1)} s: ${STATUS[result.status]?.[2] ?? result.status}.`);
    } catch (error) {
      checking.replaceChildren(h('span', { class: 'error', role: 'alert' }, '⚠ ', error.message)); // a 429 says how long to wait
    } finally {
      clearInterval(timer);
      running = false;
      checkButton.disabled = false;
    }
  }

  const reload = () => getJson(where).then(show, () => undefined);
  return {
    // A check run elsewhere (the teacher, another tab) shows here too.
    exercise(event) {
      if (event.exercise !== id || event.student !== whose || running) return;
      status.replaceChildren(h('span', {}, stateLine(event.state)));
      if (!event.state.running && event.state.checkedAt !== detail.latest?.checkedAt) reload();
    },
    refresh: () => !running && reload(),
  };
}

// What one check run found: its outcome, then each check with its reason
// and what it saw.
function resultView(result) {
  return h(
    'div',
    { class: 'result' },
    h('p', { class: 'result-head' }, statusBadge(result.status), ' Checked at ', time(result.checkedAt), ` by ${result.by}, in ${(result.ms / 1000).toFixed(1)} s`),
    h('ol', { class: 'check-results' }, result.checks.map(checkView)),
  );
}

function checkView(c) {
  const { dns, message } = c.saw ?? {};
  return h(
    'li',
    { class: `check is-${c.status}` },
    h('div', { class: 'check-head' }, statusBadge(c.status), h('strong', {}, c.title)),
    h('div', { class: 'reason' }, c.reason),
    dns?.length ? dnsSeen(dns) : '',
    message ? probeView(message) : '',
  );
}

// The DNS answers a check read, as the receiver's resolver gave them.
function dnsSeen(answers) {
  const rows = answers.map((q) =>
    h(
      'tr',
      {},
      h('td', { class: 'nowrap' }, h('code', {}, q.name), ' ', h('span', { class: 'rrtype' }, q.type)),
      h('td', { class: 'answer' }, q.error ? badge(NO_RECORD.includes(q.error) ? 'plain' : 'bad', '–', DNS_ERRORS[q.error] ?? q.error, q.error) : q.answer.length ? q.answer.map((a) => h('div', {}, h('code', {}, answerText(a)))) : h('span', { class: 'muted' }, 'no records')),
    ),
  );
  return h('div', { class: 'scroll' }, h('table', { class: 'list dns seen' }, h('caption', {}, 'DNS answers it read'), h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Question'), h('th', { scope: 'col' }, 'Answer'))), h('tbody', {}, rows)));
}

const NO_RECORD = ['ENOTFOUND', 'ENODATA'];

const PROBES = {
  own: "the student's own mail, submitted at the sender",
  spoof: "the attacker's spoof in the student's name",
  'spoof-nonexistent': "the attacker's spoof from a name that does not exist",
  'spoof-subdomain': "the attacker's spoof from a subdomain",
  lab: 'mail from alice@sender.test to the student',
  alias: 'the student’s own mail through an alias at forwarder.test',
  list: 'the student’s own mail through a mailing list at forwarder.test',
};

// A message the check sent: who sent it, what the receiver decided and why,
// and the way to its why view.
function probeView(m) {
  const why = [
    m.delivery ? h('a', { href: `#/message/${enc(m.delivery.id)}` }, `Why: the message in ${m.delivery.mailbox} / ${m.delivery.folder}`) : '',
    m.session ? h('a', { href: `#/session/${enc(m.session)}` }, m.delivery ? 'its session' : 'Why: its session at the receiver') : '',
  ].filter(Boolean);
  return h(
    'div',
    { class: 'probe' },
    h('p', { class: 'probe-head' }, h('strong', {}, `The message “${m.probe}”`), h('span', { class: 'muted' }, ` · ${PROBES[m.probe] ?? 'a message the check sent'}`)),
    h(
      'dl',
      { class: 'meta' },
      field('Sent by', [m.sentBy, ' at ', time(m.sentAt)]),
      field('From', m.from),
      field('Envelope', `<${m.mailFrom}> → ${m.to}`),
      field('Subject', m.subject),
      field('Message-ID', h('code', {}, m.messageId)),
      m.verdicts ? field('Verdicts', verdicts(m.verdicts)) : '',
      m.decision ? field('Decision', [fateBadge({ disposition: m.decision.disposition, code: m.decision.code, reason: m.decision.reason }), ' ', m.decision.reason]) : '',
      m.undelivered ? field('No decision', h('span', { class: 'error-text' }, m.undelivered)) : '',
    ),
    why.length ? h('p', { class: 'why-links' }, why.map((a, i) => [i ? ' · ' : '', a])) : '',
  );
}

// SPF, each DKIM signature ("pass (d=ana.test), fail (d=x.test)"), DMARC,
// ARC, and the DMARC policy the receiver applied.
function verdicts(v) {
  const dkim = v.dkim.split(', ').map((d) => {
    const [, result, domain] = /^(\S+)(?: \((.*)\))?$/.exec(d) ?? [d, d];
    return checkBadge(domain ? `DKIM ${domain}` : 'DKIM', result);
  });
  return h(
    'span',
    { class: 'badges' },
    checkBadge('SPF', v.spf),
    dkim,
    checkBadge('DMARC', v.dmarc),
    checkBadge('ARC', v.arc),
    v.policy ? h('span', { class: 'small' }, `policy applied: ${v.policy}`) : '',
  );
}

function field(name, value) {
  return [h('dt', {}, name), h('dd', {}, value)];
}

// The teacher's grid: a row a student, a column an exercise; each cell opens
// that student's exercise. Cells change in place as `exercise` events come.
async function gridView(section) {
  let grid;
  try {
    grid = await getJson('/api/exercises/grid');
  } catch (error) {
    if (error.status !== 403) throw error;
    section.append(errorBox(error), h('p', {}, h('a', { href: '#/exercises' }, 'Your exercises')));
    return {};
  }
  const cells = new Map(); // `${student}\n${exercise}` -> td
  const titles = new Map(grid.exercises.map((x) => [x.id, `${x.number} ${x.title}`]));
  const passedCounts = new Map(); // exercise id -> its footer cell

  const cell = (student, exercise, state = { status: 'unchecked', hintsShown: 0 }, changed = false) => {
    const shown = state.running ? 'running' : state.status;
    const [kind, symbol] = STATUS[shown] ?? ['plain', '?'];
    const latestDiffers = state.status === 'pass' && STATUS[state.latest] && state.latest !== 'pass';
    const when = state.status === 'pass' ? `passed at ${hhmmText(state.passedAt)}` : state.checkedAt ? `checked at ${hhmmText(state.checkedAt)}` : '';
    const label = [`${student}, exercise ${titles.get(exercise)}: ${STATUS[shown]?.[2] ?? shown}`, when, latestDiffers && `latest check ${STATUS[state.latest][2]}`, state.hintsShown && `${state.hintsShown} hint${state.hintsShown === 1 ? '' : 's'} shown`].filter(Boolean).join('; ');
    return h(
      'a',
      { class: `cell ${kind}${changed ? ' changed' : ''}`, href: `#/exercises/${enc(exercise)}/${enc(student)}`, 'aria-label': label, title: label },
      h('span', { class: 'cell-status' }, h('span', { 'aria-hidden': 'true' }, symbol), ` ${CELL_WORDS[shown] ?? shown}`),
      // A second line always, empty or not: every cell has the same height.
      h('span', { class: 'cell-more' }, [latestDiffers && `latest ${STATUS[state.latest][1]}`, state.hintsShown && `${state.hintsShown}h`].filter(Boolean).join(' · ') || ' '),
    );
  };

  const rows = grid.students.map((s) =>
    h(
      'tr',
      {},
      h('th', { scope: 'row' }, s.name, h('div', { class: 'muted small' }, s.domain)),
      grid.exercises.map((x) => {
        const td = h('td', {}, cell(s.name, x.id, s.cells[x.id]));
        cells.set(`${s.name}\n${x.id}`, td);
        return td;
      }),
    ),
  );
  const counts = () => {
    for (const x of grid.exercises) {
      const passed = grid.students.filter((s) => s.cells[x.id]?.status === 'pass').length;
      passedCounts.get(x.id).replaceChildren(`${passed}/${grid.students.length}`);
    }
  };
  const foot = h(
    'tr',
    {},
    h('th', { scope: 'row' }, 'Passed'),
    grid.exercises.map((x) => {
      const td = h('td', { class: 'number' });
      passedCounts.set(x.id, td);
      return td;
    }),
  );
  section.append(
    h('h2', {}, 'Exercises ', h('span', { class: 'muted' }, grid.class)),
    h('p', { class: 'muted' }, `${grid.students.length} student${grid.students.length === 1 ? '' : 's'} by ${grid.exercises.length} exercises, updated as checks run. Open a cell for that student's result, or to check it now; a column's number for the exercise's text.`),
    h(
      'p',
      { class: 'legend small' },
      ['pass', 'fail', 'error', 'unchecked', 'running'].map((s) => [statusBadge(s), ' ']),
      h('span', { class: 'muted' }, '“latest ✗”: passed before, the latest check failed; “2h”: two hints shown.'),
    ),
    h(
      'div',
      { class: 'scroll' },
      h(
        'table',
        { class: 'list grid' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Student'), grid.exercises.map((x) => h('th', { scope: 'col', title: `${x.number} ${x.title}` }, h('a', { href: `#/exercises/${enc(x.id)}`, 'aria-label': `Exercise ${x.number}: ${x.title}` }, String(x.number)), h('div', { class: 'small muted col-title' }, x.title))))),
        h('tbody', {}, rows),
        h('tfoot', {}, foot),
      ),
    ),
  );
  counts();

  const put = (student, exercise, state) => {
    const td = cells.get(`${student}\n${exercise}`);
    if (!td) return;
    const s = grid.students.find((x) => x.name === student);
    s.cells[exercise] = state;
    td.replaceChildren(cell(student, exercise, state, true)); // a new element: its highlight starts afresh
    counts();
  };
  return {
    exercise: ({ student, exercise, state }) => put(student, exercise, state),
    // After the stream was down: the whole grid again, cell by cell.
    refresh: () =>
      getJson('/api/exercises/grid').then((now) => {
        for (const s of now.students) for (const x of now.exercises) if (JSON.stringify(s.cells[x.id]) !== JSON.stringify(grid.students.find((g) => g.name === s.name)?.cells[x.id])) put(s.name, x.id, s.cells[x.id]);
      }, () => undefined),
  };
}

// A cell's own words, short; its label says it in full.
const CELL_WORDS = { pass: 'pass', fail: 'fail', error: 'error', unchecked: '', running: 'running' };

const hhmmText = (iso) => new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', hour12: false });
