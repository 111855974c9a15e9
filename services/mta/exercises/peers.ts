// The other lab hosts an exercise check works through, as the receiver
// reaches them: the sender (the student's own mail, their DKIM keys), the
// attacker (spoofs) and the forwarder. Their instance files sit beside the
// receiver's; their addresses are reached as every lab address is (Outbound:
// the host itself under Docker, its loopback twin embedded). Their APIs are
// asked with the grader's credential, which the class directory holds.
import { dirname, join } from 'node:path';
import { ConfigError } from '../../lib/config.ts';
import type { Outbound } from '../outbound/deliver.ts';
import { loadInstance, type Instance } from '../instance.ts';

const SENDER = 'sender';
const ATTACKER = 'attacker';
const FORWARDER = 'forwarder';

export class LabPeers {
  readonly sender: Instance;
  readonly attacker: Instance;
  readonly forwarder: Instance;
  readonly grader: string;
  private outbound: Outbound;

  constructor(receiver: Instance, outbound: Outbound, grader: string) {
    const sibling = (name: string) => loadInstance(join(dirname(receiver.file), `${name}.yaml`));
    this.sender = sibling(SENDER);
    this.attacker = sibling(ATTACKER);
    this.forwarder = sibling(FORWARDER);
    // The checks send as the sender's and the attacker's first users (probes.ts).
    for (const instance of [this.sender, this.attacker]) {
      if (instance.submission.passwords.size === 0) throw new ConfigError(`${instance.file}: submission.passwords: the exercise checks log in as its first user, and it has none`);
    }
    this.outbound = outbound;
    this.grader = grader;
  }

  submission(instance: Instance): { host: string; port: number } {
    return this.outbound.connect(instance.address, instance.ports.submission);
  }

  // GET on another instance's API; undefined for a 404.
  async api<T>(instance: Instance, path: string): Promise<T | undefined> {
    const { host, port } = this.outbound.connect(instance.address, instance.ports.api);
    const response = await fetch(`http://${host}:${port}${path}`, { headers: { authorization: `Bearer ${this.grader}` }, signal: AbortSignal.timeout(5000) });
    if (response.status === 404) return undefined;
    if (!response.ok) throw new Error(`${instance.hostname} answered ${response.status} to ${path}: ${(await response.text()).slice(0, 200)}`);
    return (await response.json()) as T;
  }

  get localAddress(): string | undefined {
    return this.outbound.localAddress;
  }
}
