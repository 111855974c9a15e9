// The receiver's exercise API (classroom mode), as the exercise command
// reaches it: the embedded lab at the receiver's loopback twin, or with
// --compose through the port compose.yaml publishes. Every request carries
// LAB_TOKEN's credential (scripts/lab/api.ts). What goes wrong is a LabError
// with the command's exit code: 2 for what the person typed or set, 3 when
// the lab is not there or answers with an error.
import { MAILBOXES_AT, type Student } from '../../services/lib/classroom.ts';
import type { ProbeSaw } from '../../services/mta/exercises/probes.ts';
import type { CheckResult, ExerciseResult, ExerciseState } from '../../services/mta/exercises/results.ts';
import { credentialHeader } from '../lab/api.ts';
import type { Lab } from '../lab/compose.ts';
import { LabError } from '../lab/errors.ts';
import { notRunningHint } from '../lab/published.ts';

export const MISTAKE = 2;
export const LAB_TROUBLE = 3;

// The API's answers, as the receiver sends them (services/mta/exercises/routes.ts).
export type { CheckResult, ExerciseResult, ExerciseState, ProbeSaw };

export interface ExerciseView {
  number: number;
  id: string;
  title: string;
  minutes: number;
  goal: string;
  hintCount: number;
  hints: string[];
  checks: string[];
  state?: ExerciseState;
}

export type Person = Pick<Student, 'name' | 'domain' | 'address'>;

export interface Me {
  role: 'teacher' | 'student';
  student?: Person;
  class: string;
}

export interface Grid {
  class: string;
  exercises: { number: number; id: string; title: string }[];
  students: { name: string; domain: string; cells: Record<string, ExerciseState> }[];
}

// A check sends messages and waits for the receiver's decisions; a DNS
// timeout on the way can take most of a minute.
const CHECK_TIMEOUT_MS = 120_000;
const READ_TIMEOUT_MS = 10_000;

export class ExerciseApi {
  readonly base: string; // the receiver's API and console, ending in /
  private lab: Lab;

  constructor(lab: Lab) {
    const receiver = lab.services.find((s) => s.name === MAILBOXES_AT);
    if (!receiver?.console) throw new LabError(`the ${MAILBOXES_AT}'s API is not in compose.yaml${lab.mode === 'compose' ? ' (not published)' : ''}: the exercises are served there`, LAB_TROUBLE);
    this.base = receiver.console;
    this.lab = lab;
  }

  // Who LAB_TOKEN is; also the first sign of a lab that is not there or has no class.
  async me(): Promise<Me> {
    return this.request<Me>('GET', 'api/me', undefined, READ_TIMEOUT_MS, {
      404: () => 'the lab serves no class: exercises are checked in classroom mode (README, Classroom: start the lab with LAB_CLASS naming the class)',
    });
  }

  async classroom(): Promise<{ name: string; students: Person[] }> {
    return this.request('GET', 'api/classroom');
  }

  async exercises(student?: string): Promise<{ class: string; student?: Person; exercises: ExerciseView[] }> {
    return this.request('GET', `api/exercises${query(student)}`, undefined, READ_TIMEOUT_MS, {
      404: () => `the ${MAILBOXES_AT} has no exercises (its API answers 404 at /api/exercises: a lab from before exercises?)`,
    });
  }

  async exercise(id: string, student?: string): Promise<{ exercise: ExerciseView; latest?: ExerciseResult; passed?: ExerciseResult }> {
    return this.request('GET', `api/exercises/${encodeURIComponent(id)}${query(student)}`);
  }

  async check(id: string, student?: string): Promise<ExerciseResult> {
    return this.request('POST', `api/exercises/${encodeURIComponent(id)}/check${query(student)}`, {}, CHECK_TIMEOUT_MS);
  }

  // Several exercises of one student in one run (all when ids is undefined).
  async checkAll(student: string, ids?: string[]): Promise<ExerciseResult[]> {
    const answer = await this.request<{ results: ExerciseResult[] }>('POST', `api/exercises/check${query(student)}`, ids ? { exercises: ids } : {}, CHECK_TIMEOUT_MS);
    return answer.results;
  }

  async hint(id: string): Promise<string[]> {
    return (await this.request<{ hints: string[] }>('POST', `api/exercises/${encodeURIComponent(id)}/hint`, {})).hints;
  }

  async grid(): Promise<Grid> {
    return this.request('GET', 'api/exercises/grid');
  }

  // Where a person opens a session's why view in the receiver's console.
  sessionLink(session: string): string {
    return `${this.base}#/session/${encodeURIComponent(session)}`;
  }

  private async request<T>(method: string, path: string, body?: unknown, timeoutMs = READ_TIMEOUT_MS, said: Record<number, () => string> = {}): Promise<T> {
    const url = `${this.base}${path}`;
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: { ...credentialHeader(), ...(body !== undefined && { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      const code = (error as { cause?: { code?: string } }).cause?.code;
      if (code === 'ECONNREFUSED') throw new LabError(`nothing answers at ${new URL(url).host}: is the lab running? (${notRunningHint(this.lab)})`, LAB_TROUBLE);
      if ((error as Error).name === 'TimeoutError') throw new LabError(`${method} ${url}: no answer within ${timeoutMs / 1000} s`, LAB_TROUBLE);
      throw new LabError(`${method} ${url}: ${code ?? (error as Error).message}`, LAB_TROUBLE);
    }
    const answer = await response.json().catch(() => undefined);
    if (response.ok) return answer as T;
    const error: string = answer?.error ?? response.statusText;
    const own = said[response.status];
    if (own) throw new LabError(own(), LAB_TROUBLE);
    // LAB_TOKEN is the person's to fix; so is asking for what their credential may not see.
    if (response.status === 401) throw new LabError(`the lab did not take LAB_TOKEN: ${error} (set it to your credential: the teacher's, or the one the teacher gave you)`, MISTAKE);
    if (response.status === 403) throw new LabError(error, MISTAKE);
    if (response.status === 429) {
      const wait = response.headers.get('retry-after');
      throw new LabError(`${error}${wait ? ` (try again in ${wait} s)` : ''}`, LAB_TROUBLE);
    }
    throw new LabError(`${method} /${path}: ${response.status} ${error}`, LAB_TROUBLE);
  }
}

const query = (student?: string) => (student ? `?student=${encodeURIComponent(student)}` : '');
