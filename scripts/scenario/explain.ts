// --explain: the story of each message, from the receiving MTA's session
// record: the SMTP exchange, the DNS questions and answers, each verdict and
// its reason, the alignment of the authenticated domains with the From
// domain, the policy and the decision.
import type { Question } from '../../services/lib/resolver.ts';
import { replyText } from '../../services/mta/inbound/decide.ts';
import type { SessionRecord, Transaction } from '../../services/mta/store/sessions.ts';
import { getJson } from '../lab/api.ts';
import { oneWord } from './checks.ts';
import { organizational, type ScenarioResult, type StepResult } from './run.ts';

type Checks = NonNullable<Transaction['checks']>;

export async function explain(result: ScenarioResult): Promise<string> {
  const { scenario } = result;
  const lines = [`== ${scenario.name}: ${scenario.title}`, ...scenario.lesson.split('\n').map((l) => `   ${l}`)];
  for (const step of result.steps) lines.push('', ...(await story(step)));
  if (result.error) lines.push('', `the run broke off: ${result.error}`);
  return lines.join('\n');
}

async function story(r: StepResult): Promise<string[]> {
  const { step, observed, outcome } = r;
  const lines = [`step ${r.number}: ${step.title}`, `  sent: ${r.sent}${r.reply ? `; the answer: ${r.reply.text}` : ''}`];
  if (step.report) return lines;
  if (!step.retryOf) lines.push(`  envelope MAIL FROM:<${step.mailFrom ?? ''}> RCPT TO:${step.to.map((t) => `<${t}>`).join(',')}; Message-ID ${r.messageId}`);
  if (!observed) {
    lines.push(`  no decision at the receiver: ${outcome.refusal ? `refused before DATA: ${outcome.refusal.text}` : outcome.missing}`);
    return lines;
  }
  // Read again: the last replies are written to the record after the decision.
  const session = await getJson<SessionRecord>(`${observed.mta.api}api/sessions/${encodeURIComponent(observed.session.id)}`).catch(() => observed.session);
  const t = session.transactions.find((x) => x.at === observed.transaction.at) ?? observed.transaction;
  const { client } = session;
  lines.push(
    `  at ${observed.mta.name} (${observed.mta.instance.hostname}): a session from ${client.address} (${client.hostname ?? 'no reverse name'}, HELO ${client.helo ?? '?'})${session.tls ? `, ${session.tls.protocol}` : ''}`,
    ...transcript(session, t).map((l) => `    ${l}`),
  );
  if (t.dns.length > 0) lines.push('  DNS questions asked by its checks:', ...t.dns.map((q) => `    ${question(q)}`));
  const c = t.checks;
  if (c) {
    lines.push(
      '  verdicts:',
      ...(c.author ? [`    From   ${(c.author.problem ? 'unclear' : 'clear').padEnd(9)} ${c.author.problem ?? `one field, one mailbox: ${c.author.mailboxes[0]}`}`] : []),
      `    SPF    ${c.spf.result.padEnd(9)} ${c.spf.domain ?? '-'}: ${c.spf.reason}`,
      ...c.dkim.map((d) => `    DKIM   ${d.result.padEnd(9)} ${d.domain ? `d=${d.domain} s=${d.selector} ${d.algorithm}: ` : ''}${d.reason}`),
      `    DMARC  ${c.dmarc.result.padEnd(9)} ${c.dmarc.reason}`,
      `    ARC    ${c.arc.result.padEnd(9)} ${c.arc.instances ? `${c.arc.instances} instance(s), sealed by ${c.arc.sealer}${c.arc.sealerSaw ? ` who saw dmarc=${c.arc.sealerSaw.dmarc}` : ''}: ` : ''}${c.arc.reason}`,
      ...alignment(c),
      `  policy: ${policy(c.dmarc)}`,
    );
  }
  const d = t.decision;
  const code = 'code' in d && d.code ? ` ${d.code} ${d.enhanced}` : '';
  const folder = t.deliveries.find((x) => x.mailbox === step.observe)?.folder;
  lines.push(`  decision: ${d.disposition}${code}${folder ? ` -> ${folder}` : ''}: ${d.reason}`);
  if ('arcOverride' in d && d.arcOverride) lines.push(`  ARC override: ${d.arcOverride}`);
  if ('arcDeclined' in d && d.arcDeclined) lines.push(`  ARC override not granted: ${d.arcDeclined}`);
  if (c) lines.push(`  in short: spf=${c.spf.result} dkim=${oneWord(c.dkim)} dmarc=${c.dmarc.result}${c.arc.instances ? ` arc=${c.arc.result}` : ''}`);
  return lines;
}

