// SPF, DKIM, DMARC and ARC on a thread of their own (verify-worker.ts).
// The checks are most of what the MX does with a message (about 0.65 ms of
// CPU alone, more when both cores are busy):
// on the thread that also runs every SMTP session and the disk work they
// capped the MX at what one core does, with the machine's other core partly
// idle. Here they run beside it, as Postfix's smtpd hands a message to its
// filter.
//
// The thread asks the lab DNS with a resolver of its own, so its questions
// are recorded in the verdict as before; forget() clears its cache too. It is
// started by the first message (an instance that receives no mail does not
// pay for it), and when it dies (a fault in a check) the messages it held
// get an error, which the MX answers with 451: the clients send them again,
// and the next message starts a new thread.
import { Worker } from 'node:worker_threads';
import type { Endpoint } from '../../lib/config.ts';
import type { Logger } from '../../lib/log.ts';
import type { Envelope, Verdict } from './verify.ts';
import type { Reply, Request } from './verify-worker.ts';

interface Running {
  worker: Worker;
  pending: Map<number, { resolve(verdict: Verdict): void; reject(error: Error): void }>;
}

export class VerifyThread {
  private dns: Endpoint;
  private hostname: string;
  private log: Logger;
  private running?: Running;
  private next = 0;

  constructor(dns: Endpoint, hostname: string, log: Logger) {
    this.dns = dns;
    this.hostname = hostname;
    this.log = log;
  }

  verify(message: Buffer, envelope: Envelope): Promise<Verdict> {
    const { worker, pending } = this.running ?? this.start();
    const id = ++this.next;
    // A copy of its own, moved to the thread: the message's bytes may sit in a larger buffer.
    const bytes = new Uint8Array(message);
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      worker.postMessage({ kind: 'verify', id, message: bytes, envelope } satisfies Request, [bytes.buffer]);
    });
  }

  // An exercise check judges a student's zone as it is now: the thread
  // forgets the domain before it verifies anything sent after this call.
  forget(domain: string): void {
    this.running?.worker.postMessage({ kind: 'forget', domain } satisfies Request);
  }

  async close(): Promise<void> {
    const running = this.running;
    this.running = undefined;
    await running?.worker.terminate();
  }

  private start(): Running {
    const worker = new Worker(new URL('./verify-worker.ts', import.meta.url), { workerData: { dns: this.dns, hostname: this.hostname } });
    const running: Running = { worker, pending: new Map() };
    this.running = running;
    // The SMTP server keeps the process alive; this thread alone does not.
    worker.unref();
    worker.on('message', (reply: Reply) => {
      const waiting = running.pending.get(reply.id);
      running.pending.delete(reply.id);
      if ('verdict' in reply) waiting?.resolve(reply.verdict);
      else waiting?.reject(new Error(`verification failed: ${reply.error}`));
    });
    worker.on('error', (error) => this.log.error({ err: error }, 'the verification thread failed: the messages it held get 451'));
    worker.on('exit', (code) => {
      if (this.running === running) this.running = undefined;
      for (const { reject } of running.pending.values()) reject(new Error(`the verification thread stopped (exit code ${code})`));
      running.pending.clear();
    });
    return running;
  }
}
