// The exercise command's commands, each against the receiver's exercise API
// with LAB_TOKEN's credential. A student acts for themselves; the teacher
// names a student where it matters (--student).
import { writeFileSync } from 'node:fs';
import { LabError } from '../lab/errors.ts';
import { table } from '../lab/table.ts';
import { LAB_TROUBLE, MISTAKE, type ExerciseApi, type ExerciseView, type Me, type Person } from './api.ts';
import { grade as gradeClass, type StudentGrade } from './grade.ts';
import { gradeJson, gradeJunit, gradeTable } from './report.ts';
import { describeResult, heading, mark } from './result.ts';

const out = (text: string) => process.stdout.write(`${text}\n`);

export async function list(api: ExerciseApi): Promise<number> {
  const me = await api.me();
  const { exercises } = await api.exercises();
  const mine = me.role === 'student';
  const rows = [['#', 'id', 'title', 'minutes', ...(mine ? ['status', 'hints'] : [])]];
  for (const e of exercises) {
    const progress = e.state ? [stateText(e.state.status, e.state.latest), `${e.state.hintsShown}/${e.hintCount}`] : [];
    rows.push([String(e.number), e.id, e.title, String(e.minutes), ...(mine ? progress : [])]);
  }
  const minutes = exercises.reduce((sum, e) => sum + e.minutes, 0);
  out(`${table(rows)}\n\n${exercises.length} exercises, ${minutes} minutes in all${mine ? ` (${me.student!.name}, ${me.student!.domain})` : ''}`);
  return 0;
}

export async function show(api: ExerciseApi, name: string, studentName?: string): Promise<number> {
  const me = await api.me();
  const student = await whom(api, me, studentName, false);
  const { exercise } = await pick(api, name, asked(me, student));
  const { exercise: view, latest, passed } = await api.exercise(exercise.id, asked(me, student));
  const lines = [`${heading(view)} (${view.minutes} minutes)${student ? `, for ${student.name} (${student.domain})` : ''}`, '', 'Goal:', indent(view.goal), ''];
  const all = me.role === 'teacher';
  const next = view.hints.length < view.hintCount ? `; the next: npm run exercise -- hint ${view.number}` : '';
  if (all) lines.push(`Hints (${view.hintCount}, a student sees them one at a time):`);
  else lines.push(view.hints.length ? `Hints (${view.hints.length} of ${view.hintCount} shown${next}):` : `Hints: none shown yet (${view.hintCount}${next})`);
  lines.push(...view.hints.map((h, i) => indent(`${i + 1}. ${h}`)), '', 'Checks:', ...view.checks.map((c) => `  - ${c}`), '');
  if (student && !latest) lines.push(`Not checked yet: npm run exercise -- check ${view.number}${me.role === 'teacher' ? ` --student ${student.name}` : ''}`);
  if (latest) {
    lines.push(passed ? `Passed ${passed.checkedAt} (checked by ${passed.by}).` : 'Not passed yet.');
    lines.push('', `The latest check${passed?.checkedAt === latest.checkedAt ? ', the one that passed it' : ''}:`, describeResult(latest, (id) => api.sessionLink(id)));
    if (passed && passed.checkedAt !== latest.checkedAt) lines.push('', 'The check that passed it:', describeResult(passed, (id) => api.sessionLink(id)));
  }
  out(lines.join('\n').trimEnd());
  return 0;
}

export async function hint(api: ExerciseApi, name: string): Promise<number> {
  const me = await api.me();
  if (me.role !== 'student') throw new LabError("hint reveals a student's next hint: run it with the student's credential in LAB_TOKEN (the teacher sees every hint: npm run exercise -- show N)", MISTAKE);
  const { exercise } = await pick(api, name);
  if (exercise.hints.length >= exercise.hintCount) {
    out(`${heading(exercise)}: all ${exercise.hintCount} hints are shown:\n${exercise.hints.map((h, i) => indent(`${i + 1}. ${h}`)).join('\n')}`);
    return 0;
  }
  const hints = await api.hint(exercise.id);
  out(`${heading(exercise)}: hint ${hints.length} of ${exercise.hintCount}:\n${indent(hints[hints.length - 1])}`);
  return 0;
}

