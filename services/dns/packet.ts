// dns2's packet codec alone. The package's entry point also loads its clients
// and servers (DoH, HTTP/2, TLS), which this server never uses and which cost
// about 8 MB of memory; the codec's own file is not in the package's exports.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

export const Packet: typeof import('dns2').Packet = require(join(dirname(require.resolve('dns2')), 'packet.js'));
