// The exercise results, one file per student in the receiver's data
// directory (exercises/<student>.json): for each exercise the latest check
// and the one that first passed it, with all they saw, and how many hints
// the student has revealed. Only the checks write here; a file is replaced
// whole (written, fsynced, renamed), so a crash leaves the old one or the new.
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { replaceFile } from '../../lib/durable.ts';
import type { Status } from './lookups.ts';
import type { ProbeSaw } from './probes.ts';
import type { Question } from '../../lib/resolver.ts';

export interface CheckResult {
  title: string;
  status: Status;
  reason: string;
  saw: { dns?: { name: string; type: string; answer: unknown[]; error?: string }[]; message?: ProbeSaw };
}

export interface ExerciseResult {
  exercise: string;
  number: number;
  student: string;
  status: Status;
  checkedAt: string;
  ms: number;
  by: string; // teacher, grader, or the student's name
  checks: CheckResult[];
}

export interface ExerciseState {
  status: Status | 'unchecked'; // pass once any check has passed it
  passedAt?: string;
  checkedAt?: string;
  latest?: Status;
  hintsShown: number;
  running?: boolean;
}

interface StudentFile {
  version: 1;
  hints: Record<string, number>;
  exercises: Record<string, { latest?: ExerciseResult; passed?: ExerciseResult }>;
}

export const dnsSeen = (questions: Question[]) => questions.map((q) => ({ name: q.name, type: q.type, answer: q.answer ?? [], ...(q.error && { error: q.error }) }));

export class Results {
  private dir: string;
  private files = new Map<string, StudentFile>();
  private writes = new Map<string, Promise<void>>(); // one write at a time per student, in order

  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
    for (const name of readdirSync(dir).filter((f) => f.endsWith('.json'))) {
      try {
        this.files.set(name.slice(0, -5), JSON.parse(readFileSync(join(dir, name), 'utf8')) as StudentFile);
      } catch {
        // A file that cannot be read is treated as none; the next check writes it again.
      }
    }
  }

  private file(student: string): StudentFile {
    let file = this.files.get(student);
    if (!file) this.files.set(student, (file = { version: 1, hints: {}, exercises: {} }));
    return file;
  }

  get(student: string, exercise: string): { latest?: ExerciseResult; passed?: ExerciseResult } {
    return this.files.get(student)?.exercises[exercise] ?? {};
  }

  state(student: string, exercise: string, running = false): ExerciseState {
    const file = this.files.get(student);
    const { latest, passed } = file?.exercises[exercise] ?? {};
    return {
      status: passed ? 'pass' : (latest?.status ?? 'unchecked'),
      ...(passed && { passedAt: passed.checkedAt }),
      ...(latest && { checkedAt: latest.checkedAt, latest: latest.status }),
      hintsShown: file?.hints[exercise] ?? 0,
      ...(running && { running }),
    };
  }

  hintsShown(student: string, exercise: string): number {
    return this.files.get(student)?.hints[exercise] ?? 0;
  }

  async revealHint(student: string, exercise: string, of: number): Promise<number> {
    const file = this.file(student);
    file.hints[exercise] = Math.min(of, (file.hints[exercise] ?? 0) + 1);
    await this.save(student);
    return file.hints[exercise];
  }

  // One run's results, of one student: one write.
  async record(student: string, results: ExerciseResult[]): Promise<void> {
    for (const result of results) {
      const entry = (this.file(student).exercises[result.exercise] ??= {});
      entry.latest = result;
      if (result.status === 'pass' && !entry.passed) entry.passed = result;
    }
    await this.save(student);
  }

  private save(student: string): Promise<void> {
    const previous = this.writes.get(student) ?? Promise.resolve();
    const next = previous.then(() => this.write(student));
    this.writes.set(student, next.catch(() => undefined));
    return next;
  }

  private write(student: string): Promise<void> {
    return replaceFile(join(this.dir, `${student}.json`), JSON.stringify(this.files.get(student)));
  }
}
