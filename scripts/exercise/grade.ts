// npm run exercise -- grade: every student's exercises checked now. One
// request per student (POST /api/exercises/check), in which the receiver runs
// that student's exercises together, one probe message serving every check
// that needs it; a few students at a time. Then the class's grid, for what
// each student passed before.
import { LabError } from '../lab/errors.ts';
import type { ExerciseApi, ExerciseResult, ExerciseState, ExerciseView, Person } from './api.ts';

// Students checked at once. The receiver does the work: on bench:exercises'
// class of 100, rounds of 8, 4, 16 and 2 at once in one lab took 19.4, 19.9,
// 21.5 and 29.4 s (third round 32.8, 34.8, 33.8, 46.6 s). From 12 at once a
// few refused spoofs were judged before the receiver had saved their session.
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
