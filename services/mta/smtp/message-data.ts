// Reading a message's DATA into memory, bounded. A message is kept while it
// is within limits.messageSize; past it the rest is read and dropped (a
// client need not say SIZE=, and a 1 GB message was once held whole). All the
// sessions of a server together hold at most MESSAGES_IN_MEMORY messages of
// that size: past it, a message is read and dropped too, and the caller
// answers 452 4.3.1, as for a full disk; the client tries again later. 100
// clients with 10 MiB each are 1 GiB, which a classroom laptop cannot spare.
// One client address may hold only half of that: one client trickling a few
// large messages cannot make every other's be refused.
import type { SMTPServerDataStream } from 'smtp-server';

export const MESSAGES_IN_MEMORY = 8;

export interface MessageData {
  message: Buffer; // what was kept: all of it, unless oversized or overMemory
  size: number; // bytes the client sent
  oversized: boolean;
  overMemory?: string; // why it was dropped for memory, as the 452 says it
  release(): void; // gives the message's share of memory back, once it is handled
}

export class MessageMemory {
  private held = 0;
  private heldBy = new Map<string, number>(); // client address -> bytes its messages hold
  private limit: number;
  private messageSize: number;

  constructor(messageSize: number) {
    this.messageSize = messageSize;
    this.limit = MESSAGES_IN_MEMORY * messageSize;
  }

  async read(stream: SMTPServerDataStream, client: string): Promise<MessageData> {
    let chunks: Buffer[] = [];
    let kept = 0;
    let size = 0;
    let overMemory: string | undefined;
    const hold = (bytes: number) => {
      this.held += bytes;
      const theirs = (this.heldBy.get(client) ?? 0) + bytes;
      if (theirs) this.heldBy.set(client, theirs);
      else this.heldBy.delete(client);
    };
    const release = () => {
      hold(-kept);
      kept = 0;
    };
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (overMemory || kept + chunk.length > this.messageSize) continue;
        const all = this.held + chunk.length > this.limit;
        if (all || (this.heldBy.get(client) ?? 0) + chunk.length > this.limit / 2) {
          overMemory = all
            ? `as many messages are being received as are held at once (${MESSAGES_IN_MEMORY} of the size limit)`
            : `messages from ${client} being received at once hold as much as one client may (${MESSAGES_IN_MEMORY / 2} of the size limit)`;
          release();
          chunks = [];
          continue;
        }
        chunks.push(chunk);
        kept += chunk.length;
        hold(chunk.length);
      }
    } catch (error) {
      release();
      throw error;
    }
    // The first part of an oversized message stays: its header fields name it in a record.
    return { message: Buffer.concat(chunks), size, oversized: size > this.messageSize || stream.sizeExceeded, overMemory, release };
  }
}
