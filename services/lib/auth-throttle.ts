// Password guessing at submission, counted per client address (a new
// connection starts no new count): each failed AUTH is answered later than
// the one before (0.25 s, 0.5 s, 1 s, 2 s), and the fifth failure within
// 5 minutes locks the address out: 421 4.7.0, the connection is closed, and
// every AUTH from that address gets the same until its oldest failure is
// 5 minutes old, whatever the password. A success does not clear the count:
// a user with one account could otherwise reset it between guesses at another.
// The classroom's credentials at the MTA API and the DNS control endpoint
// (mta/classroom/logins.ts, dns/control-access.ts) count the same way, with
// 10 failures allowed, and answer without the delays.
const AUTH_FAILURES = 5;
const WINDOW_MS = 5 * 60_000;
const FIRST_DELAY_MS = 250;
const SWEEP_AT = 1024; // addresses remembered before the stale ones are dropped

export class AuthThrottle {
  private failures = new Map<string, number[]>(); // address -> times of its failures, oldest first
  private allowed: number;

  constructor(allowed = AUTH_FAILURES) {
    this.allowed = allowed;
  }

  // Seconds until the address may try again; 0 when it may now.
  lockedFor(address: string): number {
    const recent = this.recent(address);
    return recent.length >= this.allowed ? Math.ceil((recent[0] + WINDOW_MS - Date.now()) / 1000) : 0;
  }

  // Counts a failure: how long to wait before answering it, or 'locked' when
  // this failure locks the address out.
  failed(address: string): number | 'locked' {
    if (this.failures.size >= SWEEP_AT) for (const known of [...this.failures.keys()]) this.recent(known);
    const recent = [...this.recent(address), Date.now()];
    this.failures.set(address, recent);
    return recent.length >= this.allowed ? 'locked' : FIRST_DELAY_MS * 2 ** (recent.length - 1);
  }

  private recent(address: string): number[] {
    const since = Date.now() - WINDOW_MS;
    const recent = (this.failures.get(address) ?? []).filter((at) => at > since);
    if (recent.length) this.failures.set(address, recent);
    else this.failures.delete(address);
    return recent;
  }
}
