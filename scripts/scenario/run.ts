// Running scenarios: each step sends its message (or waits for a retry),
// finds the decision at the recipient's MTA and checks it. Scenarios run at
// the same time, except those whose DNS changes touch names another one
// uses: those wait for each other.
import { splitMailbox } from '../../services/mta/store/maildir.ts';
import type { QueueEntry } from '../../services/mta/outbound/queue.ts';
import { credentialHeader, getJson } from '../lab/api.ts';
import type { Sent } from '../../services/mta/reports/reporter.ts';
import { LabError } from '../lab/errors.ts';
import { compare, compareFailureReport, compareReport, type Check, type Outcome } from './checks.ts';
import { findMx, ScenarioDns } from './dns.ts';
import type { Mta, Target } from './lab.ts';
import { compose, forReplay, newMessageId, sign, tamper } from './message.ts';
import { decisionAt, rawCopy, storedCopy, type Observed } from './observe.ts';
import type { Scenario, Step } from './schema.ts';
import { smtpSend, type Envelope, type Reply } from './smtp.ts';

export interface StepResult {
  number: number;
  step: Step;
  messageId?: string;
  sent: string; // how it was sent, in words
  reply?: Reply; // what the runner heard when it handed the message over
  observed?: Observed;
  outcome: Outcome;
  checks: Check[];
  ms: number;
}

export interface ScenarioResult {
  scenario: Scenario;
  passed: boolean;
  ms: number;
  steps: StepResult[];
  error?: string; // the run broke off: the lab misbehaved or was unreachable
  quietAt: number; // when no resolver holds its DNS changes any more
}

const STEP_TIMEOUT_MS = 20_000; // a retry comes after 2 s, a forwarded copy within one
const CONCURRENCY = 16;

// The results in the order given, and when the last DNS change of the run
// will have left every resolver.
export async function runAll(scenarios: Scenario[], target: Target, done: (r: ScenarioResult) => void = () => undefined) {
  const results = new Map<Scenario, ScenarioResult>();
  const running = new Set<Scenario>();
  const waiting = [...scenarios];
  const finished = Promise.withResolvers<void>();
  // Scenarios waiting for another's DNS changes to be forgotten are started
  // by these timers. They hold the process: with nothing else running (a
  // compose lab is not this process's child) it would otherwise end with them
  // still waiting (exit 13).
  const wakes = new Set<NodeJS.Timeout>();
  const next = () => {
    if (waiting.length === 0 && running.size === 0) {
      for (const wake of wakes) clearTimeout(wake);
      return finished.resolve();
    }
    // Finished, but their DNS changes may still be cached somewhere.
    const lingering = [...results.values()].filter((r) => r.quietAt > Date.now()).map((r) => r.scenario);
    // In file order; one that must wait holds back those after it that clash with it too.
    for (const s of [...waiting]) {
      const ahead = waiting.slice(0, waiting.indexOf(s));
      if (running.size >= CONCURRENCY || [...running, ...lingering, ...ahead].some((o) => clash(s, o))) continue;
      waiting.splice(waiting.indexOf(s), 1);
      running.add(s);
      void runScenario(s, target).then((result) => {
        results.set(s, result);
        running.delete(s);
        done(result);
        if (result.quietAt > Date.now()) {
          const wake = setTimeout(() => {
            wakes.delete(wake);
            next();
          }, result.quietAt - Date.now());
          wakes.add(wake);
        }
        next();
      });
    }
  };
  next();
  await finished.promise;
  return { results: scenarios.map((s) => results.get(s)!), quietAt: Math.max(0, ...[...results.values()].map((r) => r.quietAt)) };
}

export async function runScenario(scenario: Scenario, target: Target): Promise<ScenarioResult> {
  const started = performance.now();
  const dns = new ScenarioDns(target);
  const steps: StepResult[] = [];
  let error: string | undefined;
  try {
    await dns.apply(scenario.dns);
    // A scenario that checks a report starts from nothing pending: what
    // earlier scenarios left unreported is sent (and not counted) first.
    if (scenario.steps.some((s) => s.report)) await sendReports(target);
    if (scenario.failureReports) await failureReports(target, true);
    for (const [i, step] of scenario.steps.entries()) {
      const result = await runStep(scenario, i + 1, step, steps, target, dns);
      steps.push(result);
      if (result.outcome.missing) break; // later steps build on this one
    }
  } catch (e) {
    error = e instanceof LabError ? e.message : ((e as Error).stack ?? String(e));
  }
  const ms = Math.round(performance.now() - started);
  if (scenario.failureReports) await failureReports(target, false).catch((e: Error) => (error ??= `turning failure reports off again: ${e.message}`));
  const quietAt = await dns.undo().catch((e) => {
    error ??= `undoing the DNS changes: ${(e as Error).message}`;
    return 0;
  });
  const passed = !error && steps.length === scenario.steps.length && steps.every((s) => s.checks.every((c) => c.passed));
  return { scenario, passed, ms, steps, error, quietAt };
}

