// The console's zone view (GET/PUT /api/zone, POST /api/zone/records) is
// the lab DNS's: this API forwards the call to the DNS control endpoint's
// /zones/<domain> routes with the caller's own credential, and answers with
// what the DNS answered, status and body, so that a browser needs to reach
// only its own console and the DNS decides, as it does for the CLI.
import type { Endpoint } from '../../lib/config.ts';
import { HttpError, Takeover } from '../../lib/http.ts';

const TIMEOUT_MS = 5000;

export async function forwardZone(control: Endpoint, request: { method: string; path: string; credential: string; body?: unknown }): Promise<Takeover> {
  const where = `${control.host.includes(':') ? `[${control.host}]` : control.host}:${control.port}`;
  let response: Response;
  try {
    response = await fetch(`http://${where}${request.path}`, {
      method: request.method,
      headers: { authorization: `Bearer ${request.credential}`, ...(request.body !== undefined && { 'content-type': 'application/json' }) },
      body: request.body === undefined ? undefined : JSON.stringify(request.body),
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (error) {
    const { name, message, cause } = error as Error & { cause?: { code?: string; message?: string } };
    const why = name === 'TimeoutError' ? `no answer within ${TIMEOUT_MS} ms` : (cause?.code ?? cause?.message ?? message);
    throw new HttpError(502, `the lab DNS control endpoint at ${where} does not answer (${why})`);
  }
  const text = await response.text();
  return new Takeover((answer) => {
    answer.writeHead(response.status, {
      'content-type': 'application/json; charset=utf-8', // the DNS answers JSON; nothing else is passed on as a page
      'content-length': Buffer.byteLength(text),
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      ...(response.headers.has('retry-after') && { 'retry-after': response.headers.get('retry-after')! }),
    });
    answer.end(text);
  });
}
