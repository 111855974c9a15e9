// Runs dnsperf against one server and reads the figures from its report.
import { onCpu, start } from './processes.ts';

export interface DnsperfResult {
  qps: number;
  avgLatencyMs: number;
  sent: number;
  lost: number;
}

// cpu: the one CPU to run dnsperf on (taskset), or undefined for any.
export async function dnsperf(host: string, port: number, dataFile: string, seconds: number, cpu?: number): Promise<DnsperfResult> {
  const args = ['-s', host, '-p', String(port), '-d', dataFile, '-c', '4', '-q', '100', '-l', String(seconds)];
  const child = start(...onCpu(cpu, 'dnsperf', args), { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const figure = (label: string) => {
    const match = new RegExp(`${label}:\\s+([\\d.]+)`).exec(output);
    if (!match) throw new Error(`dnsperf ${args.join(' ')} (exit ${code}): no "${label}" in its output:\n${output}`);
    return Number(match[1]);
  };
  return {
    qps: figure('Queries per second'),
    avgLatencyMs: figure('Average Latency \\(s\\)') * 1000,
    sent: figure('Queries sent'),
    lost: figure('Queries lost'),
  };
}
