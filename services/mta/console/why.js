// Why a message met its fate, told top to bottom as the lesson goes: the SMTP
// conversation, the DNS questions the checks asked, each check and its
// reason, the alignment of the authenticated domains with the From domain,
// the policy, and the decision. Used by the message view and the session view.
import { badge, checkBadge, fateBadge, h, offset, time } from './dom.js';
import { decodeWords } from './mime.js';

const enc = encodeURIComponent;

// A transcript as C:/S: lines. The message data itself is not in the
// transcript (smtp-server notes "<N bytes of DATA>" once it is over); a line
// after the 354 says what was sent.
export function conversation(record, current) {
  const list = h('ol', { class: 'transcript' });
  let data = 0; // the n-th 354 reply opens the n-th transaction's data
  for (const entry of record.transcript) {
    if (/^C: <\d+ bytes of DATA>$/.test(entry.line)) continue;
    const who = entry.line.slice(0, 1);
    for (const line of entry.line.slice(3).split(/\r?\n/)) {
      list.append(h('li', { class: who === 'C' ? 'client' : 'server' }, h('span', { class: 'at' }, offset(entry.at, record.startedAt)), h('span', { class: 'who' }, `${who}:`), h('code', {}, line)));
    }
    if (who === 'S' && entry.line.startsWith('S: 354')) {
      const t = record.transactions[data++];
      const text = t?.message ? `(the message: ${t.message.size.toLocaleString()} bytes${t.message.subject ? `, “${decodeWords(t.message.subject)}”` : ''}, then a line with a single dot)` : '(the message data)';
      list.append(h('li', { class: `client data${t && t === current ? ' current' : ''}` }, h('span', { class: 'at' }), h('span', { class: 'who' }, 'C:'), h('em', {}, text)));
    }
  }
  const client = record.client;
  return section(
    '1',
    'The SMTP conversation',
    h(
      'p',
      {},
      `${client.address} connected at `,
      time(record.startedAt),
      client.hostname ? ` (its PTR name: ${client.hostname})` : ' (no PTR name)',
      client.helo ? `, introduced itself as ${client.helo}` : '',
      record.tls ? `, and switched to ${record.tls.protocol ?? 'TLS'} (${record.tls.cipher ?? ''}).` : ', without TLS.',
      ' C: is the client, S: this server.',
    ),
    list,
    record.endedAt ? null : h('p', { class: 'muted small' }, 'The session is still open: its last lines are recorded when it ends.'),
  );
}

export const DNS_ERRORS = {
  ENOTFOUND: 'NXDOMAIN: no such name',
  ENODATA: 'NODATA: the name has no record of this type',
  ESERVFAIL: 'SERVFAIL: the server failed to answer',
  ETIMEOUT: 'no answer in time',
  EREFUSED: 'REFUSED',
  ECONNREFUSED: 'no DNS server there',
};

export function answerText(answer) {
  if (Array.isArray(answer)) return answer.join(''); // a TXT record's strings, read as one
  if (typeof answer === 'object' && answer) return `${answer.priority} ${answer.exchange}`;
  return String(answer);
}