async function runStep(scenario: Scenario, number: number, step: Step, earlier: StepResult[], target: Target, dns: ScenarioDns): Promise<StepResult> {
  await dns.apply(step.dns);
  const started = performance.now();
  if (step.report) {
    const reports = (await sendReports(target)).filter((r) => r.policyDomain === step.report);
    const checks = compareReport(step.expect.report!, reports).map((c) => ({ ...c, check: scenario.steps.length > 1 ? `step ${number} ${c.check}` : c.check }));
    const sent = reports.length
      ? reports.map((r) => `the report for ${r.policyDomain} (${r.messages} messages in ${r.rows} rows: ${r.records.map((x) => `${x.sourceIp} ${x.count} × dkim=${x.dkim} spf=${x.spf} ${x.disposition}`).join('; ')}) went to ${r.to.join(', ') || 'nobody'}${r.refused.length ? `; refused: ${r.refused.map((x) => `${x.uri} (${x.reason})`).join('; ')}` : ''}`).join('; ')
      : `no report for ${step.report}: no message in its name since the last report`;
    return { number, step, sent: `the lab sent its DMARC reports now: ${sent}`, outcome: {}, checks, ms: Math.round(performance.now() - started) };
  }
  const byId = (id: string) => earlier[scenario.steps.findIndex((s) => s.id === id)];
  const receiver = owner(target, step.observe);
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  let messageId: string;
  let handed: Handed;

  if (step.retryOf) {
    const first = byId(step.retryOf);
    if (!first.observed) throw new LabError(`step ${number}: the step it waits for (${step.retryOf}) left no decision to follow`);
    messageId = first.messageId!;
    const observed = await decisionAt(receiver, messageId, step.observe, first.observed.transaction.at, deadline);
    handed = { sent: `nothing new: the sending MTA's queue tries ${messageId} again`, observed };
  } else {
    let raw: Buffer;
    if (step.replay) {
      const source = byId(step.replay);
      const copy = source.outcome.stored;
      if (!copy || !source.observed) throw new LabError(`step ${number}: step "${step.replay}" left no stored copy to replay`);
      raw = forReplay(await rawCopy(source.observed.mta, copy.id));
      messageId = source.messageId!;
    } else {
      messageId = newMessageId(scenario, number, step);
      raw = await sign(await compose(scenario, number, step, messageId), step.sign);
    }
    if (step.tamper) raw = tamper(raw, step.tamper);
    const send = step.via ? submit : handOver;
    handed = await send(step, instance(target, (step.via ?? step.direct)!), raw, messageId, { receiver, target, deadline });
  }

  const { observed, refusal } = handed;
  const outcome: Outcome = {
    transaction: observed?.transaction,
    stored: observed && (await storedCopy(observed, step.observe)),
    refusal,
    missing: observed || refusal ? undefined : `no decision for ${step.observe} at ${receiver.name} within ${STEP_TIMEOUT_MS / 1000} s`,
  };
  const found = step.expect.failureReport && observed && (await failureReportAbout(target, messageId, step.expect.failureReport.to, deadline));
  const checks = [...compare(step.expect, outcome), ...(step.expect.failureReport ? compareFailureReport(step.expect.failureReport, found) : [])].map((c) => ({ ...c, check: scenario.steps.length > 1 ? `step ${number} ${c.check}` : c.check }));
  if (outcome.missing) checks.push({ check: `step ${number} decision`, expected: `a decision at ${receiver.name}`, actual: outcome.missing, passed: false });
  return { number, step, messageId, sent: handed.sent, reply: handed.reply, observed, outcome, checks, ms: Math.round(performance.now() - started) };
}

// What became of a message handed over: the decision, or a refusal before it.
interface Handed {
  sent: string; // how, in words
  reply?: Reply;
  observed?: Observed;
  refusal?: Reply;
}

interface Where {
  receiver: Mta; // whose decision is read
  target: Target;
  deadline: number;
}

