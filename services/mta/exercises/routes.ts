// The exercises' routes on the receiver's API (classroom mode):
//
//   GET  /api/exercises[?student=]             the course: goals, revealed hints, each one's state
//   GET  /api/exercises/grid                   the teacher's grid: students by exercises
//   GET  /api/exercises/:id[?student=]         one exercise, its latest result and the one that passed it
//   POST /api/exercises/:id/check[?student=]   check it now (a few seconds: it sends real mail)
//   POST /api/exercises/check[?student=]       {"exercises"?: [ids]}: several in one run, sharing the messages
//   POST /api/exercises/:id/hint               a student reveals the next hint
//
// A student is always themselves (naming another is a 403); the teacher
// names a student with ?student= where it matters. Only a check writes a
// result: nothing here takes a result from the caller.
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import type { Classroom, Student } from '../../lib/classroom.ts';
import type { Endpoint } from '../../lib/config.ts';
import { HttpError, readJson } from '../../lib/http.ts';
import type { Logger } from '../../lib/log.ts';
import type { Caller } from '../classroom/logins.ts';
import type { Scope } from '../classroom/scope.ts';
import type { Instance } from '../instance.ts';
import type { Outbound } from '../outbound/deliver.ts';
import type { SessionStore } from '../store/sessions.ts';
import { loadExercises, type Exercise } from './catalogue.ts';
import { Grader, type GraderContext } from './grader.ts';
import { LabPeers } from './peers.ts';
import { Probes } from './probes.ts';
import { Results } from './results.ts';

export interface ExercisesContext {
  classroom: Classroom;
  exercises: Exercise[];
  grader?: Grader; // undefined when the class has no grader credential
  results: Results;
  peers?: LabPeers;
  receiver: Instance;
}

// A student's own checks: each sends mail, so a few a minute, one at a time.
const CHECKS_PER_MINUTE = 20;

export class ExerciseRoutes {
  private ctx: ExercisesContext;
  private recent = new Map<string, number[]>(); // student -> when their last checks started
  private listeners: ((student: string, exercise: string, state: ReturnType<Results['state']>) => void)[] = [];

  constructor(ctx: ExercisesContext) {
    this.ctx = ctx;
    ctx.grader?.onChange((student, exercise) => this.changed(student, exercise));
  }

  // Each change of a student's exercise state (a check started or finished,
  // a hint revealed), for the consoles.
  onChange(listener: (student: string, exercise: string, state: ReturnType<Results['state']>) => void): void {
    this.listeners.push(listener);
  }

  private changed(name: string, id: string): void {
    const student = this.ctx.classroom.student(name);
    const exercise = this.ctx.exercises.find((e) => e.id === id);
    if (student && exercise) for (const listener of this.listeners) listener(name, id, this.state(student, exercise));
  }

  async route(request: IncomingMessage, url: URL, path: string, caller: Caller, scope: Scope): Promise<unknown> {
    const method = request.method ?? 'GET';
    const only = (allowed: string) => {
      if (method !== allowed) throw new HttpError(405, `${path}: ${allowed} only`);
    };
    const student = () => this.student(url, scope);
    if (path === '/api/exercises') {
      only('GET');
      const who = scope.student ?? (url.searchParams.get('student') ? student() : undefined);
      return { class: this.ctx.classroom.name, ...(who && { student: { name: who.name, domain: who.domain, address: who.address } }), exercises: this.ctx.exercises.map((e) => this.view(e, who, !scope.student)) };
    }
    if (path === '/api/exercises/grid') {
      only('GET');
      scope.checkTeacher('the grid of the whole class');
      return {
        class: this.ctx.classroom.name,
        exercises: this.ctx.exercises.map(({ number, id, title }) => ({ number, id, title })),
        students: this.ctx.classroom.students.map((s) => ({ name: s.name, domain: s.domain, cells: Object.fromEntries(this.ctx.exercises.map((e) => [e.id, this.state(s, e)])) })),
      };
    }
    if (path === '/api/exercises/check') {
      only('POST');
      const body = ((await readJson(request)) ?? {}) as { exercises?: unknown };
      if (body.exercises !== undefined && (!Array.isArray(body.exercises) || body.exercises.length === 0)) throw new HttpError(400, '"exercises": a list of exercise ids or numbers');
      const chosen = body.exercises ? [...new Set(body.exercises.map((id) => this.exercise(String(id))))] : this.ctx.exercises;
      return { results: await this.check(student(), chosen, caller, scope) };
    }
    const match = /^\/api\/exercises\/([^/]+)(?:\/(check|hint))?$/.exec(path);
    if (!match) throw new HttpError(404, `no such endpoint: ${path}`);
    const exercise = this.exercise(decodeURIComponent(match[1]));
    if (match[2] === 'check') {
      only('POST');
      const [result] = await this.check(student(), [exercise], caller, scope);
      return result;
    }
    if (match[2] === 'hint') {
      only('POST');
      if (!scope.student) throw new HttpError(400, 'the teacher sees every hint already: hints are revealed by a student, one at a time');
      const shown = await this.ctx.results.revealHint(scope.student.name, exercise.id, exercise.hints.length);
      this.changed(scope.student.name, exercise.id);
      return { hints: exercise.hints.slice(0, shown).map((h) => this.fill(h, scope.student)) };
    }
    only('GET');
    const who = scope.student ?? (url.searchParams.get('student') ? student() : undefined);
    return { exercise: this.view(exercise, who, !scope.student), ...(who && this.ctx.results.get(who.name, exercise.id)) };
  }

