// HTTP to a running lab: the services' health endpoints and the MTAs' API.
// Connection refused means no lab is there, which is said as such.
import { LabError, LabNotAnswering } from './errors.ts';

export async function getJson<T = any>(url: string, timeoutMs = 3000): Promise<T> {
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause;
    if (cause?.code === 'ECONNREFUSED') throw new LabNotAnswering(`nothing answers at ${new URL(url).host}: is the lab running?`);
    throw new LabError(`${url}: ${cause?.code ?? (error as Error).message}`);
  }
  const body = await response.json().catch(() => undefined);
  if (!response.ok) throw new LabError(`${url}: ${response.status} ${body?.error ?? response.statusText}`);
  return body as T;
}

export type Health = { up: true; detail: Record<string, unknown> } | { up: false; reason: string };

export async function health(url: string, timeoutMs = 1000): Promise<Health> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const { status, ...detail } = await response.json();
    return response.ok && status === 'ok' ? { up: true, detail } : { up: false, reason: `HTTP ${response.status}, status ${status}` };
  } catch (error) {
    const code = (error as { cause?: { code?: string } }).cause?.code;
    return { up: false, reason: code === 'ECONNREFUSED' ? 'nothing listens there' : (code ?? (error as Error).message) };
  }
}
