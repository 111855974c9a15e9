// Runs dig against a server and reads its answer the way a person would.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface DigResult {
  status: string;
  flags: string[];
  answer: string[];
  authority: string[];
  additional: string[];
  ednsUdp?: number;
  text: string;
}

export async function dig(port: number, args: string[], server = '127.0.0.1'): Promise<DigResult> {
  const { stdout } = await run('dig', [`@${server}`, '-p', String(port), '+time=2', '+tries=1', ...args]);
  const section = (title: string) => {
    const match = new RegExp(`;; ${title} SECTION:\\n([\\s\\S]*?)(?:\\n\\n|$)`).exec(stdout);
    return match ? match[1].split('\n').filter((l) => l && !l.startsWith(';')).map((l) => l.split(/\s+/).join(' ')) : [];
  };
  return {
    status: /status: (\w+)/.exec(stdout)?.[1] ?? 'NONE',
    flags: /;; flags: ([^;]*);/.exec(stdout)?.[1].trim().split(' ') ?? [],
    answer: section('ANSWER'),
    authority: section('AUTHORITY'),
    additional: section('ADDITIONAL'),
    ednsUdp: Number(/; EDNS: version: \d+, flags:[^;]*; udp: (\d+)/.exec(stdout)?.[1]) || undefined,
    text: stdout,
  };
}
