// What happened to a message at the MTA that received it, read from that
// MTA's API: the session whose transaction carries the message's Message-ID
// for the recipient, its decision, and the copy it stored.
import type { SessionRecord, SessionSummary, Transaction } from '../../services/mta/store/sessions.ts';
import { credentialHeader, getJson } from '../lab/api.ts';
import type { Mta } from './lab.ts';

export interface Observed {
  mta: Mta;
  session: SessionRecord;
  transaction: Transaction;
}

export interface Stored {
  id: string;
  folder: string;
  headers: { name: string; value: string }[];
}

const POLL_MS = 50;

// The first decision after `after` (an ISO time) about this message for
// this recipient; undefined when `refused` says none will come, or at the
// deadline. `refused` is asked between looks.
export async function decisionAt(
  mta: Mta,
  messageId: string,
  recipient: string,
  after: string,
  deadline: number,
  refused: () => Promise<boolean> = async () => false,
): Promise<Observed | undefined> {
  const query = new URLSearchParams({ messageId, recipient });
  const look = async () => {
    const found: Observed[] = [];
    for (const summary of await getJson<SessionSummary[]>(`${mta.api}api/sessions?${query}`)) {
      const session = await getJson<SessionRecord>(`${mta.api}api/sessions/${encodeURIComponent(summary.id)}`);
      for (const transaction of session.transactions) {
        const ours = transaction.message?.messageId === messageId && transaction.envelope.rcptTo.some((r) => r.toLowerCase() === recipient);
        if (ours && transaction.at > after) found.push({ mta, session, transaction });
      }
    }
    return found.sort((a, b) => a.transaction.at.localeCompare(b.transaction.at))[0];
  };
  while (Date.now() < deadline) {
    const observed = await look();
    if (observed) return observed;
    // Once nothing more will come, one last look: it may have come meanwhile.
    if (await refused()) return look();
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  return undefined;
}

// The copy the recipient's mailbox got, with its header fields.
export async function storedCopy(observed: Observed, recipient: string): Promise<Stored | undefined> {
  const delivery = observed.transaction.deliveries.find((d) => d.mailbox === recipient);
  if (!delivery) return undefined;
  const message = await getJson<{ headers: Stored['headers'] }>(`${observed.mta.api}api/messages/${encodeURIComponent(delivery.id)}`);
  return { id: delivery.id, folder: delivery.folder, headers: message.headers };
}

export async function rawCopy(mta: Mta, id: string): Promise<Buffer> {
  const response = await fetch(`${mta.api}api/messages/${encodeURIComponent(id)}/raw`, { headers: credentialHeader(), signal: AbortSignal.timeout(3000) });
  if (!response.ok) throw new Error(`${mta.name} has no message ${id} (${response.status})`);
  return Buffer.from(await response.arrayBuffer());
}
