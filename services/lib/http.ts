// The small JSON-over-HTTP servers of the lab (DNS control, MTA API): one
// handler that returns a value or throws HttpError, with limits on clients,
// time and body size. No request, however malformed, ends the process: it
// gets a 400 with a JSON error.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP, type Socket } from 'node:net';
import type { Endpoint } from './config.ts';

const MAX_BODY = 64 * 1024;
export const MAX_CONNECTIONS = 64; // a server's own default; a class needs more (classroom.ts)
// One client address may hold only 32 connections, so that one client cannot
// lock out the rest; that leaves it room for the 16 event streams the API
// allows (events.ts) and requests beside them.
const MAX_CONNECTIONS_PER_ADDRESS = 32;
// A client that has not sent its request header within this time is dropped:
// a slow-header client holds a slot for seconds, not a minute. Once the
// request is read, no timeout applies to the answer, so a stream of
// server-sent events stays open.
const HEADERS_TIMEOUT_MS = 3_000;
const REQUEST_TIMEOUT_MS = 10_000; // the whole request, body included
const KEEP_ALIVE_TIMEOUT_MS = 5_000; // idle between requests

export class HttpError extends Error {
  status: number;
  headers: Record<string, string>; // further header fields of the answer (Retry-After)
  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
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

// names: the host names the server is reached by (besides any address and
// localhost); a request for another name is refused (checkHost).
export function startHttp(listen: Endpoint, names: string[], handler: Handler, connections = MAX_CONNECTIONS): Promise<Server> {
  const server = createServer(
    {
      headersTimeout: HEADERS_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      connectionsCheckingInterval: 500, // how often the two timeouts above are checked (Node's default: 30 s)
    },
    (request, response) => {
      // Nothing thrown here may escape: an exception outside the handler's
      // promise would end the process.
      answer(request, names, handler).then(
        ({ status, body, headers }) => send(response, status, body, headers),
        () => response.destroy(), // the answer itself failed half-way: nothing sensible left to say
      );
    },
  );
  server.maxConnections = connections;
  limitPerAddress(server);
  server.on('clientError', refuseUnparsable);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve(server));
  });
}

export async function readJson(request: IncomingMessage, maxBytes = MAX_BODY): Promise<unknown> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of request) {
    size += chunk.length;
    if (size > maxBytes) throw new HttpError(413, `body larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'body is not JSON');
  }
}

async function answer(request: IncomingMessage, names: string[], handler: Handler): Promise<{ status: number; body: unknown; headers?: Record<string, string> }> {
  try {
    const url = parseUrl(request.url);
    checkHost(request.headers.host, names);
    return { status: 200, body: await handler(request, url) };
  } catch (error) {
    // A URIError is a malformed percent-encoding in the request (decodeURIComponent).
    const status = error instanceof HttpError ? error.status : error instanceof URIError ? 400 : 500;
    return { status, body: { error: (error as Error).message }, headers: error instanceof HttpError ? error.headers : undefined };
  }
}

// DNS rebinding: a page whose own name is made to resolve to this server
// would be same-origin with it and could read and write here. A browser
// always sends the name it used in Host, so only an address (no page can
// rebind one), localhost or the server's own names are answered. No Host at
// all (HTTP/1.0) is no browser.
function checkHost(host: string | undefined, names: string[]): void {
  if (host === undefined) return;
  const name = (host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d*$/, '')).toLowerCase().replace(/\.$/, '');
  if (isIP(name) || name === 'localhost' || names.includes(name)) return;
  throw new HttpError(421, `this server does not answer for the name "${name}": use its address, localhost or ${names.join(', ')}`);
}

function parseUrl(target = '/'): URL {
  try {
    return new URL(target, 'http://lab');
  } catch {
    throw new HttpError(400, 'malformed request target');
  }
}

function limitPerAddress(server: Server): void {
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress;
    if (address === undefined) return socket.destroy(); // already gone
    const count = (open.get(address) ?? 0) + 1;
    if (count > MAX_CONNECTIONS_PER_ADDRESS) return socket.destroy(); // as Node drops a connection over maxConnections
    open.set(address, count);
    socket.once('close', () => {
      const left = open.get(address)! - 1;
      if (left === 0) open.delete(address);
      else open.set(address, left);
    });
  });
}

// A request Node's parser cannot read, or one too slow: a JSON error in
// place of Node's empty answer, then the connection closes.
function refuseUnparsable(error: NodeJS.ErrnoException, socket: Socket): void {
  // An answer already under way on this connection cannot be followed by another.
  const answering = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage?.headersSent;
  if (error.code === 'ECONNRESET' || !socket.writable || answering) return void socket.destroy();
  const [status, reason] =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'Request Timeout'] : error.code === 'HPE_HEADER_OVERFLOW' ? [431, 'Request Header Fields Too Large'] : [400, 'Bad Request'];
  const text = JSON.stringify({ error: status === 400 ? `malformed request (${error.code})` : reason.toLowerCase() }) + '\n';
  socket.end(`HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`);
}

function send(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (body instanceof Takeover) return body.answer(response);
  // Never let a browser guess a type: a message or a JSON value is not a page.
  response.setHeader('x-content-type-options', 'nosniff');
  for (const [name, value] of Object.entries(headers)) response.setHeader(name, value);
  if (body instanceof RawBody) {
    response.writeHead(status, { ...body.headers, 'content-type': body.contentType, 'content-length': body.body.length });
    response.end(body.body);
    return;
  }
  const text = JSON.stringify(body, null, 2) + '\n';
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}
