// What an attack is, what it gives back, and the results three ways: a
// table for a person at a terminal, Markdown for an issue's closing note,
// JSON for CI.
import type { AttackLab, Memory } from './lab.ts';

export interface Attack {
  item: number; // issue 13's numbered item
  name: string;
  expected: string; // the hardened behaviour
  timeoutMs?: number; // the attack fails past it (default 15 s)
  run(lab: AttackLab): Promise<Outcome>;
}

export interface Outcome {
  ok: boolean; // observed is what was expected
  observed: string;
  memory?: Memory;
}

export interface Row extends Outcome {
  item: number;
  name: string;
  expected: string;
  seconds: number;
}

export function outcome(ok: boolean, observed: string, memory?: Memory): Outcome {
  return { ok, observed, memory };
}

// "receiver RSS 92 MiB, peak 189 MiB (+97), after 189 MiB"
export function memoryText(m: Memory): string {
  return `${m.service} RSS ${m.rssBeforeMiB} MiB, peak ${m.peakMiB} MiB (+${m.peakMiB - m.rssBeforeMiB}), after ${m.rssAfterMiB} MiB`;
}

// A server's answer in one line of the table.
export const oneLine = (text: string) => text.replace(/\s+/g, ' ').trim();

const result = (row: Row) => (row.ok ? 'ok' : 'FAIL');

export function textReport(rows: Row[], seconds: number): string {
  const blocks = rows.map((r) =>
    [
      `${String(r.item).padStart(2)}  ${result(r).padEnd(4)}  ${r.name} (${r.seconds.toFixed(1)} s)`,
      `          expected  ${r.expected}`,
      `          observed  ${r.observed}`,
    ].join('\n'),
  );
  return `${blocks.join('\n')}\n\n${verdict(rows, seconds)}`;
}

export function markdownReport(rows: Row[], seconds: number): string {
  const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const lines = ['| item | attack | expected | observed | result |', '|---|---|---|---|---|'];
  for (const r of rows) lines.push(`| ${r.item} | ${cell(r.name)} | ${cell(r.expected)} | ${cell(r.observed)} | ${result(r)} |`);
  return `${lines.join('\n')}\n\n${verdict(rows, seconds)}`;
}

export function jsonReport(rows: Row[]): string {
  return JSON.stringify(rows, null, 2);
}

function verdict(rows: Row[], seconds: number): string {
  const failed = rows.filter((r) => !r.ok);
  const all = `${rows.length - failed.length} of ${rows.length} attacks met the hardened behaviour, in ${seconds.toFixed(1)} s`;
  return failed.length ? `${all}; FAILED: ${failed.map((r) => `${r.item} ${r.name}`).join('; ')}` : all;
}
