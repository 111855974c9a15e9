// POST /api/direct: a lab-only door for the scenario runner when the lab runs
// in Docker. A `direct:` step hands an MX a message no honest MTA would send
// (signed by hand, changed after signing, replayed) from a lab host's own
// address. In the embedded lab the runner speaks from the host's loopback
// twin itself; in Docker only the container has that address, so the
// instance speaks for it: one SMTP transaction from its own address to the
// lab MX named, and the final reply back (a refusal is an answer too).
//
//   {"mx": {"address": "192.0.2.20", "hostname": "mx.receiver.test"},
//    "envelope": {"from": "a@b.test", "to": ["c@d.test"]}, "message": "<base64>"}
//   -> {"code": 250, "text": "250 2.0.0 ..."}
//
// Only the machine that runs the lab may use it: a request from loopback, or
// from the lab network's gateway (192.0.2.1, where Docker's published ports
// come from), never from a lab host, or any lab host could send as this one.
// A browser cannot be made to call it: JSON only (a cross-origin page would
// need a preflight, which this API never grants), and no Origin.
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { isLabAddress, LAB_PREFIX, labAddress } from '../../lib/addressing.ts';
import { HttpError, readJson } from '../../lib/http.ts';
import type { Outbound } from '../outbound/deliver.ts';
import type { Instance } from '../instance.ts';
import { smtpSend, type Envelope, type Reply } from '../outbound/smtp-client.ts';

const LAB_GATEWAY = `${LAB_PREFIX}1`;

export interface DirectContext {
  instance: Instance;
  outbound: Outbound;
  ca: Buffer; // the lab CA: the MX's certificate is checked, as the runner checks it
}

export async function sendDirect(request: IncomingMessage, { instance, outbound, ca }: DirectContext): Promise<Reply> {
  const peer = labAddress(request.socket.remoteAddress ?? '');
  if (!(peer === LAB_GATEWAY || peer.startsWith('127.') || peer === '::1')) {
    throw new HttpError(403, `direct sending is for the machine that runs the lab, not for ${peer}`);
  }
  if (request.headers.origin !== undefined) throw new HttpError(403, 'direct sending is not for web pages');
  if (!/^application\/json\b/.test(request.headers['content-type'] ?? '')) throw new HttpError(415, 'send JSON (Content-Type: application/json)');
  const { mx, envelope, raw } = parse(await readJson(request));
  const { host, port } = outbound.connect(mx.address);
  try {
    return await smtpSend({ host, port, localAddress: outbound.localAddress, name: instance.hostname, servername: mx.hostname, ca, envelope, raw });
  } catch (error) {
    throw new HttpError(502, `${mx.hostname} [${mx.address}]: ${(error as Error).message}`);
  }
}

function parse(body: unknown): { mx: { address: string; hostname: string }; envelope: Envelope; raw: Buffer } {
  const b = (body ?? {}) as Record<string, any>;
  const bad = (what: string): never => {
    throw new HttpError(400, what);
  };
  const address = b.mx?.address;
  if (typeof address !== 'string' || isIP(address) !== 4 || !isLabAddress(address)) bad('mx.address must be a lab address (192.0.2.X): delivery stays in the lab');
  if (typeof b.mx.hostname !== 'string' || b.mx.hostname === '') bad('mx.hostname: the name on the MX certificate');
  const { from, to } = b.envelope ?? {};
  if (typeof from !== 'string') bad('envelope.from: the MAIL FROM address ("" for the null sender)');
  if (!Array.isArray(to) || to.length === 0 || !to.every((r) => typeof r === 'string' && r !== '')) bad('envelope.to: a list of recipient addresses');
  if (typeof b.message !== 'string' || b.message === '') bad('message: the whole message, base64');
  return { mx: { address, hostname: b.mx.hostname }, envelope: { from, to }, raw: Buffer.from(b.message, 'base64') };
}
