// npm run exercise -- grade: every student's exercises checked now. One
// request per student (POST /api/exercises/check), in which the receiver runs
// that student's exercises together, one probe message serving every check
// that needs it; a few students at a time. Then the class's grid, for what
// each student passed before.
import { LabError } from '../lab/errors.ts';
import type { ExerciseApi, ExerciseResult, ExerciseState, ExerciseView, Person } from './api.ts';

// Students checked at once. On the 100-student class of bench:exercises,
// two rounds each on a busy 2-core machine: 4 at once 36.0/30.7 s, 8 33.9/28.1 s,
// 12 42.3/30.9 s, 16 40.9/33.0 s, 24 37.0/28.8 s. The receiver does the work, so
// more at once is no faster; past 8 a few refused spoofs were judged before
// the receiver had saved their session (reported as not decided).
export const CONCURRENCY = 8;

export type Outcome = 'pass' | 'fail' | 'error';

export interface Cell {
  exercise: ExerciseView;
  status: Outcome; // as the lab keeps it: pass once any check has passed
  latest: Outcome; // this run's
  passedAt?: string;
  result?: ExerciseResult; // this run's, unless the request failed
}

export interface StudentGrade {
  student: Person;
  cells: Cell[];
  error?: string; // the student's request failed: why (every cell's latest is error)
  ms: number;
}

export interface Grading {
  className: string;
  exercises: ExerciseView[];
  students: StudentGrade[];
  ms: number;
}

export async function grade(api: ExerciseApi, className: string, students: Person[], exercises: ExerciseView[], all: boolean, progress: (g: StudentGrade) => void): Promise<Grading> {
  const started = performance.now();
  const ids = all ? undefined : exercises.map((e) => e.id);
  const runs: { results: ExerciseResult[]; error?: string; ms: number }[] = new Array(students.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < students.length; i = next++) {
      const began = performance.now();
      try {
        runs[i] = { results: await api.checkAll(students[i].name, ids), ms: 0 };
      } catch (error) {
        // One student's request that fails leaves the others to be graded.
        if (!(error instanceof LabError)) throw error;
        runs[i] = { results: [], error: error.message, ms: 0 };
      }
      runs[i].ms = Math.round(performance.now() - began);
      progress(studentGrade(students[i], exercises, runs[i], {}));
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, students.length) }, worker));
  const grid = await api.grid();
  const states = new Map(grid.students.map((s) => [s.name, s.cells]));
  return {
    className,
    exercises,
    students: students.map((s, i) => studentGrade(s, exercises, runs[i], states.get(s.name) ?? {})),
    ms: Math.round(performance.now() - started),
  };
}

function studentGrade(student: Person, exercises: ExerciseView[], run: { results: ExerciseResult[]; error?: string; ms: number }, states: Record<string, ExerciseState>): StudentGrade {
  const cells = exercises.map((exercise): Cell => {
    const result = run.results.find((r) => r.exercise === exercise.id);
    const latest = result?.status ?? 'error';
    const passedAt = states[exercise.id]?.passedAt ?? (latest === 'pass' ? result!.checkedAt : undefined);
    return { exercise, status: passedAt ? 'pass' : latest, latest, passedAt, result };
  });
  return { student, cells, error: run.error, ms: run.ms };
}
