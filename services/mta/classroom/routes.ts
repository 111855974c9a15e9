// The API's own routes in classroom mode, for a caller logins.ts has let in:
//
//   GET  /api/me                  {role, student?: {name, domain, address}, class, csrf?}
//   POST /api/logout              ends the login of the cookie
//   GET  /api/classroom           {name, students: [{name, domain, address}]} (a student: themselves)
//   GET  /api/zone?domain=        the student's zone, from the DNS (the teacher names the domain)
//   PUT  /api/zone?domain=        {"records", "serial"?}: replaces the student's records
//   POST /api/zone/records?domain=  {"add"?, "delete"?}: one change
//   GET  /api/classroom/dkim?domain=  the student's DKIM selectors and records (the sender)
//   POST /api/classroom/dkim      {"selector", "algorithm", "domain"?}: a new key pair (the sender)
//   /api/exercises...             the exercises and their checks (the receiver: exercises/routes.ts)
import type { IncomingMessage } from 'node:http';
import { MAILBOXES_AT, SUBMISSION_AT, type Classroom } from '../../lib/classroom.ts';
import type { Endpoint } from '../../lib/config.ts';
import { HttpError, readJson } from '../../lib/http.ts';
import type { Instance } from '../instance.ts';
import type { Caller, Logins } from './logins.ts';
import type { Scope } from './scope.ts';
import type { StudentKeys } from './student-keys.ts';
import { forwardZone } from './zone-proxy.ts';
import type { ExerciseRoutes } from '../exercises/routes.ts';

export interface ClassroomContext {
  classroom: Classroom;
  logins: Logins;
  keys?: StudentKeys; // at the sender
  exercises?: ExerciseRoutes; // at the receiver
}

// A zone change as large as the DNS takes: 64 KiB of records, escaped as JSON.
const ZONE_BODY = 256 * 1024;

const ZONE_ROUTES: Record<string, { method: string; suffix: string }[]> = {
  '/api/zone': [
    { method: 'GET', suffix: '' },
    { method: 'PUT', suffix: '' },
  ],
  '/api/zone/records': [{ method: 'POST', suffix: '/records' }],
};

// The answer for a classroom route, or undefined for any other path.
export async function classroomRoute(ctx: ClassroomContext & { instance: Instance; dnsControl: Endpoint }, request: IncomingMessage, url: URL, path: string, caller: Caller, scope: Scope): Promise<unknown> {
  const { classroom, logins, keys } = ctx;
  const method = request.method ?? 'GET';
  const only = (allowed: string) => {
    if (method !== allowed) throw new HttpError(405, `${path}: ${allowed} only`);
  };
  const domainParam = () => url.searchParams.get('domain') ?? undefined;

  if (path === '/api/me') {
    only('GET');
    return logins.me(caller);
  }
  if (path === '/api/logout') {
    only('POST');
    return logins.logout(caller);
  }
  if (path === '/api/classroom') {
    only('GET');
    const students = scope.student ? [scope.student] : classroom.students;
    return { name: classroom.name, students: students.map(({ name, domain, address }) => ({ name, domain, address })) };
  }
  const zone = ZONE_ROUTES[path];
  if (zone) {
    const route = zone.find((r) => r.method === method);
    if (!route) throw new HttpError(405, `${path}: ${zone.map((r) => r.method).join(' or ')} only`);
    const domain = scope.studentDomain(domainParam(), 'zone');
    const body = method === 'GET' ? undefined : await readJson(request, ZONE_BODY);
    return forwardZone(ctx.dnsControl, { method, path: `/zones/${domain}${route.suffix}`, credential: caller.credential, body });
  }
  if (path === '/api/exercises' || path.startsWith('/api/exercises/')) {
    if (!ctx.exercises) throw new HttpError(404, `the exercises are checked at the ${MAILBOXES_AT}, where the students' mailboxes are, not at ${ctx.instance.name}`);
    return ctx.exercises.route(request, url, path, caller, scope);
  }
  if (path === '/api/classroom/dkim') {
    if (!keys) throw new HttpError(404, `students' DKIM keys are made at the sender (${SUBMISSION_AT}), not at ${ctx.instance.name}`);
    if (method === 'GET') {
      const asked = domainParam();
      return keys.list(asked || scope.student ? [scope.studentDomain(asked, 'domain')] : classroom.students.map((s) => s.domain));
    }
    only('POST');
    const body = ((await readJson(request)) ?? {}) as Record<string, unknown>;
    if (body.domain !== undefined && typeof body.domain !== 'string') throw new HttpError(400, '"domain" must be a student\'s domain');
    return keys.make(scope.studentDomain(body.domain as string | undefined, 'domain'), body.selector, body.algorithm);
  }
  return undefined;
}
