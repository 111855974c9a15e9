// A browser for tests (scripts/bench/browser.ts: chromium, headless, reaching
// nothing beyond loopback). Like the other external tools, a missing chromium
// or playwright-core fails the test under CI=true and skips it, with the
// reason, elsewhere.
import type { TestContext } from 'node:test';
import type { BrowserContext } from 'playwright-core';
import { launchBrowser, whyNoBrowser } from '../../scripts/bench/browser.ts';

export { CHROMIUM } from '../../scripts/bench/browser.ts';

// What each browser tried to reach beyond loopback, as the gate saw it; all of it refused.
const attempts = new WeakMap<BrowserContext, string[]>();
export const beyondLoopback = (context: BrowserContext): string[] => attempts.get(context) ?? [];

// Closed, and its profile removed, when the test ends.
export async function openBrowser(t: TestContext): Promise<BrowserContext | undefined> {
  const missing = await whyNoBrowser();
  if (missing) {
    if (process.env.CI === 'true') throw new Error(missing);
    t.skip(missing);
    return undefined;
  }
  const browser = await launchBrowser();
  attempts.set(browser.context, browser.refused);
  t.after(async () => {
    await browser.close();
    if (browser.refused.length) t.diagnostic(`refused beyond loopback: ${browser.refused.join(', ')}`);
  });
  return browser.context;
}