export function dnsQuestions(t) {
  if (t.dns.length === 0) return section('2', 'DNS questions', h('p', { class: 'muted' }, 'The checks asked nothing.'));
  const start = t.dns[0].at;
  const rows = t.dns.map((q, i) =>
    h(
      'tr',
      {},
      h('td', { class: 'number' }, i + 1),
      h('td', { class: 'nowrap' }, offset(q.at, start)),
      h('td', { class: 'nowrap' }, h('code', {}, q.name), ' ', h('span', { class: 'rrtype' }, q.type)),
      h(
        'td',
        { class: 'answer' },
        q.error ? badge(q.error === 'ENOTFOUND' || q.error === 'ENODATA' ? 'plain' : 'bad', '–', DNS_ERRORS[q.error] ?? q.error, q.error) : (q.answer ?? []).map((a) => h('div', {}, h('code', {}, answerText(a)))),
      ),
      h('td', { class: 'nowrap' }, q.cached ? badge('plain', '↺', 'cached') : `${q.ms} ms`, q.ttl !== undefined ? h('div', { class: 'muted small' }, `TTL ${q.ttl} s`) : ''),
    ),
  );
  return section(
    '2',
    'DNS questions, in the order they were asked',
    h('p', {}, `The checks asked the lab DNS ${t.dns.length} question${t.dns.length === 1 ? '' : 's'}; an answer still valid from an earlier message came from the cache.`),
    h('div', { class: 'scroll' }, h('table', { class: 'list dns' }, h('thead', {}, h('tr', {}, ['#', 'When', 'Question', 'Answer', 'Took'].map((x) => h('th', { scope: 'col' }, x)))), h('tbody', {}, rows))),
  );
}

// The author check before DMARC: one From field, one mailbox, read one way.
function author(a) {
  if (!a) return null; // a record from before the check
  const question = 'Is the author clear: exactly one From field with one mailbox?';
  if (a.problem) return check(checkBadge('From', 'fail'), question, a.problem);
  return check(checkBadge('From', 'pass'), question, `One From field, one mailbox: ${a.mailboxes[0]}; DMARC judges ${a.domain}, the domain the reader sees.`);
}

export function checks(t) {
  const { spf, dkim, arc } = t.checks;
  const mailFrom = t.envelope.mailFrom;
  return section(
    '3',
    'The checks',
    author(t.checks.author),
    check(
      checkBadge('SPF', spf.result),
      `May ${t.envelope.mailFrom ? 'the MAIL FROM domain' : 'the HELO name (MAIL FROM was empty)'} ${spf.domain ?? ''} send from this address?`,
      spf.reason,
      spf.record && h('div', {}, 'Record: ', h('code', {}, spf.record)),
      mailFrom && h('div', { class: 'muted small' }, `MAIL FROM: <${mailFrom}>`),
    ),
    signatures(dkim).length === 0
      ? check(checkBadge('DKIM', dkim[0]?.result ?? 'none'), 'Is the message signed?', dkim[0]?.reason ?? 'No DKIM-Signature: nothing to verify.')
      : signatures(dkim).map((d) => check(checkBadge('DKIM', d.result), `Signature by d=${d.domain}, selector s=${d.selector}, ${d.algorithm}`, d.reason)),
    check(
      checkBadge('ARC', arc.result),
      arc.instances ? `An ARC chain of ${arc.instances} hop${arc.instances === 1 ? '' : 's'}${arc.sealer ? `, last sealed by ${arc.sealer}` : ''}` : 'Did a forwarder vouch for what it saw?',
      arc.reason,
      arc.sealerSaw && h('div', {}, `The sealer saw: DMARC ${arc.sealerSaw.dmarc ?? '?'}, SPF ${arc.sealerSaw.spf ?? '?'}, DKIM ${arc.sealerSaw.dkim || '?'}`),
      arc.delivery && h('div', {}, `Delivered by the sealer itself? ${arc.delivery.bySealer ? 'Yes' : 'No'}: ${arc.delivery.reason}`),
    ),
  );
}

// The DKIM results that are signatures (an unsigned message has one result, "none", without a domain).
const signatures = (dkim) => dkim.filter((d) => d.domain);

function check(badgeElement, question, reason, ...more) {
  return h('div', { class: 'check' }, h('div', { class: 'check-head' }, badgeElement, h('strong', {}, question)), h('div', {}, reason), more);
}

// adkim=s / aspf=s in a DMARC record; relaxed when absent.
function mode(record, tag) {
  const value = new RegExp(`(?:^|;)\\s*${tag}\\s*=\\s*([a-z])`, 'i').exec(record ?? '')?.[1];
  return value?.toLowerCase() === 's' ? 'strict' : 'relaxed';
}

