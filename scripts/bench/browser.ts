// A browser for the lab's tests and measurements: Debian's chromium,
// headless, driven by playwright-core, with a fresh profile each time.
//
// It reaches only loopback. chromium makes requests of its own (sign-in,
// updates, safe browsing: accounts.google.com and the like), so it reaches
// only addresses in 127.0.0.0/8, written as addresses: every other request,
// a name included (localhost too), goes to a proxy on loopback, the gate,
// which records it and refuses it; and its host resolver answers "no such
// name" for every name, so the system resolver is never asked.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

export interface LockedBrowser {
  context: BrowserContext;
  refused: string[]; // what it tried to reach beyond loopback: "GET http://..." or "CONNECT host:port"
  close(): Promise<void>;
}

// Why no browser can be had here, or undefined.
export async function whyNoBrowser(): Promise<string | undefined> {
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} not installed (apt-get install chromium)`;
  return (await import('playwright-core').catch(() => undefined)) ? undefined : 'playwright-core not installed (npm ci)';
}

export async function launchBrowser(): Promise<LockedBrowser> {
  const playwright = await import('playwright-core');
  const refused: string[] = [];
  const gate = createServer((request, response) => {
    refused.push(`${request.method} ${request.url}`);
    response.writeHead(403, { 'content-type': 'text/plain' }).end('mail-lab reaches nothing beyond loopback\n');
  });
  gate.on('connect', (request, socket) => {
    refused.push(`CONNECT ${request.url}`);
    // A tunnel socket is ours to handle: chromium resetting a refused one
    // (ECONNRESET) was an uncaught error that failed whichever test ran.
    socket.on('error', () => undefined);
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
  return {
    context,
    refused,
    async close() {
      await context.close();
      gate.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
