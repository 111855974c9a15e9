// The MX in several processes (MTA_MX_WORKERS): verifying a message keeps one
// core busy, so on a machine with more, worker processes share the MX port
// (node:cluster hands each new connection to the next worker). A worker does
// what the MX does: verify, decide, deliver to Maildir, write the session's
// journal, queue what an alias or list sends on. The first process keeps
// everything else (submission, the queue and its delivery, the API), and each
// worker tells it what it saved and queued, so the API lists every session.
// An exercise check (classroom mode) has every worker forget a student's
// domain before it sends its probes: each worker verifies with DNS answers
// of its own.
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { LabResolver } from '../../lib/resolver.ts';
import type { Logger } from '../../lib/log.ts';
import { Forwarder } from '../outbound/forward.ts';
import { createInbound } from './mx.ts';
import { VerifyThread } from './verify-thread.ts';
import { EvaluationLog } from '../reports/evaluation-log.ts';
import { FailureReporter } from '../reports/failure.ts';
import { studentMailboxes } from '../classroom/mailboxes.ts';
import { listen } from '../listen.ts';
import { Maildir } from '../store/maildir.ts';
import type { MtaOptions } from '../mta.ts';
import { discardEntry, writeEntry, type Enqueue } from '../outbound/queue.ts';
import { Signer } from '../outbound/sign.ts';
import { SessionJournal, type SessionNote } from '../store/sessions.ts';
import { WriteAheadLog } from '../store/write-ahead-log.ts';

const RESTART_DELAY_MS = 1000; // a worker that dies at once is not restarted in a tight loop
const STOP_TIMEOUT_MS = 10_000;
const SESSIONS_CLOSE_MS = 5000;
// Saves are told in batches: one IPC message per batch costs the first
// process far less than one per save (each message is a read and a parse).
const NOTES_EVERY_MS = 20;
// A worker that does not say it forgot within this time is stuck: the check goes on without it.
const FORGET_TIMEOUT_MS = 5000;

type Message =
  | { kind: 'listening'; port: number }
  | { kind: 'sessions'; notes: SessionNote[] }
  | { kind: 'queued'; id: string }
  | { kind: 'close' }
  | { kind: 'forget'; id: number; domain: string }
  | { kind: 'forgotten'; id: number };

export interface MxWorkers {
  port: number;
  listening(): number; // MX processes that listen now (a worker may be starting again)
  // Every running worker forgets what it holds of a domain's DNS (its
  // resolver's and its verification thread's): resolves once each has done
  // so, so that a message sent after it is verified with the zone as it is now.
  forget(domain: string): Promise<void>;
  close(): Promise<void>;
}

export interface Heard {
  session(note: SessionNote): void;
  queued(id: string): void;
}

// In the first process: starts `count` workers (each runs main.ts again) and
// resolves once all listen. A worker that ends unexpectedly is replaced.
export async function startMxWorkers(count: number, heard: Heard, log: Logger): Promise<MxWorkers> {
  cluster.setupPrimary({ exec: fileURLToPath(new URL('../main.ts', import.meta.url)) });
  const workers = new Set<Worker>();
  const listening = new Set<Worker>();
  // forget() calls under way: the workers still to answer each.
  const forgetting = new Map<number, { waiting: Set<Worker>; done(): void }>();
  let forgets = 0;
  let stopping = false;

  // A worker answered a forget() call, or ended: one fewer to wait for.
  const answered = (id: number, worker: Worker) => {
    const call = forgetting.get(id);
    if (!call?.waiting.delete(worker) || call.waiting.size > 0) return;
    forgetting.delete(id);
    call.done();
  };

  const fork = (): Promise<number> => {
    const worker = cluster.fork();
    workers.add(worker);
    return new Promise((resolve, reject) => {
      worker.on('message', (message: Message) => {
        if (message.kind === 'listening') {
          listening.add(worker);
          resolve(message.port);
        } else if (message.kind === 'sessions') {
          message.notes.forEach(heard.session);
        } else if (message.kind === 'queued') {
          heard.queued(message.id);
        } else if (message.kind === 'forgotten') {
          answered(message.id, worker);
        }
      });
      worker.once('exit', (code, signal) => {
        workers.delete(worker);
        listening.delete(worker);
        // Its caches are gone with it; the one that replaces it starts empty.
        for (const id of [...forgetting.keys()]) answered(id, worker);
        reject(new Error(`MX worker ${worker.process.pid} ended (code ${code}, signal ${signal}) before it listened`));
        if (stopping) return;
        log.error({ pid: worker.process.pid, code, signal }, `MX worker ended; another starts in ${RESTART_DELAY_MS / 1000} s`);
        setTimeout(() => {
          if (!stopping) fork().catch((error: Error) => log.error({ error: error.message }, 'MX worker did not start'));
        }, RESTART_DELAY_MS);
      });
    });
  };

  let ports: number[];
  try {
    ports = await Promise.all(Array.from({ length: count }, fork));
  } catch (error) {
    stopping = true;
    for (const worker of workers) worker.kill('SIGKILL');
    throw error;
  }
  log.info({ workers: count, pids: [...workers].map((w) => w.process.pid) }, 'MX worker processes listening');
  return {
    port: ports[0],
    listening: () => listening.size,
    forget(domain) {
      // Those listening: a worker still starting has verified nothing yet (it says so once it listens).
      const asked = [...listening].filter((worker) => worker.isConnected());
      if (asked.length === 0) return Promise.resolve();
      const id = ++forgets;
      return new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          const stuck = [...forgetting.get(id)!.waiting].map((w) => w.process.pid);
          log.error({ domain, workers: stuck }, `MX workers did not say within ${FORGET_TIMEOUT_MS / 1000} s that they forgot ${domain}: the check goes on`);
          forgetting.delete(id);
          resolve();
        }, FORGET_TIMEOUT_MS);
        forgetting.set(id, {
          waiting: new Set(asked),
          done: () => {
            clearTimeout(timer);
            resolve();
          },
        });
        for (const worker of asked) worker.send({ kind: 'forget', id, domain } satisfies Message);
      });
    },
    async close() {
      stopping = true;
      const ended = [...workers].map((worker) => new Promise((resolve) => worker.once('exit', resolve)));
      for (const worker of workers) if (worker.isConnected()) worker.send({ kind: 'close' } satisfies Message);
      const timer = setTimeout(() => {
        for (const worker of workers) worker.kill('SIGKILL');
      }, STOP_TIMEOUT_MS);
      await Promise.all(ended);
      clearTimeout(timer);
    },
  };
}

