// Reading a message's DATA into memory, bounded. A message is kept while it
// is within limits.messageSize; past it the rest is read and dropped (a
// client need not say SIZE=, and a 1 GB message was once held whole). All the
// sessions of a server together hold at most MESSAGES_IN_MEMORY messages of
// that size: past it, a message is read and dropped too, and the caller
// answers 452 4.3.1, as for a full disk; the client tries again later. 100
// clients with 10 MiB each are 1 GiB, which a classroom laptop cannot spare.
import type { SMTPServerDataStream } from 'smtp-server';

export const MESSAGES_IN_MEMORY = 8;

export interface MessageData {
  message: Buffer; // what was kept: all of it, unless oversized or overMemory
  size: number; // bytes the client sent
  oversized: boolean;
  overMemory: boolean;
  release(): void; // gives the message's share of memory back, once it is handled
}

export class MessageMemory {
  private held = 0;
  private limit: number;
  private messageSize: number;

  constructor(messageSize: number) {
    this.messageSize = messageSize;
    this.limit = MESSAGES_IN_MEMORY * messageSize;
  }

  async read(stream: SMTPServerDataStream): Promise<MessageData> {
    let chunks: Buffer[] = [];
    let kept = 0;
    let size = 0;
    let overMemory = false;
    const release = () => {
      this.held -= kept;
      kept = 0;
    };
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (overMemory || kept + chunk.length > this.messageSize) continue;
        if (this.held + chunk.length > this.limit) {
          overMemory = true;
          release();
          chunks = [];
          continue;
        }
        chunks.push(chunk);
        kept += chunk.length;
        this.held += chunk.length;
      }
    } catch (error) {
      release();
      throw error;
    }
    // The first part of an oversized message stays: its header fields name it in a record.
    return { message: Buffer.concat(chunks), size, oversized: size > this.messageSize || stream.sizeExceeded, overMemory, release };
  }
}
