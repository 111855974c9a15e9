// The instance's HTTP API: what happened to every message, and the web
// console that shows it (GET /). Read-only, but for the lab's own door for
// direct: steps under Docker (direct.ts).
//
//   GET /api/health
//   GET /api/sessions?messageId=&recipient=&disposition=   newest first
//   GET /api/sessions/page?limit=&before=&disposition=     a page of sessions as rows: who, what, verdicts, fate, codes
//   GET /api/sessions/:id                                   the whole record
//   GET /api/mailboxes                                      folders and counts
//   GET /api/mailboxes/:mailbox/:folder?limit=&before=      a page of a folder's messages with their verdicts
//   GET /api/messages/:id                                   headers, and the session it came from
//   GET /api/messages/:id/raw                               the stored message (message/rfc822)
//   GET /api/messages/:id/parts                             its text part, whether it has HTML, its attachments
//   GET /api/messages/:id/html                              its HTML part, as a sandboxed page that can load and run nothing
//   GET /api/queue                                          outbound queue: attempts, last error, next try
//   GET /api/queue/:id                                      one entry, per recipient
//   GET /api/dns/queries?limit=&name=                       the lab DNS's recent queries (from its control endpoint)
//   GET /api/events                                         server-sent events: "session" (a row), "queue"
//   GET /api/reports                                        the DMARC aggregate reports in the caller's mailboxes, read (reports.ts)
//   GET /  and  /console/:file                              the web console
//   POST /api/direct                                        lab-only: one SMTP transaction from this instance's address (direct.ts)
//   POST /api/reports/send                                  the teacher: the DMARC aggregate reports not yet sent, now (reports/reporter.ts)
//   POST /api/reports/failure                               the teacher: {"enabled": true|false}: DMARC failure reports on or off (reports/failure.ts)
// Pages: ?limit= (default 50, at most 200); the answer's "next" is the ?before= of the following page.
//
// In classroom mode (a class in LAB_CLASS_DIR) every route but the console's
// files, /api/health and POST /api/login needs a credential or a login
// (classroom/logins.ts), a student sees only what is theirs
// (classroom/scope.ts), and the classroom's own routes are open
// (classroom/routes.ts): logins, the student's zone, DKIM keys.
import type { Server } from 'node:http';
import type { Endpoint } from '../../lib/config.ts';
import { HttpError, MAX_CONNECTIONS, RawBody, readJson, startHttp } from '../../lib/http.ts';
import { htmlPage, MAIL_HTML_POLICY, messageParts } from './body.ts';
import { LiveEvents, MAX_CLIENTS } from './events.ts';
import { sendDirect, type DirectContext } from './direct.ts';
import type { Instance } from '../instance.ts';
import { recentQueries } from './lab-dns.ts';
import type { Reporter } from '../reports/reporter.ts';
import type { FailureReporter } from '../reports/failure.ts';
import { listReports } from './reports.ts';
import type { LabResolver } from '../../lib/resolver.ts';
import type { Maildir } from '../store/maildir.ts';
import { folderPage, pageQuery, sessionPage } from './pages.ts';
import type { Queue } from '../outbound/queue.ts';
import type { SessionStore } from '../store/sessions.ts';
import { consoleFile } from './static.ts';
import { parseHeaders } from '../smtp/headers.ts';
import { connectionsFor, consolesFor, MAILBOXES_AT } from '../../lib/classroom.ts';
import { Logins, type Caller } from '../classroom/logins.ts';
import { classroomRoute, type ClassroomContext } from '../classroom/routes.ts';
import { EVERYONE, Scope } from '../classroom/scope.ts';

