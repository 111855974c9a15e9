// One MTA instance, assembled: the MX and the API over shared storage. The
// instance file says who it is; the caller says where it listens.
import { join } from 'node:path';
import type { Server } from 'node:http';
import type { SMTPServer } from 'smtp-server';
import type { Endpoint } from '../lib/config.ts';
import type { Logger } from '../lib/log.ts';
import { LabResolver } from '../lib/resolver.ts';
import { startApi } from './api.ts';
import { createInbound } from './inbound.ts';
import type { Instance } from './instance.ts';
import { Maildir } from './maildir.ts';
import { SessionStore } from './sessions.ts';

export interface MtaOptions {
  instance: Instance;
  dataDir: string; // mail/ (Maildirs) and sessions/ (records) live here
  mx: Endpoint;
  api: Endpoint;
  dns: Endpoint;
  tls: { key: Buffer; cert: Buffer };
  log: Logger;
}

export interface RunningMta {
  mxPort: number;
  apiPort: number;
  maildir: Maildir;
  sessions: SessionStore;
  close(): Promise<void>;
}

export async function startMta(options: MtaOptions): Promise<RunningMta> {
  const { instance, log } = options;
  const resolver = new LabResolver(options.dns);
  const maildir = new Maildir(join(options.dataDir, 'mail'), instance.hostname);
  const sessions = new SessionStore(join(options.dataDir, 'sessions'), instance.sessionsKept);
  const mx = createInbound({ instance, resolver, maildir, sessions, log, tls: options.tls });
  await listen(mx, options.mx);
  const api = await startApi(options.api, instance, maildir, sessions);
  const mxPort = (mx.server.address() as { port: number }).port;
  const apiPort = (api.address() as { port: number }).port;
  log.info({ mx: `${options.mx.host}:${mxPort}`, api: `${options.api.host}:${apiPort}`, dns: `${options.dns.host}:${options.dns.port}` }, `${instance.name} (${instance.hostname}) listening`);
  return {
    mxPort,
    apiPort,
    maildir,
    sessions,
    close: () => closeAll(mx, api),
  };
}

function listen(server: SMTPServer, at: Endpoint): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
}

async function closeAll(mx: SMTPServer, api: Server): Promise<void> {
  api.close();
  await new Promise<void>((resolve) => mx.close(() => resolve()));
}
