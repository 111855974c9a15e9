// Who is asking the API in classroom mode. A tool sends its credential in
// each request (`Authorization: Bearer <credential>`); a browser logs in once
// (POST /api/login) and then carries a session cookie, which no page script
// can read (HttpOnly) and no other site's page makes it send (SameSite=Strict).
// A write with the cookie must also carry the login's CSRF token in a header
// (X-CSRF-Token), which a page of another origin cannot know; and a write that
// names another origin (Origin) is refused whatever it carries.
//
// Logins live in this process's memory: a logout, the end of their 12 hours
// or a restart ends them, and a cookie of one instance is no login at another.
// Wrong credentials are counted per client address, at login and in Bearer
// requests alike: after 10 within 5 minutes, 429 with Retry-After until the
// oldest is 5 minutes old, whatever the request carries (auth-throttle.ts).
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { labAddress } from '../../lib/addressing.ts';
import type { Classroom, Identity } from '../../lib/classroom.ts';
import { HttpError, RawBody, readJson } from '../../lib/http.ts';
import { AuthThrottle } from '../../lib/auth-throttle.ts';

// The cookie is named for its instance: cookies do not tell ports apart, and
// under Docker every console is at 127.0.0.1, so one name would make a login
// at the sender's console end the one at the receiver's.
export const cookieName = (instance: string) => `lab_session_${instance}`;
const FAILURES = 10;
const LIFETIME_S = 12 * 3600; // a school day and then some
// Each person's logins are bounded, not everyone's together: past the bound a
// person's own oldest login ends, so memory stays bounded (the class's size
// times this) and no one can end anyone else's by logging in again and again.
const LOGINS_EACH = 20;

interface Login {
  identity: Identity;
  credential: string; // forwarded to the DNS control endpoint for the zone views
  csrf: string;
  expires: number;
}

// One request's caller: who, with which credential, and the login the
// cookie names (none for Bearer requests).
export interface Caller {
  identity: Identity;
  credential: string;
  session?: string;
}

const loginName = (identity: Identity) => (identity.role === 'teacher' ? 'teacher' : identity.student.name);
const random = () => randomBytes(32).toString('base64url'); // 256 bits
const sameText = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));
const json = (value: unknown, headers: Record<string, string> = {}) =>
  new RawBody(Buffer.from(JSON.stringify(value, null, 2) + '\n'), 'application/json; charset=utf-8', { 'cache-control': 'no-store', ...headers });

export class Logins {
  private classroom: Classroom;
  private logins = new Map<string, Login>(); // cookie value -> login, oldest first
  private throttle = new AuthThrottle(FAILURES);
  private cookie: string;

  constructor(classroom: Classroom, instance: string) {
    this.classroom = classroom;
    this.cookie = cookieName(instance);
  }

  // POST /api/login {"credential"}: the cookie, and what /api/me says.
  async login(request: IncomingMessage): Promise<RawBody> {
    checkWrite(request);
    const body = (await readJson(request)) as { credential?: unknown } | null;
    if (typeof body?.credential !== 'string' || body.credential === '') throw new HttpError(400, 'send {"credential": "<your credential>"}');
    const identity = this.identify(request, body.credential);
    if (identity.role === 'teacher' && identity.grader) {
      throw new HttpError(403, "that is the lab's own credential, for its exercise checks (grader): it logs in to no console; log in with your own credential");
    }
    const session = random();
    const login = { identity, credential: body.credential, csrf: random(), expires: Date.now() + LIFETIME_S * 1000 };
    this.logins.set(session, login);
    const who = loginName(identity);
    const theirs = [...this.logins].filter(([, l]) => loginName(l.identity) === who);
    if (theirs.length > LOGINS_EACH) this.logins.delete(theirs[0][0]);
    return json(this.me({ identity, credential: login.credential, session }), { 'set-cookie': `${this.cookie}=${session}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${LIFETIME_S}` });
  }

