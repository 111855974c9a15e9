// An SMTP server listening on its endpoint; a busy port or address is an error.
import type { SMTPServer } from 'smtp-server';
import type { Endpoint } from '../lib/config.ts';

export function listen(server: SMTPServer, at: Endpoint): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.removeListener('error', reject);
      resolve((server.server.address() as { port: number }).port);
    });
  });
}
