// One MTA instance, assembled: the MX, submission, the queue and its delivery
// worker, and the API, over shared storage. The instance file says who it
// is; the caller says where it listens and how lab addresses are reached.
// Before anything loads mailauth: its signer must see the key cache and the
// one-pass relaxed canonicalization.
import './inbound/mailauth-keys.ts';
import './inbound/mailauth-relaxed.ts';
import { join } from 'node:path';
import { MAILBOXES_AT, SUBMISSION_AT, type Classroom } from '../lib/classroom.ts';
import type { Endpoint } from '../lib/config.ts';
import type { Logger } from '../lib/log.ts';
import { LabResolver } from '../lib/resolver.ts';
import { startApi } from './api/api.ts';
import { DeliveryWorker, type Outbound } from './outbound/deliver.ts';
import { Forwarder } from './outbound/forward.ts';
import { createInbound } from './inbound/mx.ts';
import { VerifyThread } from './inbound/verify-thread.ts';
import type { Instance } from './instance.ts';
import { listen } from './listen.ts';
import { Maildir } from './store/maildir.ts';
import { startMxWorkers, type MxWorkers } from './inbound/mx-workers.ts';
import { Queue } from './outbound/queue.ts';
import { SessionStore, type SessionNote } from './store/sessions.ts';
import { recover, WriteAheadLog } from './store/write-ahead-log.ts';
import { Signer } from './outbound/sign.ts';
import { createSubmission } from './outbound/submission.ts';
import { studentMailboxes } from './classroom/mailboxes.ts';
import { StudentKeys } from './classroom/student-keys.ts';
import { EvaluationLog } from './reports/evaluation-log.ts';
import { Reporter } from './reports/reporter.ts';
import { FailureReporter } from './reports/failure.ts';
import { openCourse } from './exercises/routes.ts';

export interface MtaOptions {
  instance: Instance;
  dataDir: string; // mail/ (Maildirs), sessions/ (records), queue/ and wal/ (the MX's write-ahead log) live here
  keyDir: string; // DKIM keys: <keyDir>/<domain>/<selector>.pem
  mx: Endpoint;
  mxWorkers?: number; // more than 1: the MX runs in that many worker processes (mx-workers.ts; main.ts only)
  submission: Endpoint;
  api: Endpoint;
  outbound: Outbound;
  dns: Endpoint;
  dnsControl?: Endpoint; // the lab DNS's control endpoint (query log for the console); default: the DNS host, port 8053
  tls: { key: Buffer; cert: Buffer; ca: Buffer }; // ca: the lab CA, which signed every lab certificate
  log: Logger;
  classroom?: Classroom; // classroom mode: the class in LAB_CLASS_DIR
}

export interface RunningMta {
  mxPort: number;
  submissionPort: number;
  apiPort: number;
  maildir: Maildir;
  sessions: SessionStore;
  queue: Queue;
  verifier: VerifyThread; // the MX's (with MX workers, each worker process has its own)
  close(): Promise<void>;
}

