// Item 4: delivery went wherever DNS said. After an override of gmail.com's
// MX the sender connected to 203.0.113.25, under Docker port 25 of a real
// host. Here the MX is made to point at a loopback address outside the lab
// network, where the attack itself listens: never an address off this
// machine, in case the check were broken. The sender must refuse with a
// bounce and never connect.
import { embeddedPort, isLabAddress } from '../../services/lib/addressing.ts';
import { api, message, submit } from './mail.ts';
import { listen, waitFor } from './net.ts';
import { outcome, type Attack } from './report.ts';

// Loopback, and no lab address (only 192.0.2.X is; an embedded MTA would
// reach 192.0.2.X at its twin 127.0.2.X, and this address as it is).
const OUTSIDE = '127.0.9.25';

const outsideMx: Attack = {
  item: 4,
  name: `gmail.com MX overridden to ${OUTSIDE} (outside the lab network), alice@sender.test writes to bob@gmail.com`,
  expected: `the sender never connects to ${OUTSIDE}; the recipient fails with 550 5.4.4 (outside the lab network) and alice gets a bounce that says so`,
  timeoutMs: 20_000,
  async run(lab) {
    if (isLabAddress(OUTSIDE)) throw new Error(`${OUTSIDE} is a lab address: the attack needs one outside`);
    const stranger = await listen({ host: OUTSIDE, port: embeddedPort(25) });
    const control = `http://${lab.at('dns', 'control').host}:${lab.at('dns', 'control').port}/overrides`;
    const override = (name: string, type: string, values: string[]) =>
      fetch(control, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, type, values }) });
    try {
      await override('gmail.com', 'MX', ['10 mx.gmail.com.']);
      await override('mx.gmail.com', 'A', [OUTSIDE]);
      const { data } = message('From: Alice <alice@sender.test>', 'bob@gmail.com', 'outside-mx');
      const queued = await submit(lab, 'sender', { user: 'alice@sender.test', mailFrom: 'alice@sender.test', to: 'bob@gmail.com', data });
      const id = /queued as (\w+)/.exec(queued.text)?.[1];
      if (!id) return outcome(false, `the submission was refused: ${queued.text}`);
      // The bounce goes to alice@sender.test, whose MX is the sender itself.
      const bounce = await waitFor('the bounce', async () => {
        const [session] = await api(lab, 'sender', `/sessions?messageId=${encodeURIComponent(`<${id}.bounce@mta.sender.test>`)}`);
        const stored = session?.deliveries[0];
        return stored && (await (await fetch(`${lab.service('sender').console}api/messages/${stored.id}/raw`)).text());
      });
      const diagnostic = /^Diagnostic-Code: smtp; (.*)$/m.exec(bounce)?.[1].trim() ?? '(none)';
      const left = (await fetch(`${lab.service('sender').console}api/queue/${id}`)).status === 404;
      return outcome(
        /^550 5\.4\.4 mx\.gmail\.com \[127\.0\.9\.25\] is outside the lab network/.test(diagnostic) && left && stranger.connections() === 0,
        `queued as ${id}, ${left ? 'gone from the queue' : 'still queued'}; bounce to alice@sender.test: ${diagnostic}; connections to ${OUTSIDE}:${embeddedPort(25)}: ${stranger.connections()}`,
      );
    } finally {
      for (const name of ['gmail.com', 'mx.gmail.com']) await fetch(`${control}?name=${name}`, { method: 'DELETE' });
    }
  },
};

export const attacks: Attack[] = [outsideMx];
