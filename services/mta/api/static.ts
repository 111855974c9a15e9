// The console's own files (services/mta/console/), by plain name only, with
// a policy that lets its pages run only their own scripts and styles, talk
// only to this API and frame only this API's sandboxed mail pages.
import { readFile } from 'node:fs/promises';
import { HttpError, RawBody } from '../../lib/http.ts';

const DIR = new URL('../console/', import.meta.url);

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml',
};

export const CONSOLE_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export async function consoleFile(name: string): Promise<RawBody> {
  // A plain name: no slash, no "..", nothing outside the directory.
  const match = /^[a-z][a-z0-9-]*\.(html|js|css|svg)$/.exec(name);
  const body = match && (await readFile(new URL(name, DIR)).catch(() => undefined));
  if (!match || !body) throw new HttpError(404, `no console file ${name}`);
  return new RawBody(body, TYPES[match[1]], {
    'content-security-policy': CONSOLE_POLICY,
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-cache',
  });
}
