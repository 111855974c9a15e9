// A browser for tests: Debian's chromium, headless, driven by playwright-core,
// with a fresh profile each time. Like the other external tools, a missing
// chromium or playwright-core fails the test under CI=true and skips it, with
// the reason, elsewhere.
//
// Tests talk to loopback only, and chromium makes requests of its own
// (sign-in, updates, safe browsing: accounts.google.com and the like). So it
// reaches only addresses in 127.0.0.0/8, written as addresses: every other
// request, a name included (localhost too), goes to a proxy on loopback, the
// gate, which records it and refuses it; and its host resolver answers "no
// such name" for every name, so the system resolver is never asked.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { BrowserContext } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

const LOCKDOWN = [
  // <-loopback> drops chromium's own exemption of localhost names and loopback
  // addresses from the proxy; then only loopback addresses are exempt again.
  '--proxy-bypass-list=<-loopback>;127.0.0.0/8',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.*',
  '--force-webrtc-ip-handling-policy=disable_non_proxied_udp',
];

// What each browser tried to reach beyond loopback: "GET http://..." or
// "CONNECT host:port", as the gate saw it; all of it refused.
const attempts = new WeakMap<BrowserContext, string[]>();
export const beyondLoopback = (context: BrowserContext): string[] => attempts.get(context) ?? [];

// Closed, and its profile removed, when the test ends.
export async function openBrowser(t: TestContext): Promise<BrowserContext | undefined> {
  let missing = existsSync(CHROMIUM) ? undefined : `${CHROMIUM} not installed (apt-get install chromium)`;
  const playwright = await import('playwright-core').catch(() => undefined);
  if (!playwright) missing ??= 'playwright-core not installed (npm ci)';
  if (missing || !playwright) {
    if (process.env.CI === 'true') throw new Error(missing);
    t.skip(missing);
    return undefined;
  }
  const seen: string[] = [];
  const gate = createServer((request, response) => {
    seen.push(`${request.method} ${request.url}`);
    response.writeHead(403, { 'content-type': 'text/plain' }).end('mail-lab tests reach nothing beyond loopback\n');
  });
  gate.on('connect', (request, socket) => {
    seen.push(`CONNECT ${request.url}`);
    socket.end('HTTP/1.1 403 Forbidden\r\n\r\n');
  });
  await new Promise<void>((resolve) => gate.listen(0, '127.0.0.1', resolve));
  const profile = mkdtempSync(join(tmpdir(), 'chromium-profile-'));
  // playwright-core takes the profile directory itself and passes --user-data-dir.
  const context = await playwright.chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    args: [...ARGS, `--proxy-server=http://127.0.0.1:${(gate.address() as { port: number }).port}`, ...LOCKDOWN],
    viewport: { width: 1280, height: 900 },
    timeout: 20_000,
  });
  attempts.set(context, seen);
  t.after(async () => {
    await context.close();
    gate.close();
    rmSync(profile, { recursive: true, force: true });
    if (seen.length) t.diagnostic(`refused beyond loopback: ${seen.join(', ')}`);
  });
  return context;
}