// In a worker process: the MX alone, over the same storage as the first process.
export async function runMxWorker(options: MtaOptions): Promise<void> {
  const { instance, log } = options;
  // Resolves once the message is handed to the channel (exit must wait for that).
  const tell = (message: Message): Promise<void> =>
    new Promise((resolve) => {
      if (process.send) process.send(message, undefined, {}, () => resolve());
      else resolve();
    });
  let notes: SessionNote[] = [];
  const tellNotes = async () => {
    const told = notes;
    notes = [];
    if (told.length) await tell({ kind: 'sessions', notes: told });
  };
  // A journal, never a store: a store closes the records it finds open
  // (sessions.ts), and the first process and sibling workers have theirs open.
  // A write-ahead log of its own (the first process recovered every log before starting it).
  const wal = new WriteAheadLog(join(options.dataDir, 'wal'), log);
  const sessions = new SessionJournal(
    join(options.dataDir, 'sessions'),
    (note) => {
      if (notes.push(note) === 1) setTimeout(() => void tellNotes(), NOTES_EVERY_MS);
    },
    wal,
  );
  const queueDir = join(options.dataDir, 'queue');
  const enqueue: Enqueue = {
    hold: (message, fields) => writeEntry(queueDir, message, fields),
    release: (entry) => void tell({ kind: 'queued', id: entry.id }),
    discard: (entry) => discardEntry(queueDir, entry.id),
  };
  // Told to stop even before it listens: a worker may be starting again when the MTA stops.
  let stopAsked = false;
  let stop = (): void => {
    stopAsked = true;
  };
  const resolver = new LabResolver(options.dns);
  const verifier = new VerifyThread(options.dns, instance.hostname, log);
  process.on('message', (message: Message) => {
    if (message.kind === 'close') stop();
    if (message.kind === 'forget') {
      // The thread takes requests in order: whatever it verifies after this, it asks the DNS again.
      resolver.forget(message.domain);
      verifier.forget(message.domain);
      void tell({ kind: 'forgotten', id: message.id });
    }
  });
  process.once('disconnect', () => stop()); // the first process is gone
  // Ctrl-C reaches every process of the group: the first one says when to stop.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => undefined);

  const closing = new Set<Promise<void>>();
  const mx = createInbound({
    instance,
    resolver,
    verifier,
    maildir: new Maildir(join(options.dataDir, 'mail'), instance.hostname),
    sessions,
    forwarder: new Forwarder(instance, enqueue, options.keyDir, log, options.classroom),
    queued: () => undefined, // the first process hears of each queued message from enqueue
    closing,
    log,
    tls: options.tls,
    evaluations: instance.reports && new EvaluationLog(join(options.dataDir, 'reports'), instance.reports.periodSeconds),
    failures: instance.reports?.failure ? new FailureReporter({ instance, reports: instance.reports, resolver: new LabResolver(options.dns), signer: new Signer(instance, options.keyDir), queue: enqueue, queued: () => undefined, log }) : undefined,
    studentMailboxes: studentMailboxes(instance, options.classroom),
  });
  const port = await listen(mx, options.mx);
  let stopping = false;
  stop = () => {
    if (stopping) return;
    stopping = true;
    mx.close(async () => {
      await Promise.race([Promise.all(closing), new Promise((resolve) => setTimeout(resolve, SESSIONS_CLOSE_MS).unref())]);
      await wal.close().catch((error) => log.error({ err: error }, 'the last checkpoint failed: the next start checks the write-ahead log'));
      await tellNotes();
      log.flush();
      process.exit(0);
    });
  };
  if (stopAsked) return stop();
  void tell({ kind: 'listening', port });
}