function comparison(domain, from, how, aligned) {
  if (!domain || !from) return 'nothing to compare';
  if (domain.toLowerCase() === from.toLowerCase()) return `${domain} = ${from}: identical`;
  if (aligned === undefined) return `${domain} vs ${from}: not compared`;
  if (aligned) return `${domain} and ${from}: the same organizational domain, which relaxed alignment accepts`;
  return how === 'strict' ? `${domain} ≠ ${from}: strict alignment needs them identical` : `${domain} and ${from}: different organizational domains`;
}

export function alignment(t) {
  const { spf, dkim, dmarc } = t.checks;
  const from = dmarc.fromDomain;
  const spfMode = mode(dmarc.record, 'aspf');
  const dkimMode = mode(dmarc.record, 'adkim');
  // Without a DMARC verdict (no record, or a DNS failure) nobody compared.
  const evaluated = dmarc.result === 'pass' || dmarc.result === 'fail';
  const spfPassed = spf.result === 'pass';
  // mailauth compares only a passing SPF domain; DKIM signatures each carry their own flag.
  const spfAligned = evaluated && spfPassed ? (dmarc.alignedBy ?? []).includes('spf') : undefined;
  const dkimAligned = (d) => (evaluated ? d.aligned : undefined);
  const verdict = (passed, aligned) => {
    if (!evaluated) return badge('plain', '–', 'not evaluated');
    if (aligned === undefined) return badge('plain', '–', 'does not count: the check did not pass');
    if (!aligned) return badge('bad', '✗', 'not aligned');
    return passed ? badge('good', '✓', 'aligned and passing') : badge('warn', '~', 'aligned, but the check failed');
  };
  const rows = [
    h('tr', {}, h('th', { scope: 'row' }, 'From: header (what the reader sees)'), h('td', { class: 'nowrap' }, h('code', {}, from ?? '?')), h('td', {}), h('td', {}), h('td', {})),
    h(
      'tr',
      {},
      h('th', { scope: 'row' }, 'SPF: the MAIL FROM domain'),
      h('td', { class: 'nowrap' }, h('code', {}, spf.domain ?? '–')),
      h('td', {}, checkBadge('SPF', spf.result)),
      h('td', {}, `${spfMode} (aspf): `, comparison(spf.domain, from, spfMode, spfAligned)),
      h('td', {}, verdict(spfPassed, spfAligned)),
    ),
    signatures(dkim).length === 0
      ? h('tr', {}, h('th', { scope: 'row' }, 'DKIM: d= of a signature'), h('td', {}, '–'), h('td', {}, checkBadge('DKIM', 'none')), h('td', {}, 'no signature, nothing to compare'), h('td', {}, verdict(false, undefined)))
      : null,
    signatures(dkim).map((d) =>
      h(
        'tr',
        {},
        h('th', { scope: 'row' }, `DKIM: d= of the ${d.selector} signature`),
        h('td', { class: 'nowrap' }, h('code', {}, d.domain)),
        h('td', {}, checkBadge('DKIM', d.result)),
        h('td', {}, `${dkimMode} (adkim): `, comparison(d.domain, from, dkimMode, dkimAligned(d))),
        h('td', {}, verdict(d.result === 'pass', dkimAligned(d))),
      ),
    ),
  ];
  return section(
    '4',
    'DMARC: does an authenticated domain match the From domain?',
    h('p', {}, 'DMARC passes when SPF or DKIM passes for a domain aligned with the From domain: identical under strict alignment, the same organizational domain under relaxed.'),
    evaluated ? null : h('p', {}, `Here DMARC was not evaluated (${dmarc.reason.replace(/^not evaluated: /, '')}), so alignment decides nothing.`),
    h('div', { class: 'scroll' }, h('table', { class: 'list alignment' }, h('thead', {}, h('tr', {}, ['Identifier', 'Domain', 'Check', 'Compared with the From domain', 'Counts for DMARC?'].map((x) => h('th', { scope: 'col' }, x)))), h('tbody', {}, rows))),
    check(checkBadge('DMARC', dmarc.result), `DMARC for ${from ?? 'the From domain'}`, dmarc.reason, dmarc.record && h('div', {}, 'Record: ', h('code', {}, dmarc.record))),
  );
}