// Submission to an instance, which signs, queues and delivers it.
async function submit(step: Step, from: Mta, raw: Buffer, messageId: string, { receiver, target, deadline }: Where): Promise<Handed> {
  if (!from.submission) throw new LabError(`${from.name}'s submission port is not reachable from here (compose.yaml publishes none)`);
  const auth = login(from, step.from!);
  const sent = `submitted to ${from.name} (${from.instance.hostname}) as ${auth.user}`;
  const after = new Date().toISOString();
  const reply = await smtpSend({ ...from.submission, servername: from.instance.hostname, ca: target.ca, auth, envelope: envelopeOf(step), raw });
  if (reply.code >= 400) return { sent, reply, refusal: reply };
  // A recipient the queue has finished with, without a decision at the
  // receiver, was refused before DATA: the queue knows the reply.
  const queueId = /queued as (\S+)/.exec(reply.text)?.[1];
  let refusal: Reply | undefined;
  const refused = async () => {
    if (!queueId || !step.to.includes(step.observe)) return false;
    const entry = await getJson<QueueEntry>(`${from.api}api/queue/${queueId}`).catch(() => undefined);
    const r = entry?.recipients.find((x) => x.address.toLowerCase() === step.observe);
    if (r && r.status !== 'failed') return false;
    refusal = { code: Number(r?.lastReply?.slice(0, 3) ?? 0), text: r?.lastReply ?? `${from.name} has finished with it` };
    return true;
  };
  const observed = await decisionAt(receiver, messageId, step.observe, after, deadline, refused);
  return { sent, reply, observed, refusal: observed ? undefined : refusal };
}

// SMTP from the instance's address straight to the recipient domain's MX.
async function handOver(step: Step, from: Mta, raw: Buffer, messageId: string, { receiver, target, deadline }: Where): Promise<Handed> {
  const mx = await findMx(target.dns, splitMailbox(step.to[0])[1]);
  const replay = step.replay ? `, replaying the copy of step "${step.replay}"` : '';
  const sent = `${from.instance.hostname} (${from.instance.address}) speaks SMTP to ${mx.hostname} (${mx.address})${replay}`;
  const after = new Date().toISOString();
  const reply = await target.sendDirect(from, mx, envelopeOf(step), raw);
  // The MX records its decision before it replies: when the recipient is
  // there, the decision is there now, or it refused before DATA.
  const here = step.to.includes(step.observe);
  const observed = await decisionAt(receiver, messageId, step.observe, after, deadline, async () => here);
  return { sent, reply, observed, refusal: !observed && reply.code >= 400 ? reply : undefined };
}

const envelopeOf = (step: Step): Envelope => ({ from: step.mailFrom ?? '', to: step.to });

// The submitting user: the From address itself when the instance has its
// password, else the instance's first user (the attacker sends as anyone).
function login(mta: Mta, from: string): { user: string; pass: string } {
  const address = (/<([^<>]+)>\s*$/.exec(from)?.[1] ?? from).toLowerCase();
  const [user, domain] = splitMailbox(address);
  const own = mta.instance.submission.passwords.get(user);
  if (own !== undefined && mta.instance.domains.has(domain)) return { user: address, pass: own };
  const first = mta.instance.submission.passwords.entries().next().value;
  if (!first) throw new LabError(`${mta.instance.file} has no submission passwords: nobody can log in to ${mta.name}`);
  return { user: `${first[0]}@${mta.instance.domains.keys().next().value}`, pass: first[1] };
}

function instance(target: Target, name: string): Mta {
  const mta = target.mtas.find((m) => m.name === name);
  if (!mta) throw new LabError(`no MTA "${name}" in this lab`);
  return mta;
}

// The lab's DMARC aggregate reports, sent now by the MTA that makes them
// (POST /api/reports/send, as `npm run lab -- reports --send`).
async function sendReports(target: Target): Promise<Sent[]> {
  const reporter = target.mtas.find((m) => m.instance.reports);
  if (!reporter) throw new LabError('no MTA of this lab sends DMARC reports (no instance file has reports:)');
  const response = await fetch(`${reporter.api}api/reports/send`, { method: 'POST', headers: { ...credentialHeader(), 'content-type': 'application/json' }, body: '{}', signal: AbortSignal.timeout(30_000) });
  const body = (await response.json().catch(() => ({}))) as { reports?: Sent[]; error?: string };
  if (!response.ok) throw new LabError(`${reporter.name}: POST /api/reports/send: ${response.status} ${body.error ?? ''}`);
  return body.reports ?? [];
}

