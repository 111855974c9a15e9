// Requests to the disk that holds a directory, from /proc/diskstats: what a
// target's durability costs below the file system. Each write and each
// cache flush (what an fsync ends with) is a trip to the device, and on a
// virtual machine an exit to the host; their CPU is the kernel's, and only
// part of it is charged to the process that asked.
import { readFileSync, statSync } from 'node:fs';

export interface DiskRequests {
  writes: number;
  flushes: number;
}

// The device's counters now, or undefined when the directory is not on a
// block device the kernel counts (tmpfs, overlay).
export function diskRequests(dir: string): DiskRequests | undefined {
  const dev = statSync(dir).dev;
  const major = Number((BigInt(dev) >> 8n) & 0xfffn);
  const minor = Number((BigInt(dev) & 0xffn) | ((BigInt(dev) >> 12n) & ~0xffn));
  for (const line of readFileSync('/proc/diskstats', 'utf8').split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (Number(fields[0]) !== major || Number(fields[1]) !== minor) continue;
    // Field 8: writes completed; field 19: flush requests completed (Linux 5.5 and later).
    return { writes: Number(fields[7]), flushes: Number(fields[18] ?? NaN) };
  }
  return undefined;
}