export async function startMta(options: MtaOptions): Promise<RunningMta> {
  const { instance, log } = options;
  const resolver = new LabResolver(options.dns);
  const verifier = new VerifyThread(options.dns, instance.hostname, log);
  const maildir = new Maildir(join(options.dataDir, 'mail'), instance.hostname);
  // Before anything reads a mailbox or a session record (the store below
  // reads them all): what the write-ahead log holds and the disk may not.
  const walDir = join(options.dataDir, 'wal');
  const recovered = await recover(walDir);
  if (recovered.copies.length || recovered.sessions.length) {
    log.warn(recovered, `restored ${recovered.copies.length} Maildir copies and the lines of ${recovered.sessions.length} session records from the write-ahead log: the machine stopped before they were on disk`);
  } else if (recovered.logs) {
    log.info(recovered, `checked ${recovered.logs} write-ahead log files that the MTA left when it stopped: everything in them was on disk`);
  }
  const wal = new WriteAheadLog(walDir, log);
  const sessions = new SessionStore(join(options.dataDir, 'sessions'), instance.sessionsKept, wal);
  // Classroom mode: the students log in, make DKIM keys and submit at the sender.
  const { classroom } = options;
  const atSender = classroom && instance.name === SUBMISSION_AT ? classroom : undefined;
  const studentKeys = atSender && new StudentKeys(atSender, join(options.dataDir, 'classroom', 'dkim'));
  const signer = new Signer(instance, options.keyDir, studentKeys);
  // Before anything delivers: the MX workers are not started yet.
  const partial = await maildir.cleanTemporary();
  if (partial.length) log.warn({ files: partial }, `removed ${partial.length} partial Maildir ${partial.length === 1 ? 'copy' : 'copies'} from tmp/, left by a delivery the MTA did not finish (crash or kill); the client was not told 250 for them`);
  const queue = new Queue(join(options.dataDir, 'queue'));
  for (const { file, reason, movedTo } of queue.damaged) log.error({ file, reason, movedTo }, `queue state file ${file} cannot be read (${reason}): moved aside into ${movedTo} with its message`);
  for (const { id, messageId, recipients, startedAt } of queue.interrupted) {
    log.warn({ queueId: id, messageId, recipients, startedAt }, `delivery of ${id} was under way when the MTA stopped (crash or kill): delivering again, a second copy is possible`);
  }
  const worker = new DeliveryWorker(instance, queue, resolver, options.outbound, log);
  // DMARC aggregate reports: the MX logs each evaluation, the reporter sends them each period.
  const reportsDir = join(options.dataDir, 'reports');
  const evaluations = instance.reports && new EvaluationLog(reportsDir, instance.reports.periodSeconds);
  const reporter = instance.reports && new Reporter({ instance, reports: instance.reports, dir: reportsDir, resolver, signer, queue, queued: () => worker.kick(), log });
  // DMARC failure reports, when the instance file (or a lesson, through the API) turns them on: the MX sends each as it decides.
  const failures = instance.reports && new FailureReporter({ instance, reports: instance.reports, resolver, signer, queue, queued: () => worker.kick(), log });
  const forwarder = new Forwarder(instance, queue, options.keyDir, log, classroom);
  const closing = new Set<Promise<void>>();
  let mx: MxWorkers;
  if ((options.mxWorkers ?? 1) > 1) {
    const heard = {
      session: (note: SessionNote) => void sessions.note(note),
      queued: (id: string) => {
        try {
          queue.adopt(id);
        } catch (error) {
          // Still on disk: the next start of the MTA finds it.
          log.error({ queueId: id, error: (error as Error).message }, 'a message an MX worker queued could not be read');
        }
        worker.kick();
      },
    };
    mx = await startMxWorkers(options.mxWorkers!, heard, log);
  } else {
    const server = createInbound({ instance, resolver, verifier, maildir, sessions, forwarder, queued: () => worker.kick(), closing, log, tls: options.tls, studentMailboxes: studentMailboxes(instance, classroom), evaluations, failures });
    const port = await listen(server, options.mx);
    // One process: its resolver and verification thread (receiverCache below) hold all the MX knows.
    mx = { port, listening: () => 1, forget: async () => undefined, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
  }
  const submission = createSubmission({ instance, queue, signer, log, tls: options.tls, queued: () => worker.kick(), classroom: atSender });
  await listen(submission, options.submission);
  const dnsControl = options.dnsControl ?? { host: options.dns.host, port: 8053 };
  const workers = options.mxWorkers ?? 1;
  const mxWorkers = workers > 1 ? () => ({ listening: mx.listening(), of: workers }) : undefined;
  const direct = { instance, outbound: options.outbound, ca: options.tls.ca };
  // The exercises are checked where the students' mailboxes are. A check
  // clears what the MX holds of the student's domain: in its resolver and in
  // the verification thread's, and in every MX worker's.
  const receiverCache = {
    async forget(domain: string) {
      resolver.forget(domain);
      verifier.forget(domain);
      await mx.forget(domain);
    },
  };
  const exercises = classroom && instance.name === MAILBOXES_AT ? openCourse({ classroom, receiver: instance, outbound: options.outbound, dataDir: options.dataDir, sessions, dns: options.dns, receiverCache, ca: options.tls.ca, log }) : undefined;
  const api = await startApi(options.api, { instance, maildir, sessions, queue, dnsControl, direct, mxWorkers, reporter, failures: workers > 1 ? undefined : failures, resolver, classroom: classroom && { classroom, keys: studentKeys, exercises } });
  worker.start();
  reporter?.start();
  const port = (server: { address(): unknown }) => (server.address() as { port: number }).port;
  const running = { mxPort: mx.port, submissionPort: port(submission.server), apiPort: port(api) };
  log.info(
    { mx: `${options.mx.host}:${running.mxPort}`, submission: `${options.submission.host}:${running.submissionPort}`, api: `${options.api.host}:${running.apiPort}`, dns: `${options.dns.host}:${options.dns.port}`, queued: queue.list().length },
    `${instance.name} (${instance.hostname}) listening`,
  );
  return {
    ...running,
    maildir,
    sessions,
    queue,
    verifier,
    async close() {
      await reporter?.stop();
      await worker.stop();
      api.close();
      api.closeAllConnections(); // consoles' event streams never end by themselves
      await Promise.all([mx.close(), new Promise<void>((resolve) => submission.close(() => resolve()))]);
      // Each session's record gets its last save (the final replies, the end
      // time) after smtp-server reports it closed, which may come after the
      // server itself has closed: wait for those, within reason.
      await Promise.race([Promise.all(closing), new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
      await verifier.close();
      await failures?.stop();
      evaluations?.close();
      await wal.close();
    },
  };
}
