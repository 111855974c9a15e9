// The lab DNS's recent queries, asked of its control endpoint on the
// console's behalf, so that a browser needs to reach only this API. In
// classroom mode with the caller's credential: the DNS shows a student only
// the queries for names in their zone.
import type { Endpoint } from '../../lib/config.ts';
import { HttpError } from '../../lib/http.ts';

const TIMEOUT_MS = 2000;

export async function recentQueries(control: Endpoint, url: URL, credential?: string): Promise<{ control: string; queries: unknown }> {
  const limit = Number(url.searchParams.get('limit') ?? 200);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new HttpError(400, 'limit must be a whole number from 1 to 1000');
  const query = new URLSearchParams({ limit: String(limit) });
  const name = url.searchParams.get('name');
  if (name) query.set('name', name);
  const where = `${control.host.includes(':') ? `[${control.host}]` : control.host}:${control.port}`;
  let response: Response;
  try {
    response = await fetch(`http://${where}/queries?${query}`, { signal: AbortSignal.timeout(TIMEOUT_MS), headers: credential ? { authorization: `Bearer ${credential}` } : {} });
  } catch (error) {
    const { name, message, cause } = error as Error & { cause?: { code?: string; message?: string } };
    const why = name === 'TimeoutError' ? `no answer within ${TIMEOUT_MS} ms` : (cause?.code ?? cause?.message ?? message);
    throw new HttpError(502, `the lab DNS control endpoint at ${where} does not answer (${why})`);
  }
  const body = (await response.json().catch(() => undefined)) as { error?: string } | undefined;
  if (!response.ok) throw new HttpError([400, 403, 429].includes(response.status) ? response.status : 502, `the lab DNS control endpoint at ${where} answered ${response.status}: ${body?.error ?? response.statusText}`);
  return { control: where, queries: body };
}
