// The results, three ways: a table for a person, one JSON document, and
// JUnit XML for CI and grading.
import { table } from '../lab/table.ts';
import type { ScenarioResult } from './run.ts';

// One row per step: each check as check=actual when it is what was
// expected, else check=actual (expected X).
export function resultTable(results: ScenarioResult[], ms: number): string {
  const rows = [['scenario', 'step', 'checks', 'result', 'ms']];
  for (const r of results) {
    for (const s of r.steps) {
      const checks = s.checks.map((c) => {
        const name = c.check.replace(/^step \d+ /, '');
        return c.passed ? `${name}=${c.brief ?? c.actual}` : `${name}=${c.actual} (expected ${c.expected})`;
      });
      const passed = s.checks.every((c) => c.passed);
      rows.push([s.number === 1 ? r.scenario.name : '', String(s.number), checks.join(' '), passed ? 'pass' : 'FAIL', String(s.ms)]);
    }
    if (r.error) rows.push([r.steps.length ? '' : r.scenario.name, '-', `the run broke off: ${r.error.split('\n')[0]}`, 'FAIL', String(r.ms)]);
  }
  const failed = results.filter((r) => !r.passed);
  const summary = `${results.length} scenario${results.length === 1 ? '' : 's'}: ${results.length - failed.length} passed, ${failed.length} failed, in ${(ms / 1000).toFixed(1)} s`;
  return `${table(rows)}\n\n${summary}${failed.length ? ` (failed: ${failed.map((r) => r.scenario.name).join(', ')})` : ''}`;
}

export function resultJson(results: ScenarioResult[], ms: number): string {
  const scenarios = results.map((r) => ({
    name: r.scenario.name,
    title: r.scenario.title,
    passed: r.passed,
    ms: r.ms,
    checks: [
      ...r.steps.flatMap((s) => s.checks.map(({ check, expected, actual, passed }) => ({ check, expected, actual, passed }))),
      ...(r.error ? [{ check: 'run', expected: 'no error', actual: r.error, passed: false }] : []),
    ],
  }));
  const passed = results.filter((r) => r.passed).length;
  return JSON.stringify({ scenarios, passed, failed: results.length - passed, ms: Math.round(ms) }, null, 2);
}

export function resultJunit(results: ScenarioResult[], ms: number): string {
  const failed = results.filter((r) => !r.passed).length;
  const cases = results.map((r) => {
    const attributes = `classname="mail-lab.scenarios" name="${xml(r.scenario.name)}: ${xml(r.scenario.title)}" time="${(r.ms / 1000).toFixed(3)}"`;
    if (r.passed) return `    <testcase ${attributes}/>`;
    const wrong = r.steps.flatMap((s) => s.checks).filter((c) => !c.passed);
    const message = wrong.map((c) => `${c.check}: expected ${c.expected}, got ${c.actual}`).concat(r.error ? [`the run broke off: ${r.error}`] : []);
    return `    <testcase ${attributes}>\n      <failure message="${xml(message[0] ?? 'failed')}">${xml(message.join('\n'))}</failure>\n    </testcase>`;
  });
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites tests="${results.length}" failures="${failed}" time="${(ms / 1000).toFixed(3)}">`,
    `  <testsuite name="mail-lab scenarios" tests="${results.length}" failures="${failed}" time="${(ms / 1000).toFixed(3)}">`,
    ...cases,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}

const xml = (text: string) => text.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!).replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '');
