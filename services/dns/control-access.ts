// Who may do what at the DNS control endpoint in classroom mode (the class's
// credentials, services/lib/classroom.ts). A request carries its credential
// as `Authorization: Bearer <credential>`, never in the URL. Without one, or
// with one that is no one's, it is a 401; a student asking for what is
// another's gets a 403 that says whose it is; the teacher may do everything.
//
// Guessing is counted per client address: after 10 failed credentials within
// 5 minutes, every request from that address that needs a credential gets 429
// with Retry-After, whatever it carries, until the oldest failure is 5
// minutes old (lib/auth-throttle.ts, as for SMTP AUTH).
// A success does not clear the count: a student could otherwise reset it
// between guesses at another's credential.
import type { IncomingMessage } from 'node:http';
import { AuthThrottle } from '../lib/auth-throttle.ts';
import { HttpError } from '../lib/http.ts';
import type { Classroom, Identity } from '../lib/classroom.ts';

const FAILURES = 10;

export class ControlAccess {
  private classroom: Classroom;
  private throttle = new AuthThrottle(FAILURES);

  constructor(classroom: Classroom) {
    this.classroom = classroom;
  }

  // The identity of the request's credential; 429, or 401 with the reason.
  identify(request: IncomingMessage): Identity {
    const address = request.socket.remoteAddress ?? '';
    const wait = this.throttle.lockedFor(address);
    if (wait) {
      throw new HttpError(429, `too many wrong credentials from ${address}: try again in ${wait} s`, { 'retry-after': String(wait) });
    }
    const header = request.headers.authorization;
    if (header === undefined) throw new HttpError(401, 'log in: send your credential as Authorization: Bearer <credential> (the teacher hands them out: npm run lab -- class init)');
    const credential = /^Bearer +(\S+) *$/i.exec(header)?.[1];
    const identity = credential === undefined ? undefined : this.classroom.identify(credential);
    if (identity) return identity;
    this.throttle.failed(address);
    throw new HttpError(401, credential === undefined ? 'log in: the Authorization header must be Bearer <credential>' : "log in: that credential is no one's in this class");
  }

  // A student's own domain, or the teacher's any.
  checkZone(identity: Identity, domain: string): void {
    if (identity.role === 'teacher') return;
    const owner = this.classroom.studentOf(domain);
    if (owner?.domain === domain && owner.name === identity.student.name) return;
    const { name, domain: own } = identity.student;
    throw new HttpError(403, owner?.domain === domain ? `${domain} is ${owner.name}'s zone; you are ${name} (${own})` : `${domain} is not your zone; you are ${name} (${own})`);
  }

  checkTeacher(identity: Identity, what: string): void {
    if (identity.role === 'teacher') return;
    throw new HttpError(403, `${what} is the teacher's; you are ${identity.student.name} (${identity.student.domain})`);
  }
}