  private async check(student: Student, exercises: Exercise[], caller: Caller, scope: Scope) {
    const { grader } = this.ctx;
    if (!grader) throw new HttpError(503, "this class has no grader credential, which the checks send mail with: run `npm run lab -- class init` (it adds one, and changes no one's credential) and start the lab again");
    if (scope.student) {
      if (grader.running(student.name)) throw new HttpError(429, 'a check of yours is running: wait for its result');
      const now = Date.now();
      const recent = (this.recent.get(student.name) ?? []).filter((t) => t > now - 60_000);
      if (recent.length >= CHECKS_PER_MINUTE) throw new HttpError(429, `at most ${CHECKS_PER_MINUTE} checks a minute (each sends real mail): try again in ${Math.ceil((recent[0] + 60_000 - now) / 1000)} s`);
      this.recent.set(student.name, [...recent, now]);
    }
    const by = caller.identity.role === 'student' ? caller.identity.student.name : caller.identity.grader ? 'grader' : 'teacher';
    return grader.check(student, exercises, by);
  }

  private student(url: URL, scope: Scope): Student {
    const asked = url.searchParams.get('student') ?? undefined;
    if (scope.student) {
      if (asked && asked !== scope.student.name) throw new HttpError(403, `${asked}'s exercises are theirs; you are ${scope.who}`);
      return scope.student;
    }
    if (!asked) throw new HttpError(400, 'name the student: ?student=NAME');
    const student = this.ctx.classroom.student(asked);
    if (!student) throw new HttpError(400, `no student ${asked} in this class`);
    return student;
  }

  private exercise(key: string): Exercise {
    const exercise = this.ctx.exercises.find((e) => e.id === key || String(e.number) === key);
    if (!exercise) throw new HttpError(404, `no exercise ${key} (there are ${this.ctx.exercises.length}: ${this.ctx.exercises.map((e) => `${e.number} ${e.id}`).join(', ')})`);
    return exercise;
  }

  private state(student: Student, exercise: Exercise) {
    return this.ctx.results.state(student.name, exercise.id, this.ctx.grader?.running(student.name));
  }

  // An exercise as this caller sees it: for a student (or the teacher looking
  // as one) the goal with their names and code, the hints they revealed (the
  // teacher: all), their state.
  private view(e: Exercise, student: Student | undefined, teacher: boolean) {
    const hintsShown = student ? this.ctx.results.hintsShown(student.name, e.id) : 0;
    return {
      number: e.number,
      id: e.id,
      title: e.title,
      minutes: e.minutes,
      goal: this.fill(e.goal, student),
      hintCount: e.hints.length,
      hints: (teacher ? e.hints : e.hints.slice(0, hintsShown)).map((h) => this.fill(h, student)),
      checks: e.checks.map((c) => c.title),
      ...(student && { state: this.state(student, e) }),
    };
  }

  private fill(text: string, student: Student | undefined): string {
    const { receiver, peers, grader } = this.ctx;
    const values: Record<string, string> = {
      name: student?.name ?? '<name>',
      domain: student?.domain ?? '<domain>',
      address: student?.address ?? '<address>',
      code: student && grader ? grader.code(student) : '<code>',
      receiver: receiver.hostname,
      receiverAddress: receiver.address,
      sender: peers?.sender.hostname ?? 'mta.sender.test',
      senderAddress: peers?.sender.address ?? '192.0.2.10',
      attacker: peers?.attacker.hostname ?? 'mta.attacker.test',
      attackerAddress: peers?.attacker.address ?? '192.0.2.66',
      forwarder: peers?.forwarder.hostname ?? 'list.forwarder.test',
    };
    return text.replace(/\{(\w+)\}/g, (all, key: string) => values[key] ?? all);
  }
}

// The course at the receiver: the exercise files, the results on disk, and
// the grader when the class has its credential.
export function openCourse(o: { classroom: Classroom; receiver: Instance; outbound: Outbound; dataDir: string; sessions: SessionStore; dns: Endpoint; receiverCache: GraderContext['receiverCache']; ca: Buffer; log: Logger }): ExerciseRoutes {
  const exercises = loadExercises();
  const results = new Results(join(o.dataDir, 'exercises'));
  const grader = o.classroom.grader;
  if (!grader) {
    o.log.warn('the class has no grader credential: exercises cannot be checked until `npm run lab -- class init` adds one');
    return new ExerciseRoutes({ classroom: o.classroom, exercises, results, receiver: o.receiver });
  }
  const peers = new LabPeers(o.receiver, o.outbound, grader);
  const probes = new Probes(peers, o.sessions, o.receiver.hostname, o.ca);
  const checker = new Grader({ classroom: o.classroom, exercises, peers, probes, results, sessions: o.sessions, receiver: o.receiver, dns: o.dns, receiverCache: o.receiverCache, log: o.log });
  return new ExerciseRoutes({ classroom: o.classroom, exercises, grader: checker, results, peers, receiver: o.receiver });
}