  // POST /api/logout: the login ends here, whatever the browser keeps.
  logout(caller: Caller): RawBody {
    if (!caller.session) throw new HttpError(400, 'nothing to log out: this request carries a credential, not a login cookie');
    this.logins.delete(caller.session);
    return json({ loggedOut: true }, { 'set-cookie': `${this.cookie}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0` });
  }

  // GET /api/me (and the answer to a login).
  me(caller: Caller): { role: string; student?: { name: string; domain: string; address: string }; class: string; csrf?: string } {
    const { identity } = caller;
    return {
      role: identity.role,
      ...(identity.role === 'student' && { student: { ...identity.student } }),
      class: this.classroom.name,
      ...(caller.session && { csrf: this.logins.get(caller.session)?.csrf }),
    };
  }

  // Whether a caller's login still holds (a stream of events ends with it).
  holds(caller: Caller): boolean {
    return !caller.session || this.current(caller.session) !== undefined;
  }

  // Who sent this request: 401 without a credential or a login, 429 after
  // too many wrong credentials, 403 for a write from a page of another
  // origin or, with the cookie, without the login's CSRF token.
  caller(request: IncomingMessage): Caller {
    const write = request.method !== 'GET' && request.method !== 'HEAD';
    if (write) checkWrite(request);
    const authorization = request.headers.authorization;
    if (authorization !== undefined) {
      const credential = /^Bearer +(\S+) *$/i.exec(authorization)?.[1];
      if (credential === undefined) throw new HttpError(401, 'log in: the Authorization header must be Bearer <credential>');
      return { identity: this.identify(request, credential), credential };
    }
    const sessions = cookies(request.headers.cookie, this.cookie);
    const session = sessions.find((s) => this.current(s));
    if (!session) {
      throw new HttpError(401, sessions.length ? 'log in: your login has ended (logged out, expired, or the MTA restarted)' : 'log in: POST /api/login {"credential"} in a browser, or send Authorization: Bearer <credential> (the teacher hands credentials out: npm run lab -- class init)');
    }
    const login = this.current(session)!;
    if (write) {
      const token = request.headers['x-csrf-token'];
      if (typeof token !== 'string' || !sameText(token, login.csrf)) throw new HttpError(403, 'a change with the login cookie needs the header X-CSRF-Token: <csrf from the login or GET /api/me>');
    }
    return { identity: login.identity, credential: login.credential, session };
  }

  private identify(request: IncomingMessage, credential: string): Identity {
    const client = labAddress(request.socket.remoteAddress ?? '');
    const wait = this.throttle.lockedFor(client);
    if (wait) throw new HttpError(429, `too many wrong credentials from ${client}: try again in ${wait} s`, { 'retry-after': String(wait) });
    const identity = this.classroom.identify(credential);
    if (identity) return identity;
    this.throttle.failed(client);
    throw new HttpError(401, "log in: that credential is no one's in this class");
  }

  private current(session: string): Login | undefined {
    const login = this.logins.get(session);
    if (login && login.expires <= Date.now()) this.logins.delete(session);
    return login && login.expires > Date.now() ? login : undefined;
  }
}

// A write comes from the console's own page or from a tool, and is JSON:
// a page of another origin names itself in Origin, and cannot send JSON
// without a preflight, which this API never grants.
function checkWrite(request: IncomingMessage): void {
  const { origin, host } = request.headers;
  if (origin !== undefined && origin !== `http://${host}`) throw new HttpError(403, `changes are not taken from web pages of other origins (${origin})`);
  const length = Number(request.headers['content-length'] ?? 0);
  const body = length > 0 || request.headers['transfer-encoding'] !== undefined;
  if (body && !/^application\/json\s*(;|$)/i.test(request.headers['content-type'] ?? '')) throw new HttpError(415, 'send JSON (Content-Type: application/json)');
}

// The values of one cookie in a Cookie header (a browser may send several).
function cookies(header: string | undefined, name: string): string[] {
  return (header ?? '')
    .split(';')
    .map((pair) => pair.trim())
    .filter((pair) => pair.startsWith(`${name}=`))
    .map((pair) => pair.slice(name.length + 1));
}