export function decision(t, record) {
  const { dmarc } = t.checks ?? { dmarc: undefined };
  const d = t.decision;
  const policy = [];
  if (dmarc?.policy) {
    policy.push(h('li', {}, `DMARC policy published: p=${dmarc.published}${dmarc.testMode ? ' with t=y (testing)' : ''}.`));
    const why = dmarc.policy === dmarc.published ? '' : ' (sp= applies to subdomains, np= to names that do not exist, t=y makes a policy one step milder)';
    policy.push(h('li', {}, `Policy applied to ${dmarc.fromDomain}: ${dmarc.policy}${why}.`));
  } else if (dmarc && !t.checks.author?.problem) {
    policy.push(h('li', {}, 'No DMARC policy applies: the local policy of this instance decides, on SPF alone.'));
  }
  if (t.checks?.author?.problem) policy.push(h('li', {}, `The author is unclear, which this instance's local policy (ambiguousFrom) decides on before DMARC.`));
  if (d.arcOverride) policy.push(h('li', {}, `ARC override granted: ${d.arcOverride}.`));
  if (d.arcDeclined) policy.push(h('li', {}, `ARC override not granted: ${d.arcDeclined}.`));
  if (d.rule) policy.push(h('li', {}, 'Decision path: ', h('code', {}, d.rule), '.'));
  const index = record.transactions.indexOf(t);
  // The reply as sent; until the session's record has it, the code decided on.
  const heard = (index === -1 ? undefined : replyAfterData(record, index)) ?? (d.code ? `${d.code} ${d.enhanced}` : undefined);
  return section(
    '5',
    'Policy and decision',
    policy.length ? h('ul', {}, policy) : null,
    h('div', { class: 'decision' }, fateBadge({ ...d, code: d.code || undefined, enhanced: d.enhanced || undefined }), h('span', {}, d.reason)),
    t.deliveries.length
      ? h('p', {}, 'Stored in ', t.deliveries.map((x, i) => [i ? ', ' : '', h('a', { href: `#/message/${enc(x.id)}` }, `${x.mailbox} / ${x.folder}`)]), '.')
      : null,
    (t.forwarded ?? []).map((f) =>
      h(
        'p',
        {},
        `Sent on (${f.kind} ${f.address}) to ${f.to.join(', ')}, envelope sender <${f.mailFrom}>, ${f.sealed ? 'ARC-sealed' : 'not ARC-sealed'}: `,
        h('a', { href: '#/queue' }, `queue entry ${f.queueId}`),
        '.',
      ),
    ),
    heard ? h('p', {}, 'The client heard: ', h('code', {}, heard)) : null,
  );
}

// The server's reply to the n-th message's data: the first S: line after its 354.
function replyAfterData(record, n) {
  let seen = -1;
  for (const [i, entry] of record.transcript.entries()) {
    if (!entry.line.startsWith('S: 354') || ++seen !== n) continue;
    return record.transcript.slice(i + 1).find((e) => e.line.startsWith('S: '))?.line.slice(3);
  }
  return undefined;
}

// Sections 2 to 5 for one transaction; a message refused before its checks
// (too big, bare LF) has only the decision.
export function story(t, record) {
  if (!t.checks) return [decision(t, record)];
  return [dnsQuestions(t), checks(t), alignment(t), decision(t, record)];
}

function section(number, title, ...content) {
  return h('section', { class: 'step' }, h('h3', {}, h('span', { class: 'step-number' }, number), title), content);
}
