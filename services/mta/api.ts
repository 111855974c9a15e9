// The instance's read-only HTTP JSON API: what happened to every message.
//
//   GET /api/health
//   GET /api/sessions?messageId=&recipient=&disposition=   newest first
//   GET /api/sessions/:id                                   the whole record
//   GET /api/mailboxes                                      folders and counts
//   GET /api/messages/:id                                   headers, and the session it came from
//   GET /api/messages/:id/raw                               the stored message (message/rfc822)
//   GET /api/queue                                          outbound queue: attempts, last error, next try
//   GET /api/queue/:id                                      one entry, per recipient
import type { Server } from 'node:http';
import type { Endpoint } from '../lib/config.ts';
import { HttpError, RawBody, startHttp } from '../lib/http.ts';
import type { Instance } from './instance.ts';
import type { Maildir } from './maildir.ts';
import type { Queue } from './queue.ts';
import type { SessionStore } from './sessions.ts';
import { parseHeaders } from './headers.ts';

export function startApi(listen: Endpoint, instance: Instance, maildir: Maildir, sessions: SessionStore, queue: Queue): Promise<Server> {
  return startHttp(listen, async (request, url) => {
    if (request.method !== 'GET') throw new HttpError(405, 'the API is read-only: GET only');
    const path = url.pathname.replace(/\/+$/, '');
    const param = (name: string) => url.searchParams.get(name) ?? undefined;
    let match: RegExpExecArray | null;

    if (path === '/api/health') return { status: 'ok', instance: instance.name, hostname: instance.hostname };
    if (path === '/api/sessions') {
      const disposition = param('disposition');
      const dispositions = ['inbox', 'junk', 'reject', 'defer', 'refused'];
      if (disposition && !dispositions.includes(disposition)) throw new HttpError(400, `disposition must be one of ${dispositions.join(', ')}`);
      return sessions.list({ messageId: param('messageId'), recipient: param('recipient'), disposition });
    }
    if ((match = /^\/api\/sessions\/([^/]+)$/.exec(path))) {
      const record = await sessions.get(decodeURIComponent(match[1]));
      if (!record) throw new HttpError(404, `no session ${match[1]}`);
      return record;
    }
    if (path === '/api/mailboxes') return maildir.list();
    if ((match = /^\/api\/messages\/([^/]+?)(\/raw)?$/.exec(path))) {
      const id = decodeURIComponent(match[1]);
      const found = sessions.findDelivery(id);
      const raw = found && (await maildir.read(found.delivery));
      if (!found || !raw) throw new HttpError(404, `no message ${id}`);
      if (match[2]) return new RawBody(raw, 'message/rfc822');
      return { ...found.delivery, session: found.session, size: raw.length, headers: parseHeaders(raw) };
    }
    if (path === '/api/queue') return queue.list().sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    if ((match = /^\/api\/queue\/([^/]+)$/.exec(path))) {
      const entry = queue.get(decodeURIComponent(match[1]));
      if (!entry) throw new HttpError(404, `no queue entry ${match[1]} (delivered entries leave the queue)`);
      return entry;
    }
    throw new HttpError(404, `no such endpoint: ${path}`);
  });
}
