// One JSON request to a lab HTTP service (the DNS control endpoint, an MTA's
// API), with a class credential (or none), from localAddress when given (the
// services count per client address), with any further header fields. For
// the benchmarks and the tests alike.
import { request } from 'node:http';

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

export function call(url: string, credential: string | undefined, method = 'GET', body?: unknown, localAddress?: string, headers: Record<string, string> = {}): Promise<Answer> {
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        localAddress,
        headers: {
          ...(credential !== undefined && { authorization: `Bearer ${credential}` }),
          ...(data && { 'content-type': 'application/json', 'content-length': data.length }),
          ...headers,
        },
        timeout: 10_000,
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
        response.on('end', () => {
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // not JSON: kept as text
          }
          resolve({ status: response.statusCode!, headers: response.headers, body: parsed });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer within 10 s`)));
    req.on('error', reject);
    req.end(data);
  });
}