// Exit code: 0 pass, 1 fail, 3 when the lab could not check (an error).
export async function check(api: ExerciseApi, name: string, studentName?: string): Promise<number> {
  const me = await api.me();
  const student = (await whom(api, me, studentName, true))!;
  const { exercise } = await pick(api, name, asked(me, student));
  const result = await api.check(exercise.id, asked(me, student));
  out(`${heading(exercise)}, for ${student.name} (${student.domain})\n${describeResult(result, (id) => api.sessionLink(id))}`);
  return result.status === 'pass' ? 0 : result.status === 'fail' ? 1 : LAB_TROUBLE;
}

interface GradeOptions {
  only?: string[];
  students?: string[];
  json?: boolean;
  junit?: string;
}

// Exit code: 0 when every student graded has passed every exercise graded, else 1.
export async function grade(api: ExerciseApi, options: GradeOptions, say: (text: string) => void): Promise<number> {
  const me = await api.me();
  if (me.role !== 'teacher') throw new LabError(`grade checks the whole class: it takes the teacher's credential in LAB_TOKEN (you are ${me.student?.name}: npm run exercise -- check N)`, MISTAKE);
  const { exercises: all } = await api.exercises();
  const exercises = options.only ? [...new Set(options.only.map((n) => find(all, n)))].sort((a, b) => a.number - b.number) : all;
  const { name: className, students: everyone } = await api.classroom();
  const students = options.students ? options.students.map((n) => student(everyone, n)) : everyone;
  say(`checking ${students.length} student${students.length === 1 ? '' : 's'}, ${exercises.length} exercise${exercises.length === 1 ? '' : 's'} each`);
  const progress = (g: StudentGrade) =>
    say(g.error ? `${g.student.name}: not checked: ${g.error}` : `${g.student.name}: ${g.cells.filter((c) => c.latest === 'pass').length} of ${g.cells.length} pass now (${(g.ms / 1000).toFixed(1)} s)`);
  const graded = await gradeClass(api, className, students, exercises, !options.only, progress);
  if (options.junit) writeFileSync(options.junit, gradeJunit(graded));
  out(options.json ? gradeJson(graded) : gradeTable(graded));
  return graded.students.every((s) => s.cells.every((c) => c.status === 'pass')) ? 0 : 1;
}

// The student a command is about: a student is themselves; the teacher names
// one with --student (required to check, optional to show).
async function whom(api: ExerciseApi, me: Me, name: string | undefined, required: boolean): Promise<Person | undefined> {
  if (me.role === 'student') {
    if (name !== undefined && name !== me.student!.name) throw new LabError(`you are ${me.student!.name}: a student's credential is for their own exercises (--student is the teacher's)`, MISTAKE);
    return me.student;
  }
  if (name === undefined) {
    if (required) throw new LabError("the teacher's credential checks any student: name one with --student NAME", MISTAKE);
    return undefined;
  }
  return student((await api.classroom()).students, name);
}

// The teacher asks for a student by name; a student asks for themselves by naming nobody.
const asked = (me: Me, student: Person | undefined) => (me.role === 'teacher' ? student?.name : undefined);

function student(everyone: Person[], name: string): Person {
  const found = everyone.find((s) => s.name === name.toLowerCase());
  if (!found) throw new LabError(`no student "${name}" in the class (${everyone.length} students: ${everyone.slice(0, 5).map((s) => s.name).join(', ')}${everyone.length > 5 ? ', ...' : ''})`, MISTAKE);
  return found;
}

async function pick(api: ExerciseApi, name: string, studentName?: string): Promise<{ exercise: ExerciseView }> {
  const { exercises } = await api.exercises(studentName);
  return { exercise: find(exercises, name) };
}

function find(exercises: ExerciseView[], name: string): ExerciseView {
  const found = /^\d+$/.test(name) ? exercises.find((e) => e.number === Number(name)) : exercises.find((e) => e.id === name.toLowerCase());
  if (!found) throw new LabError(`no exercise "${name}": they are ${exercises.map((e) => `${e.number} ${e.id}`).join(', ')}`, MISTAKE);
  return found;
}

function stateText(status: string, latest?: string): string {
  if (status === 'unchecked') return '-';
  return status === 'pass' && latest && latest !== 'pass' ? 'pass*' : mark(status);
}

const indent = (text: string) => text.replace(/^/gm, '  ');
