// The lab addressing rule (DESIGN.md, "Two ways to run"). The lab lives on
// TEST-NET-1, 192.0.2.0/24. Without Docker each lab host X is played by its
// loopback twin 127.0.2.X, and a privileged port P is moved to P + 10000 so
// that no root is needed. Addresses are translated only at socket edges; zone
// files, SPF results and logs always show the lab address.

export const LAB_PREFIX = '192.0.2.';
export const LOOPBACK_PREFIX = '127.0.2.';
export const PRIVILEGED_PORT_SHIFT = 10000;

function hostNumber(address: string, prefix: string): number | undefined {
  if (!address.startsWith(prefix)) return undefined;
  const rest = address.slice(prefix.length);
  if (!/^\d{1,3}$/.test(rest) || Number(rest) > 255) return undefined;
  return Number(rest);
}

export function isLabAddress(address: string): boolean {
  return hostNumber(address, LAB_PREFIX) !== undefined;
}

// 192.0.2.X -> 127.0.2.X; anything else is returned unchanged.
export function loopbackTwin(labAddress: string): string {
  const host = hostNumber(labAddress, LAB_PREFIX);
  return host === undefined ? labAddress : LOOPBACK_PREFIX + host;
}

// 127.0.2.X -> 192.0.2.X (also for the IPv4-mapped form ::ffff:127.0.2.X that
// dual-stack sockets report); anything else is returned unchanged.
export function labAddress(socketAddress: string): string {
  const address = socketAddress.startsWith('::ffff:') ? socketAddress.slice(7) : socketAddress;
  const host = hostNumber(address, LOOPBACK_PREFIX);
  return host === undefined ? address : LAB_PREFIX + host;
}

// The port a service listens on in the embedded lab.
export function embeddedPort(port: number): number {
  return port > 0 && port < 1024 ? port + PRIVILEGED_PORT_SHIFT : port;
}