// DMARC failure reports on or off at the MTA that makes them.
async function failureReports(target: Target, enabled: boolean): Promise<void> {
  const reporter = target.mtas.find((m) => m.instance.reports);
  if (!reporter) throw new LabError('no MTA of this lab sends DMARC reports (no instance file has reports:)');
  const response = await fetch(`${reporter.api}api/reports/failure`, { method: 'POST', headers: { ...credentialHeader(), 'content-type': 'application/json' }, body: JSON.stringify({ enabled }), signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new LabError(`${reporter.name}: POST /api/reports/failure: ${response.status} ${((await response.json().catch(() => ({}))) as { error?: string }).error ?? ''}`);
}

// The feedback fields of the failure report about this message (its header,
// sent back as text/rfc822-headers, carries the Message-ID) that reached
// `to`, read from the API of the MTA whose mailbox it is; undefined when
// none came before the deadline.
async function failureReportAbout(target: Target, messageId: string, to: string, deadline: number): Promise<Record<string, string> | undefined> {
  const mta = owner(target, to);
  for (;;) {
    const page = await getJson<{ items: { id: string; subject?: string }[] }>(`${mta.api}api/mailboxes/${encodeURIComponent(to)}/INBOX?limit=50`);
    for (const item of page.items) {
      const response = await fetch(`${mta.api}api/messages/${encodeURIComponent(item.id)}/raw`, { headers: credentialHeader(), signal: AbortSignal.timeout(5000) });
      const raw = await response.text();
      if (!raw.includes(messageId) || !/report-type="?feedback-report/i.test(raw)) continue;
      const part = /Content-Type:\s*message\/feedback-report[^\r\n]*\r?\n(?:[^\r\n]+\r?\n)*\r?\n([\s\S]*?)\r?\n\r?\n/i.exec(raw)?.[1] ?? '';
      const fields: Record<string, string> = {};
      for (const line of part.split(/\r?\n(?![ \t])/)) {
        const at = line.indexOf(':');
        if (at > 0) fields[line.slice(0, at).trim().toLowerCase()] = (fields[line.slice(0, at).trim().toLowerCase()] ? `${fields[line.slice(0, at).trim().toLowerCase()]}, ` : '') + line.slice(at + 1).replace(/\s+/g, ' ').trim();
      }
      return fields;
    }
    if (Date.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, 200));
  }
}

// The MTA that holds the recipient's domain: where its decision is made.
export function owner(target: Target, recipient: string): Mta {
  const domain = splitMailbox(recipient)[1];
  const mta = target.mtas.find((m) => m.instance.domains.has(domain));
  if (!mta) throw new LabError(`no lab MTA receives mail for ${domain}, so no decision about ${recipient} can be read`);
  return mta;
}

// Two scenarios clash when one changes DNS names the other depends on: the
// names under the organizational domain of a sending domain (its SPF, DKIM
// keys, DMARC), or a receiving domain and its hosts (MX, addresses).
export function clash(a: Scenario, b: Scenario): boolean {
  const touches = (changer: Scenario, other: Scenario) => {
    // A report: step counts every message of its domain: as if it changed the domain's names.
    const names = [...changer.dns, ...changer.steps.flatMap((s) => s.dns)].map((c) => c.name).concat(changer.steps.flatMap((s) => (s.report ? [s.report] : [])));
    // Failure reports are on for one scenario at a time: the one that ends turns them off.
    if (changer.failureReports && other.failureReports) return true;
    const sending = other.steps.flatMap((s) => [s.from, s.mailFrom, ...s.sign.map((k) => `x@${k.domain}`)]).filter((x): x is string => Boolean(x)).map((x) => organizational(domainOf(x)));
    const receiving = other.steps.flatMap((s) => [...s.to, s.observe]).map(domainOf);
    return names.some((n) => sending.some((d) => n === d || n.endsWith(`.${d}`)) || receiving.some((d) => n === d || (n.endsWith(`.${d}`) && !n.startsWith('_'))));
  };
  return touches(a, b) || touches(b, a);
}

const domainOf = (address: string) => (/<([^<>]+)>\s*$/.exec(address)?.[1] ?? address).split('@').pop()!.toLowerCase();

// The lab's domains are under .test, a one-label public suffix: the
// organizational domain (RFC 7489 section 3.2) is the last two labels.
export const organizational = (domain: string) => domain.split('.').slice(-2).join('.');