export interface ApiContext {
  instance: Instance;
  maildir: Maildir;
  sessions: SessionStore;
  queue: Queue;
  dnsControl: Endpoint; // the lab DNS's control endpoint, for its query log
  direct?: DirectContext; // what an instance needs to send for direct: steps (an API on stored data alone has none)
  mxWorkers?: () => { listening: number; of: number }; // with MX worker processes
  classroom?: Omit<ClassroomContext, 'logins'>; // classroom mode
  reporter?: Reporter; // an instance that sends DMARC aggregate reports
  failures?: FailureReporter; // ... and failure reports, when on (in this process: not with MX workers)
  resolver?: LabResolver; // names the sources of the reports it reads
}

const DISPOSITIONS = ['inbox', 'junk', 'reject', 'defer', 'refused'];

export function startApi(listen: Endpoint, { instance, maildir, sessions, queue, dnsControl, direct, mxWorkers, reporter, failures, resolver, classroom }: ApiContext): Promise<Server> {
  const events = new LiveEvents(sessions, queue, consolesFor(classroom?.classroom, MAX_CLIENTS));
  const logins = classroom && new Logins(classroom.classroom, instance.name);
  // An exercise checked: to the teacher's consoles and the student's own.
  classroom?.exercises?.onChange((student, exercise, state) => events.announce('exercise', { student, exercise, state }, (scope) => !scope.student || scope.student.name === student));
  // Inside the lab the API is reached by the instance's name (and by any
  // address); no other name, so that DNS rebinding cannot read its mail.
  return startHttp(listen, [instance.hostname.toLowerCase()], async (request, url) => {
    const path = url.pathname.replace(/\/+$/, '');
    if (request.method === 'GET' && path === '') return consoleFile('index.html');
    if (request.method === 'GET' && path.startsWith('/console/')) return consoleFile(path.slice('/console/'.length));
    if (request.method === 'GET' && path === '/api/health') return { status: 'ok', instance: instance.name, hostname: instance.hostname, ...(mxWorkers && { mxWorkers: mxWorkers() }) };
    let scope = EVERYONE;
    let caller: Caller | undefined;
    if (logins) {
      if (path === '/api/login' && request.method === 'POST') return logins.login(request);
      caller = logins.caller(request);
      scope = new Scope(classroom.classroom, caller.identity);
      const answer = await classroomRoute({ ...classroom, logins, instance, dnsControl }, request, url, path, caller, scope);
      if (answer !== undefined) return answer;
    } else if (path === '/api/me') {
      throw new HttpError(404, 'this lab has no class: nothing to log in to');
    }
    if (path === '/api/direct' && request.method === 'POST' && direct) {
      scope.checkTeacher('direct sending (POST /api/direct)');
      return sendDirect(request, direct);
    }
    if (path === '/api/reports/failure' && request.method === 'POST') {
      scope.checkTeacher('turning DMARC failure reports on or off (POST /api/reports/failure)');
      if (request.headers.origin !== undefined) throw new HttpError(403, 'turning failure reports on or off is not for web pages');
      if (!failures) throw new HttpError(404, instance.reports ? `${instance.name} runs its MX in worker processes: its instance file decides (reports.failure)` : `${instance.name} sends no DMARC reports (its instance file has no reports: section)`);
      const body = ((await readJson(request)) ?? {}) as { enabled?: unknown };
      if (typeof body.enabled !== 'boolean') throw new HttpError(400, '{"enabled": true} or {"enabled": false}');
      failures.enabled = body.enabled;
      return { enabled: failures.enabled };
    }
    if (path === '/api/reports/send' && request.method === 'POST') {
      scope.checkTeacher('sending the DMARC reports (POST /api/reports/send)');
      // Not for web pages: a page of any site could post here without a class's login.
      if (request.headers.origin !== undefined) throw new HttpError(403, 'sending reports is not for web pages');
      if (!reporter) throw new HttpError(404, `${instance.name} sends no DMARC reports (its instance file has no reports: section)`);
      return { reports: await reporter.send() };
    }
    if (request.method !== 'GET') throw new HttpError(405, 'the API is read-only: GET only');
    const param = (name: string) => url.searchParams.get(name) ?? undefined;
    const disposition = () => {
      const value = param('disposition');
      if (value && !DISPOSITIONS.includes(value)) throw new HttpError(400, `disposition must be one of ${DISPOSITIONS.join(', ')}`);
      return value;
    };
    let match: RegExpExecArray | null;

    if (path === '/api/events') return events.subscribe(scope, () => !caller || logins!.holds(caller));
    if (path === '/api/sessions') {
      return sessions.list({ messageId: param('messageId'), recipient: param('recipient'), disposition: disposition(), recipients: scope.recipients });
    }
    if (path === '/api/sessions/page') return sessionPage(sessions, { ...pageQuery(url), disposition: disposition() }, scope);
    if ((match = /^\/api\/sessions\/([^/]+)$/.exec(path))) {
      const record = await sessions.get(decodeURIComponent(match[1]));
      if (!record) throw new HttpError(404, `no session ${match[1]}`);
      return scope.checkSession(record);
    }
    if (path === '/api/mailboxes') return mailboxes(scope);
    if (path === '/api/reports') return listReports(maildir, scope, resolver);
    if ((match = /^\/api\/mailboxes\/([^/]+)\/([^/]+)$/.exec(path))) {
      const mailbox = decodeURIComponent(match[1]);
      scope.checkMailbox(mailbox);
      const folder = decodeURIComponent(match[2]);
      if (folder !== 'INBOX' && folder !== 'Junk') throw new HttpError(404, 'folders are INBOX and Junk');
      return folderPage(sessions, mailbox, folder, pageQuery(url));
    }
    if ((match = /^\/api\/messages\/([^/]+?)(?:\/(raw|parts|html))?$/.exec(path))) {
      const id = decodeURIComponent(match[1]);
      const found = sessions.findDelivery(id);
      if (found) scope.checkMailbox(found.delivery.mailbox, `message ${id} is in ${found.delivery.mailbox}, which`);
      const raw = found && (await maildir.read(found.delivery));
      if (!found || !raw) throw new HttpError(404, `no message ${id}`);
      if (match[2] === 'raw') return new RawBody(raw, 'message/rfc822', { 'content-security-policy': "default-src 'none'; sandbox" });
      if (match[2] === 'parts') return messageParts(raw);
      if (match[2] === 'html') {
        const page = await htmlPage(raw);
        if (!page) throw new HttpError(404, `message ${id} has no HTML part`);
        return new RawBody(page, 'text/html; charset=utf-8', { 'content-security-policy': MAIL_HTML_POLICY, 'referrer-policy': 'no-referrer' });
      }
      return { ...found.delivery, session: found.session, size: raw.length, headers: parseHeaders(raw) };
    }
    if (path === '/api/queue') return queue.list().filter((e) => scope.ownsQueueEntry(e)).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    if ((match = /^\/api\/queue\/([^/]+)$/.exec(path))) {
      const entry = queue.get(decodeURIComponent(match[1]));
      if (!entry) throw new HttpError(404, `no queue entry ${match[1]} (delivered entries leave the queue)`);
      scope.checkQueueEntry(entry);
      return entry;
    }
    // The DNS decides what a credential may see of its query log.
    if (path === '/api/dns/queries') return recentQueries(dnsControl, url, caller?.credential);
    throw new HttpError(404, `no such endpoint: ${path}`);
  }, connectionsFor(classroom?.classroom, MAX_CONNECTIONS));

  // The mailboxes on disk that the scope holds; a student at the receiver
  // sees their own two before any mail has come.
  async function mailboxes(scope: Scope) {
    const list = (await maildir.list()).filter((m) => scope.ownsAddress(m.mailbox));
    const student = scope.student;
    if (student && instance.name === MAILBOXES_AT) {
      for (const mailbox of [student.address, `postmaster@${student.domain}`]) {
        if (!list.some((m) => m.mailbox === mailbox)) list.push({ mailbox, folders: (['INBOX', 'Junk'] as const).map((folder) => ({ folder, messages: 0, unseen: 0 })) });
      }
    }
    return list;
  }
}
