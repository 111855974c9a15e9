// Server-sent events for the console (GET /api/events): a session that is
// new or has changed since the last look goes to every open console, and so
// does word that the outbound queue changed. The stores have no events of
// their own, so one timer per instance compares the newest session
// summaries and the queue with the last look; it runs only while someone
// listens. In classroom mode each stream carries what its caller may see
// (classroom/scope.ts): a student's part of a session, word of their own
// queue entries; and it ends when the caller's login does.
import type { ServerResponse } from 'node:http';
import { Takeover } from '../../lib/http.ts';
import { sessionRow } from './pages.ts';
import { EVERYONE, type Scope } from '../classroom/scope.ts';
import type { Queue } from '../outbound/queue.ts';
import type { SessionStore } from '../store/sessions.ts';

const TICK_MS = 250;
const WATCHED = 50; // the newest sessions compared at each look
const HEARTBEAT_MS = 15_000; // a comment now and then, so that idle timeouts on the way leave the stream open
export const MAX_CLIENTS = 16; // the API server takes 64 connections: leave room for requests (more with a class: classroom.ts)

interface Look {
  sessions: Map<string, string>; // id -> its summary, as JSON
  queue: string;
}

interface Client {
  response: ServerResponse;
  scope: Scope;
  holds: () => boolean; // whether the caller's login still holds
  queue: string; // the entries it sees, at the last look
  lastWrite: number;
}

export class LiveEvents {
  private sessions: SessionStore;
  private queue: Queue;
  private clients = new Set<Client>();
  private timer?: NodeJS.Timeout;
  private last: Look = { sessions: new Map(), queue: '' };
  private looking = false;

  private maxClients: number;

  constructor(sessions: SessionStore, queue: Queue, maxClients = MAX_CLIENTS) {
    this.sessions = sessions;
    this.queue = queue;
    this.maxClients = maxClients;
  }

  subscribe(scope: Scope = EVERYONE, holds: () => boolean = () => true): Takeover {
    return new Takeover((response) => {
      if (this.clients.size >= this.maxClients) {
        response.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' }).end(`at most ${this.maxClients} live consoles at once\n`);
        return;
      }
      response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
      response.write('retry: 2000\n\n'); // how long a browser waits before it reconnects
      const client = { response, scope, holds, queue: this.queueSeen(scope), lastWrite: Date.now() };
      this.clients.add(client);
      response.on('close', () => this.leave(client));
      if (!this.timer) {
        this.last = this.look();
        this.timer = setInterval(() => this.tick(), TICK_MS);
        this.timer.unref();
      }
    });
  }

  private leave(client: Client): void {
    this.clients.delete(client);
    if (this.clients.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private look(): Look {
    const newest = this.sessions.list().slice(0, WATCHED);
    return { sessions: new Map(newest.map((s) => [s.id, JSON.stringify(s)])), queue: this.queueSeen(EVERYONE) };
  }

  // The queue entries a scope sees, as their state: a change is an event.
  private queueSeen(scope: Scope): string {
    const seen = this.queue.list().filter((e) => scope.ownsQueueEntry(e));
    return seen.map((e) => `${e.id}:${e.attempts}:${e.nextAttemptAt}:${e.recipients.map((r) => r.status)}`).join(' ');
  }

  private async tick(): Promise<void> {
    if (this.looking) return; // a slow disk: skip a beat rather than pile up
    this.looking = true;
    try {
      // A stream whose login has ended (logout, expiry) ends too.
      for (const client of this.clients) if (!client.holds()) client.response.end();
      const now = this.look();
      const changed = [...now.sessions].filter(([id, summary]) => this.last.sessions.get(id) !== summary).map(([id]) => id);
      const queueChanged = now.queue !== this.last.queue;
      this.last = now;
      // Oldest first, so that a console that prepends each keeps the order.
      for (const id of changed.reverse()) {
        const record = await this.sessions.get(id);
        if (!record) continue;
        for (const client of this.clients) {
          const seen = client.scope.narrow(record);
          if (seen) this.write(client, `event: session\ndata: ${JSON.stringify(sessionRow(seen))}\n\n`);
        }
      }
      for (const client of this.clients) {
        const queue = queueChanged ? this.queueSeen(client.scope) : client.queue;
        if (queue !== client.queue) {
          client.queue = queue;
          this.write(client, `event: queue\ndata: ${JSON.stringify({ entries: queue ? queue.split(' ').length : 0 })}\n\n`);
        }
        if (Date.now() - client.lastWrite >= HEARTBEAT_MS) this.write(client, ': still here\n\n');
      }
    } finally {
      this.looking = false;
    }
  }

  // Word of another change (an exercise checked), to the consoles whose
  // caller may see it.
  announce(event: string, data: unknown, seen: (scope: Scope) => boolean): void {
    for (const client of this.clients) if (seen(client.scope)) this.write(client, `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  // A console that does not read its stream is dropped, not buffered for.
  private write(client: Client, text: string): void {
    client.lastWrite = Date.now();
    if (client.response.writableNeedDrain) client.response.destroy();
    else client.response.write(text);
  }
}
