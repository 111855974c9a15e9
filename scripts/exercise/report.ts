// A grading, three ways, as the scenario runner reports (scenario/report.ts):
// a table of students by exercises for a person, one JSON document, and
// JUnit XML for CI and grade books.
import { table } from '../lab/table.ts';
import type { Cell, Grading } from './grade.ts';
import { heading, mark } from './result.ts';

// pass*: passed before (the lab keeps that pass), failing now.
const cellText = (c: Cell) => (c.status === 'pass' && c.latest !== 'pass' ? 'pass*' : mark(c.latest));

export function gradeTable(g: Grading): string {
  const rows = [['student', ...g.exercises.map((e) => String(e.number)), 'passed']];
  for (const s of g.students) {
    rows.push([s.student.name, ...s.cells.map(cellText), `${s.cells.filter((c) => c.status === 'pass').length}/${s.cells.length}`]);
  }
  const legend = g.exercises.map((e) => `${e.number} ${e.id}`).join(', ');
  const lines = [table(rows), '', legend];
  if (g.students.some((s) => s.cells.some((c) => cellText(c) === 'pass*'))) lines.push('pass*: passed before, failing now');
  for (const s of g.students) if (s.error) lines.push(`${s.student.name}: not checked: ${s.error}`);
  lines.push('', summary(g));
  return lines.join('\n');
}

export function summary(g: Grading): string {
  const cells = g.students.flatMap((s) => s.cells);
  const count = (test: (c: Cell) => boolean) => cells.filter(test).length;
  const passed = count((c) => c.status === 'pass');
  const before = count((c) => c.status === 'pass' && c.latest !== 'pass');
  const failed = count((c) => c.status === 'fail');
  const errors = count((c) => c.status === 'error');
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  return (
    `${plural(g.students.length, 'student')}, ${plural(g.exercises.length, 'exercise')}: ${passed} of ${cells.length} passed` +
    `${before ? ` (${before} pass*)` : ''}, ${failed} failed, ${plural(errors, 'error')}, in ${(g.ms / 1000).toFixed(1)} s`
  );
}

export function gradeJson(g: Grading): string {
  const students = g.students.map((s) => ({
    name: s.student.name,
    domain: s.student.domain,
    passed: s.cells.filter((c) => c.status === 'pass').length,
    ...(s.error && { error: s.error }),
    exercises: s.cells.map((c) => ({
      number: c.exercise.number,
      id: c.exercise.id,
      status: c.status,
      latest: c.latest,
      ...(c.passedAt && { passedAt: c.passedAt }),
      ...(c.result && { checkedAt: c.result.checkedAt, ms: c.result.ms }),
      checks: (c.result?.checks ?? []).map(({ title, status, reason, saw }) => ({ title, status, reason, saw })),
    })),
  }));
  const cells = g.students.flatMap((s) => s.cells);
  const passed = cells.filter((c) => c.status === 'pass').length;
  const exercises = g.exercises.map(({ number, id, title, minutes }) => ({ number, id, title, minutes }));
  return JSON.stringify({ class: g.className, exercises, students, passed, failed: cells.length - passed, ms: g.ms }, null, 2);
}

// One test case per student and exercise, a suite per student. A case fails
// with the failing checks' reasons, or is an error when the lab could not
// check; a pass* passes (the lab keeps the pass) and says what fails now.
export function gradeJunit(g: Grading): string {
  const seconds = (ms: number) => (ms / 1000).toFixed(3);
  const suites = g.students.map((s) => {
    const failures = s.cells.filter((c) => c.status === 'fail').length;
    const errors = s.cells.filter((c) => c.status === 'error').length;
    const cases = s.cells.map((c) => {
      const attributes = `classname="${xml(s.student.name)}" name="${xml(heading(c.exercise))}" time="${seconds(c.result?.ms ?? 0)}"`;
      const wrong = (c.result?.checks ?? []).filter((k) => k.status !== 'pass').map((k) => `${k.title}: ${mark(k.status)}: ${k.reason}`);
      if (wrong.length === 0 && c.latest !== 'pass') wrong.push(`not checked: ${s.error ?? 'the lab returned no result for this exercise'}`);
      if (c.status === 'pass') {
        if (c.latest === 'pass') return `      <testcase ${attributes}/>`;
        return `      <testcase ${attributes}>\n        <system-out>${xml(`passed at ${c.passedAt}; now failing:\n${wrong.join('\n')}`)}</system-out>\n      </testcase>`;
      }
      const element = c.status === 'error' ? 'error' : 'failure';
      return `      <testcase ${attributes}>\n        <${element} message="${xml(wrong[0])}">${xml(wrong.join('\n'))}</${element}>\n      </testcase>`;
    });
    const counts = `tests="${s.cells.length}" failures="${failures}" errors="${errors}" time="${seconds(s.ms)}"`;
    return [`  <testsuite name="${xml(s.student.name)} (${xml(s.student.domain)})" ${counts}>`, ...cases, '  </testsuite>'].join('\n');
  });
  const cells = g.students.flatMap((s) => s.cells);
  const counts = `tests="${cells.length}" failures="${cells.filter((c) => c.status === 'fail').length}" errors="${cells.filter((c) => c.status === 'error').length}" time="${seconds(g.ms)}"`;
  return ['<?xml version="1.0" encoding="UTF-8"?>', `<testsuites name="${xml(`mail-lab exercises: ${g.className}`)}" ${counts}>`, ...suites, '</testsuites>', ''].join('\n');
}

const xml = (text: string) => text.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!).replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '');
