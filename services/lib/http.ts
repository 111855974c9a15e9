// The small JSON-over-HTTP servers of the lab (DNS control, MTA API): one
// handler that returns a value or throws HttpError, with limits on clients,
// time and body size.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Endpoint } from './config.ts';

const MAX_BODY = 64 * 1024;

export class HttpError extends Error {
  status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

// What a handler may return besides JSON: raw bytes with their content type
// (and any further header fields, such as a Content-Security-Policy).
export class RawBody {
  body: Buffer;
  contentType: string;
  headers: Record<string, string>;
  constructor(body: Buffer, contentType: string, headers: Record<string, string> = {}) {
    this.body = body;
    this.contentType = contentType;
    this.headers = headers;
  }
}

// What a handler returns when it answers by itself, e.g. a stream of
// server-sent events that stays open.
export class Takeover {
  answer: (response: ServerResponse) => void;
  constructor(answer: (response: ServerResponse) => void) {
    this.answer = answer;
  }
}

export type Handler = (request: IncomingMessage, url: URL) => Promise<unknown>;

export function startHttp(listen: Endpoint, handler: Handler): Promise<Server> {
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://lab');
    handler(request, url)
      .then((body) => send(response, 200, body))
      .catch((error: Error) => send(response, error instanceof HttpError ? error.status : 500, { error: error.message }));
  });
  server.requestTimeout = 10_000;
  server.maxConnections = 64;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve(server));
  });
}

export async function readJson(request: IncomingMessage): Promise<unknown> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of request) {
    size += chunk.length;
    if (size > MAX_BODY) throw new HttpError(413, `body larger than ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'body is not JSON');
  }
}

function send(response: ServerResponse, status: number, body: unknown): void {
  if (body instanceof Takeover) return body.answer(response);
  // Never let a browser guess a type: a message or a JSON value is not a page.
  response.setHeader('x-content-type-options', 'nosniff');
  if (body instanceof RawBody) {
    response.writeHead(status, { ...body.headers, 'content-type': body.contentType, 'content-length': body.body.length });
    response.end(body.body);
    return;
  }
  const text = JSON.stringify(body, null, 2) + '\n';
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}
