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
//   GET /  and  /console/:file                              the web console
//   POST /api/direct                                        lab-only: one SMTP transaction from this instance's address (direct.ts)
// Pages: ?limit= (default 50, at most 200); the answer's "next" is the ?before= of the following page.
import type { Server } from 'node:http';
import type { Endpoint } from '../../lib/config.ts';
import { HttpError, RawBody, startHttp } from '../../lib/http.ts';
import { htmlPage, MAIL_HTML_POLICY, messageParts } from './body.ts';
import { LiveEvents } from './events.ts';
import { sendDirect, type DirectContext } from './direct.ts';
import type { Instance } from '../instance.ts';
import { recentQueries } from './lab-dns.ts';
import type { Maildir } from '../store/maildir.ts';
import { folderPage, pageQuery, sessionPage } from './pages.ts';
import type { Queue } from '../outbound/queue.ts';
import type { SessionStore } from '../store/sessions.ts';
import { consoleFile } from './static.ts';
import { parseHeaders } from '../smtp/headers.ts';

export interface ApiContext {
  instance: Instance;
  maildir: Maildir;
  sessions: SessionStore;
  queue: Queue;
  dnsControl: Endpoint; // the lab DNS's control endpoint, for its query log
  direct?: DirectContext; // what an instance needs to send for direct: steps (an API on stored data alone has none)
  mxWorkers?: () => { listening: number; of: number }; // with MX worker processes
}

const DISPOSITIONS = ['inbox', 'junk', 'reject', 'defer', 'refused'];

export function startApi(listen: Endpoint, { instance, maildir, sessions, queue, dnsControl, direct, mxWorkers }: ApiContext): Promise<Server> {
  const events = new LiveEvents(sessions, queue);
  // Inside the lab the API is reached by the instance's name (and by any
  // address); no other name, so that DNS rebinding cannot read its mail.
  return startHttp(listen, [instance.hostname.toLowerCase()], async (request, url) => {
    const path = url.pathname.replace(/\/+$/, '');
    if (path === '/api/direct' && request.method === 'POST' && direct) return sendDirect(request, direct);
    if (request.method !== 'GET') throw new HttpError(405, 'the API is read-only: GET only');
    const param = (name: string) => url.searchParams.get(name) ?? undefined;
    const disposition = () => {
      const value = param('disposition');
      if (value && !DISPOSITIONS.includes(value)) throw new HttpError(400, `disposition must be one of ${DISPOSITIONS.join(', ')}`);
      return value;
    };
    let match: RegExpExecArray | null;

    if (path === '') return consoleFile('index.html');
    if ((match = /^\/console\/([^/]+)$/.exec(path))) return consoleFile(match[1]);
    if (path === '/api/health') return { status: 'ok', instance: instance.name, hostname: instance.hostname, ...(mxWorkers && { mxWorkers: mxWorkers() }) };
    if (path === '/api/events') return events.subscribe();
    if (path === '/api/sessions') {
      return sessions.list({ messageId: param('messageId'), recipient: param('recipient'), disposition: disposition() });
    }
    if (path === '/api/sessions/page') return sessionPage(sessions, { ...pageQuery(url), disposition: disposition() });
    if ((match = /^\/api\/sessions\/([^/]+)$/.exec(path))) {
      const record = await sessions.get(decodeURIComponent(match[1]));
      if (!record) throw new HttpError(404, `no session ${match[1]}`);
      return record;
    }
    if (path === '/api/mailboxes') return maildir.list();
    if ((match = /^\/api\/mailboxes\/([^/]+)\/([^/]+)$/.exec(path))) {
      const folder = decodeURIComponent(match[2]);
      if (folder !== 'INBOX' && folder !== 'Junk') throw new HttpError(404, 'folders are INBOX and Junk');
      return folderPage(sessions, decodeURIComponent(match[1]), folder, pageQuery(url));
    }
    if ((match = /^\/api\/messages\/([^/]+?)(?:\/(raw|parts|html))?$/.exec(path))) {
      const id = decodeURIComponent(match[1]);
      const found = sessions.findDelivery(id);
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
    if (path === '/api/queue') return queue.list().sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    if ((match = /^\/api\/queue\/([^/]+)$/.exec(path))) {
      const entry = queue.get(decodeURIComponent(match[1]));
      if (!entry) throw new HttpError(404, `no queue entry ${match[1]} (delivered entries leave the queue)`);
      return entry;
    }
    if (path === '/api/dns/queries') return recentQueries(dnsControl, url);
    throw new HttpError(404, `no such endpoint: ${path}`);
  });
}