// The commands and replies of this transaction: from its MAIL FROM to the reply to its DATA.
function transcript(session: SessionRecord, t: Transaction): string[] {
  const lines = session.transcript;
  const start = lines.findLastIndex((l) => l.at <= t.at && l.line.startsWith('C: MAIL FROM'));
  if (start === -1) return [];
  const data = lines.findIndex((l, i) => i > start && l.line.startsWith('S: 354'));
  const end = data === -1 ? -1 : lines.findIndex((l, i) => i > data && l.line.startsWith('S: '));
  const shown = lines.slice(start, data === -1 ? undefined : data + 1).map((l) => l.line);
  // The record gets the last reply when the session ends, and the sending
  // MTA may keep its connection open for the next message.
  const reply = end === -1 ? `S: ${finalReply(t)}   (from the decision: the session is still open)` : lines[end].line;
  return [...shown, `C: <the message, ${t.message?.size ?? '?'} bytes>`, reply];
}

function finalReply(t: Transaction): string {
  const d = t.decision;
  if ('code' in d && d.code) return d.disposition === 'refused' ? `${d.code} ${d.enhanced} ${d.reason}` : `${d.code} ${replyText(d)}`;
  return `250 accepted (${t.forwarded?.length ? 'forwarded' : t.deliveries.map((x) => x.folder).join(', ')})`;
}

function question(q: Question): string {
  const text = (a: string) => (a.length > 90 ? `${a.slice(0, 70)}...(${a.length} characters)` : a); // keys are long
  const answer = q.error ?? (q.answer ?? []).map((a) => (typeof a === 'string' ? a : Array.isArray(a) ? `"${text(a.join(''))}"` : `${a.priority} ${a.exchange}`)).join(' | ');
  const when = q.cached ? 'from the cache' : `${q.ms} ms`;
  return `${q.name} ${q.type} -> ${answer} (${when}${q.ttl !== undefined ? `, ttl ${q.ttl}` : ''})`;
}

function policy(dmarc: Checks['dmarc']): string {
  if (dmarc.result === 'temperror') return 'unknown: the DMARC record could not be read';
  if (!dmarc.record) return "none published: the receiver's local policy decides";
  return `${dmarc.policy ?? 'none'}${dmarc.testMode ? ` (p=${dmarc.published} with t=y)` : ''}, from "${dmarc.record}"`;
}

// Which authenticated domains line up with the From domain, under the
// record's alignment modes (adkim=, aspf=; relaxed unless s).
function alignment({ spf, dkim, dmarc }: Checks): string[] {
  const from = dmarc.fromDomain;
  if (!from || !dmarc.record) return [];
  const mode = (tag: string) => (new RegExp(`\\b${tag}=s\\b`, 'i').test(dmarc.record!) ? 'strict' : 'relaxed');
  // "aligned (relaxed: sender.test = sender.test)", and whether it counts.
  const judge = (domain: string, result: string, how: string) => {
    const same = how === 'strict' ? domain === from : organizational(domain) === organizational(from);
    const [a, b] = how === 'strict' ? [domain, from] : [organizational(domain), organizational(from)];
    const verdict = `${same ? 'aligned' : 'not aligned'} (${how}: ${a} ${same ? '=' : '!='} ${b})`;
    return same ? `${verdict}, ${result === 'pass' ? 'and passed: counts for DMARC' : 'but did not pass'}` : verdict;
  };
  const lines = [`  alignment with the From domain ${from} (aspf=${mode('aspf')}, adkim=${mode('adkim')}):`];
  lines.push(spf.domain ? `    SPF  ${spf.domain} ${spf.result}: ${judge(spf.domain, spf.result, mode('aspf'))}` : '    SPF  no domain checked');
  for (const d of dkim) lines.push(d.domain ? `    DKIM d=${d.domain} ${d.result}: ${judge(d.domain, d.result, mode('adkim'))}` : '    DKIM no signature');
  return lines;
}
