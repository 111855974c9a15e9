// A browser for tests: Debian's chromium, headless, driven by playwright-core,
// with a fresh profile each time. Like the other external tools, a missing
// chromium or playwright-core fails the test under CI=true and skips it, with
// the reason, elsewhere.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { BrowserContext } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

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
  const profile = mkdtempSync(join(tmpdir(), 'chromium-profile-'));
  // playwright-core takes the profile directory itself and passes --user-data-dir.
  const context = await playwright.chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    args: ARGS,
    viewport: { width: 1280, height: 900 },
    timeout: 20_000,
  });
  t.after(async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  });
  return context;
}
