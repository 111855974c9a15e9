// Checking a student's exercises: the probes the chosen exercises need are
// sent once, fresh, all at once, and every check that needs one reads the
// same decision; the DNS checks look at the zone as it is now. Each result
// is recorded with what it saw (results.ts) and announced to the consoles.
// One run per student at a time: a second waits for the first, so that two
// runs never read each other's messages.
import { createHmac, randomBytes } from 'node:crypto';
import type { Classroom, Student } from '../../lib/classroom.ts';
import type { Endpoint } from '../../lib/config.ts';
import type { Logger } from '../../lib/log.ts';
import { LabResolver, type Question } from '../../lib/resolver.ts';
import type { Instance } from '../instance.ts';
import type { SessionStore } from '../store/sessions.ts';
import type { Exercise, ProbeName } from './catalogue.ts';
import { judge } from './expect.ts';
import { runLookup, type LookupContext, type Outcome, type Status } from './lookups.ts';
import type { LabPeers } from './peers.ts';
import type { Probe, Probes } from './probes.ts';
import { dnsSeen, type CheckResult, type ExerciseResult, type Results } from './results.ts';

export interface GraderContext {
  classroom: Classroom;
  exercises: Exercise[];
  peers: LabPeers;
  probes: Probes;
  results: Results;
  sessions: SessionStore;
  receiver: Instance;
  dns: Endpoint;
  receiverCache: { forget(domain: string): Promise<void> }; // what the MX holds of DNS answers, which a check clears for the student's domain
  log: Logger;
}

const visible = (text: string) => text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);

// Letters and digits no one mistakes for others (no 0/O, 1/I/L).
const ALPHABET = '23456789ABCDEFGHJKMNPQRSTUVWXYZ';

export class Grader {
  private ctx: GraderContext;
  private runs = new Map<string, Promise<unknown>>(); // student -> the run under way
  private listeners: ((student: string, exercise: string) => void)[] = [];

  constructor(ctx: GraderContext) {
    this.ctx = ctx;
  }

  // A code only this student sees (in their goal): their hand-typed message
  // carries it, so no one else can send it for them.
  code(student: Student): string {
    const digest = createHmac('sha256', this.ctx.peers.grader).update(`exercise code ${student.name}`).digest();
    const chars = [...digest.subarray(0, 8)].map((b) => ALPHABET[b % ALPHABET.length]).join('');
    return `${chars.slice(0, 4)}-${chars.slice(4)}`;
  }

  // Called when an exercise of a student starts or finishes being checked (the consoles' live grid).
  onChange(listener: (student: string, exercise: string) => void): void {
    this.listeners.push(listener);
  }

  private announce(student: string, exercise: string): void {
    for (const listener of this.listeners) listener(student, exercise);
  }

  running(student: string): boolean {
    return this.runs.has(student);
  }

  check(student: Student, exercises: Exercise[], by: string): Promise<ExerciseResult[]> {
    const before = this.runs.get(student.name) ?? Promise.resolve();
    const run = before.catch(() => undefined).then(() => this.run(student, exercises, by));
    const settled = run.catch(() => undefined);
    this.runs.set(student.name, settled);
    // Announced when the run is over and every result is on disk.
    settled.then(() => {
      if (this.runs.get(student.name) === settled) this.runs.delete(student.name);
      for (const e of exercises) this.announce(student.name, e.id);
    });
    for (const e of exercises) this.announce(student.name, e.id);
    return run;
  }

  private async run(student: Student, exercises: Exercise[], by: string): Promise<ExerciseResult[]> {
    const { log } = this.ctx;
    try {
      return await this.runChecks(student, exercises, by);
    } catch (error) {
      log.error({ err: error, student: student.name }, 'exercise check broke');
      throw error;
    }
  }

