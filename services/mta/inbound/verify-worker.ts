// The verification thread (verify-thread.ts starts it): verifies each message
// the MX hands it, with a lab resolver and cache of its own, and answers with
// the verdict or the error.
import { parentPort, workerData } from 'node:worker_threads';
import type { Endpoint } from '../../lib/config.ts';
import { LabResolver } from '../../lib/resolver.ts';
import { verify, type Envelope, type Verdict } from './verify.ts';

export type Request = { kind: 'verify'; id: number; message: Uint8Array; envelope: Envelope } | { kind: 'forget'; domain: string };
export type Reply = { id: number; verdict: Verdict } | { id: number; error: string };

const { dns, hostname } = workerData as { dns: Endpoint; hostname: string };
const resolver = new LabResolver(dns);
const port = parentPort!;

port.on('message', (request: Request) => {
  if (request.kind === 'forget') return resolver.forget(request.domain);
  const { id, message, envelope } = request;
  verify(Buffer.from(message.buffer, message.byteOffset, message.byteLength), envelope, resolver, hostname).then(
    (verdict) => port.postMessage({ id, verdict } satisfies Reply),
    (error: Error) => port.postMessage({ id, error: error?.message ?? String(error) } satisfies Reply),
  );
});
