// Server-sent events for the console (GET /api/events): a session that is
// new or has changed since the last look goes to every open console, and so
// does word that the outbound queue changed. The stores have no events of
// their own, so one timer per instance compares the newest session
// summaries and the queue with the last look; it runs only while someone
// listens.
import type { ServerResponse } from 'node:http';
import { Takeover } from '../../lib/http.ts';
import { sessionRow } from './pages.ts';
import type { Queue } from '../outbound/queue.ts';
import type { SessionStore } from '../store/sessions.ts';

const TICK_MS = 250;
const WATCHED = 50; // the newest sessions compared at each look
const HEARTBEAT_MS = 15_000; // a comment now and then, so that idle timeouts on the way leave the stream open
const MAX_CLIENTS = 16; // the API server takes 64 connections: leave room for requests

interface Look {
  sessions: Map<string, string>; // id -> its summary, as JSON
  queue: string;
}

export class LiveEvents {
  private sessions: SessionStore;
  private queue: Queue;
  private clients = new Set<ServerResponse>();
  private timer?: NodeJS.Timeout;
  private last: Look = { sessions: new Map(), queue: '' };
  private lastWrite = 0;
  private looking = false;

  constructor(sessions: SessionStore, queue: Queue) {
    this.sessions = sessions;
    this.queue = queue;
  }

  subscribe(): Takeover {
    return new Takeover((response) => {
      if (this.clients.size >= MAX_CLIENTS) {
        response.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' }).end(`at most ${MAX_CLIENTS} live consoles at once\n`);
        return;
      }
      response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
      response.write('retry: 2000\n\n'); // how long a browser waits before it reconnects
      this.clients.add(response);
      response.on('close', () => this.leave(response));
      if (!this.timer) {
        this.last = this.look();
        this.lastWrite = Date.now();
        this.timer = setInterval(() => this.tick(), TICK_MS);
        this.timer.unref();
      }
    });
  }

  private leave(response: ServerResponse): void {
    this.clients.delete(response);
    if (this.clients.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private look(): Look {
    const newest = this.sessions.list().slice(0, WATCHED);
    const queue = this.queue.list().map((e) => `${e.id}:${e.attempts}:${e.nextAttemptAt}:${e.recipients.map((r) => r.status)}`);
    return { sessions: new Map(newest.map((s) => [s.id, JSON.stringify(s)])), queue: queue.join(' ') };
  }

  private async tick(): Promise<void> {
    if (this.looking) return; // a slow disk: skip a beat rather than pile up
    this.looking = true;
    try {
      const now = this.look();
      const changed = [...now.sessions].filter(([id, summary]) => this.last.sessions.get(id) !== summary).map(([id]) => id);
      const queueChanged = now.queue !== this.last.queue;
      this.last = now;
      // Oldest first, so that a console that prepends each keeps the order.
      for (const id of changed.reverse()) {
        const record = await this.sessions.get(id);
        if (record) this.send(`event: session\ndata: ${JSON.stringify(sessionRow(record))}\n\n`);
      }
      if (queueChanged) this.send(`event: queue\ndata: ${JSON.stringify({ entries: this.queue.list().length })}\n\n`);
      if (Date.now() - this.lastWrite >= HEARTBEAT_MS) this.send(': still here\n\n');
    } finally {
      this.looking = false;
    }
  }

  private send(text: string): void {
    this.lastWrite = Date.now();
    for (const client of this.clients) {
      // A console that does not read its stream is dropped, not buffered for.
      if (client.writableNeedDrain) client.destroy();
      else client.write(text);
    }
  }
}