  private async runChecks(student: Student, exercises: Exercise[], by: string): Promise<ExerciseResult[]> {
    const { log } = this.ctx;
    const started = performance.now();
    // In every probe's Message-ID: no one can guess it and send one of their own first.
    const run = `${Date.now().toString(36)}${randomBytes(8).toString('hex')}`;
    const resolver = new LabResolver(this.ctx.dns); // no cache: the zone as it is now
    const wanted = [...new Set(exercises.flatMap((e) => e.checks.flatMap((c) => ('probe' in c ? [c.probe] : []))))];
    const probes = await this.sendProbes(wanted, student, run, exercises, resolver);
    const results: ExerciseResult[] = [];
    for (const exercise of exercises) {
      const checks: CheckResult[] = [];
      for (const check of exercise.checks) {
        let outcome: Outcome;
        let saw: CheckResult['saw'];
        let judged = true; // a reason of the student's work, not "no message was sent"
        if ('probe' in check) {
          const probe = probes.get(check.probe)!;
          judged = !('outcome' in probe);
          outcome = 'outcome' in probe ? probe.outcome : judge(probe, check.expect, student);
          saw = 'outcome' in probe ? {} : { message: probe.saw };
        } else {
          const dns: Question[] = [];
          const lookup: LookupContext = { student, code: this.code(student), resolver, dns, peers: this.ctx.peers, receiver: this.ctx.receiver, sessions: this.ctx.sessions };
          outcome = await runLookup(check.check, check.params, lookup).catch((error: Error) => ({ status: 'error' as const, reason: `the check broke: ${error.message}` }));
          saw = { dns: dnsSeen(dns) };
        }
        // A reason quotes records the student wrote: no control character of theirs reaches a terminal.
        const reason = visible(outcome.status === 'fail' && judged && check.mistake ? `${check.mistake} ${outcome.reason}` : outcome.reason);
        checks.push({ title: check.title, status: outcome.status, reason, saw });
      }
      const status: Status = checks.some((c) => c.status === 'fail') ? 'fail' : checks.some((c) => c.status === 'error') ? 'error' : 'pass';
      const result: ExerciseResult = { exercise: exercise.id, number: exercise.number, student: student.name, status, checkedAt: new Date().toISOString(), ms: Math.round(performance.now() - started), by, checks };
      results.push(result);
      log.info({ student: student.name, exercise: exercise.id, status, by, failed: checks.filter((c) => c.status !== 'pass').map((c) => c.title) }, `exercise ${exercise.number} (${exercise.id}) for ${student.name}: ${status}`);
    }
    await this.ctx.results.record(student.name, results);
    return results;
  }

  // The probes, sent at once; none when mail to the student cannot reach the
  // receiver (no MX yet): each would wait for nothing, and a queue would
  // keep retrying it for minutes. Then each probe check says why.
  private async sendProbes(names: ProbeName[], student: Student, run: string, exercises: Exercise[], resolver: LabResolver): Promise<Map<ProbeName, Probe | { outcome: Outcome }>> {
    const probes = new Map<ProbeName, Probe | { outcome: Outcome }>();
    if (names.length === 0) return probes;
    const blocked = await this.unreachable(student, resolver);
    if (blocked) {
      for (const name of names) probes.set(name, { outcome: { status: blocked.status, reason: `no message was sent: ${blocked.reason}` } });
      return probes;
    }
    // The MX judges the probes with what its resolver holds: forget the
    // student's domain there (in every MX process), so that a record fixed a
    // moment ago counts.
    await this.ctx.receiverCache.forget(student.domain);
    const label = exercises.map((e) => e.number).join(', ');
    const sent = await Promise.all(names.map((name) => this.ctx.probes.send(name, student, run, `exercise${exercises.length > 1 ? 's' : ''} ${label}`)));
    names.forEach((name, i) => probes.set(name, sent[i]));
    return probes;
  }

  private async unreachable(student: Student, resolver: LabResolver): Promise<Outcome | undefined> {
    const { domain, address } = student;
    const receiver = this.ctx.receiver;
    const noRoute = (why: string): Outcome => ({ status: 'fail', reason: `mail to ${address} cannot reach the lab's receiver (${receiver.hostname}, ${receiver.address}): ${why}. Exercise 2 sets this up` });
    try {
      const records = (await resolver.resolve(domain, 'MX').catch((e: { code?: string }) => (e.code === 'ENOTFOUND' || e.code === 'ENODATA' ? [] : Promise.reject(e)))) as { exchange: string }[];
      if (records.length === 0) return noRoute(`${domain} has no MX record`);
      for (const { exchange } of records) {
        const addresses = await resolver.resolve(exchange, 'A').catch((e: { code?: string }) => (e.code === 'ENOTFOUND' || e.code === 'ENODATA' ? [] : Promise.reject(e)));
        if (!addresses.map(String).includes(receiver.address)) return noRoute(`your MX ${exchange} has ${addresses.length ? `the address ${addresses.join(', ')}` : 'no A record'}`);
      }
      return undefined;
    } catch (error) {
      return { status: 'error', reason: `the lab DNS did not answer about ${domain}'s MX (${(error as { code?: string }).code ?? (error as Error).message}): check again in a moment` };
    }
  }
}
