// The benchmark's query mix, and the check that two servers answer it alike.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Zone, ZoneRecord } from '../../services/dns/zone-file.ts';

const run = promisify(execFile);

export interface Question {
  name: string;
  type: 'A' | 'MX' | 'TXT';
}

// A, MX and two-string TXT (RSA DKIM keys) names of the lab, in equal
// shares. Names with a ;@fault are left out: a delay or a drop would measure
// the fault, not the server.
export function queryMix(zones: Zone[]): Question[] {
  const faulty = new Set(zones.flatMap((z) => z.faults.map((f) => f.name)));
  const records = zones.flatMap((z) => z.records).filter((r) => !faulty.has(r.name));
  const names = (keep: (r: ZoneRecord) => boolean) => [...new Set(records.filter(keep).map((r) => r.name))];
  const byType = {
    A: names((r) => r.type === 'A'),
    MX: names((r) => r.type === 'MX'),
    TXT: names((r) => r.type === 'TXT' && r.data.length === 2),
  };
  for (const [type, list] of Object.entries(byType)) {
    if (list.length === 0) throw new Error(`the zones hold no ${type === 'TXT' ? 'two-string TXT' : type} record to ask for`);
  }
  const count = Math.max(byType.A.length, byType.MX.length, byType.TXT.length);
  return Array.from({ length: count }, (_, i) =>
    (['A', 'MX', 'TXT'] as const).map((type) => ({ name: byType[type][i % byType[type].length], type })),
  ).flat();
}

// The dnsperf data file: one "name type" per line.
export function dnsperfData(questions: Question[]): string {
  return questions.map((q) => `${q.name}. ${q.type}\n`).join('');
}

// The answer section as dig prints it, one record a line, white space
// evened out and sorted. Asked as dnsperf asks: UDP without EDNS; a
// truncated answer (which dnsperf would count as answered) shows as none.
export async function digAnswer(host: string, port: number, q: Question): Promise<string[]> {
  const args = [`@${host}`, '-p', String(port), `${q.name}.`, q.type, '+norec', '+noedns', '+ignore', '+noall', '+answer', '+tries=1', '+time=2'];
  const { stdout } = await run('dig', args);
  return stdout
    .split('\n')
    .filter((line) => line.trim() && !line.startsWith(';'))
    .map((line) => line.trim().split(/\s+/).join(' '))
    .sort();
}

// Asks both servers every distinct question; returns both answer sections
// of each question that they answer differently, or that gets no answer.
export async function compareAnswers(a: { label: string; host: string; port: number }, b: typeof a, questions: Question[]): Promise<string[]> {
  const distinct = [...new Map(questions.map((q) => [`${q.name} ${q.type}`, q])).values()];
  const diffs: string[] = [];
  for (const q of distinct) {
    const [left, right] = await Promise.all([digAnswer(a.host, a.port, q), digAnswer(b.host, b.port, q)]);
    const same = left.length === right.length && left.every((line, i) => line === right[i]);
    if (same && left.length > 0) continue;
    const section = (lines: string[]) => (lines.length ? lines.map((l) => `    ${l}`) : ['    (no answer)']);
    diffs.push([`${q.name} ${q.type}:`, `  ${a.label}:`, ...section(left), `  ${b.label}:`, ...section(right)].join('\n'));
  }
  return diffs;
}
