// HTTP to a running lab: the services' health endpoints and the MTAs' API.
// Connection refused means no lab is there, which is said as such.
import { LabError, LabNotAnswering } from './errors.ts';

// When the lab serves a class its APIs want a credential: the lab's tools
// (this CLI, the scenario runner) send LAB_TOKEN's, the teacher's for all.
export function credentialHeader(): Record<string, string> {
  const token = process.env.LAB_TOKEN;
  return token ? { authorization: `Bearer ${token}` } : {};
}

export async function getJson<T = any>(url: string, timeoutMs = 3000): Promise<T> {
  let response: Response;
  try {
    response = await fetch(url, { headers: credentialHeader(), signal: AbortSignal.timeout(timeoutMs) });
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause;
    if (cause?.code === 'ECONNREFUSED') throw new LabNotAnswering(`nothing answers at ${new URL(url).host}: is the lab running?`);
    throw new LabError(`${url}: ${cause?.code ?? (error as Error).message}`);
  }
  const body = await response.json().catch(() => undefined);
  if (response.status === 401 && !process.env.LAB_TOKEN) throw new LabError(`${url}: 401 ${body?.error ?? ''}: the lab serves a class; set LAB_TOKEN to the teacher's credential (npm run lab -- class init printed it)`);
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
