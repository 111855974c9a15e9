// When a service that was running dies, the runner starts it again, as
// compose's `restart: unless-stopped` does, after a delay that doubles with
// each crash, as Docker's does (100, 200, 400, 800 ms). A crash is forgotten
// after a minute, so a service that fails now and then is always restarted
// quickly. Docker would retry forever; a person at the runner is better told
// that 5 crashes within a minute are a fault a restart will not cure, and the
// runner gives up on the lab.
export const CRASH_LIMIT = 5;
export const CRASH_WINDOW_MS = 60_000;
const FIRST_DELAY_MS = 100;

export class Crashes {
  private times = new Map<string, number[]>();

  // Records a crash of the service: the delay before its restart, or
  // undefined when that was one crash too many.
  record(service: string): { count: number; delayMs: number | undefined } {
    const now = Date.now();
    const recent = (this.times.get(service) ?? []).filter((t) => now - t < CRASH_WINDOW_MS);
    recent.push(now);
    this.times.set(service, recent);
    return { count: recent.length, delayMs: recent.length < CRASH_LIMIT ? FIRST_DELAY_MS * 2 ** (recent.length - 1) : undefined };
  }
}
