// A wire tap: a byte-for-byte TCP/UNIX-socket relay that records everything
// flowing in both directions, to put between the gateway and an upstream
// (e.g. nginx -> tap -> confide-worker). nginx's access log shows what a
// provider sees of requests; the tap also shows the responses (and every
// header), so tests can assert that neither prompts nor replies ever cross
// the untrusted hop in the clear.

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import { onCleanup, tempDir } from './proc.mjs';

const taps = new Set();

/**
 * Start a tap.
 *   opts.upstream  where to relay: a UNIX socket path, a TCP port on
 *                  127.0.0.1, or { socketPath } / { host, port }
 *   opts.listen    'unix' (default: a socket in a new temp dir) or 'tcp'
 * Returns { socketPath | port, dir, upstreamBytes(), downstreamBytes(),
 * connections(), stop() }: upstreamBytes() is every byte sent towards the
 * upstream (requests), downstreamBytes() every byte sent back (responses),
 * each a Buffer of all connections concatenated in arrival order.
 */
export async function startTap(opts) {
  const dir = tempDir('tap');
  const up = typeof opts.upstream === 'string' ? { path: opts.upstream } : typeof opts.upstream === 'number' ? { host: '127.0.0.1', port: opts.upstream } : opts.upstream.socketPath ? { path: opts.upstream.socketPath } : { host: opts.upstream.host || '127.0.0.1', port: opts.upstream.port };
  const upFile = path.join(dir, 'to-upstream.bin');
  const downFile = path.join(dir, 'from-upstream.bin');
  let count = 0;
  const sockets = new Set();
  const server = net.createServer((client) => {
    count++;
    const upstream = net.connect(up);
    sockets.add(client);
    sockets.add(upstream);
    client.on('data', (d) => {
      fs.appendFileSync(upFile, d);
      upstream.write(d);
    });
    upstream.on('data', (d) => {
      fs.appendFileSync(downFile, d);
      client.write(d);
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    const kill = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', kill);
    upstream.on('error', kill);
    client.on('close', kill);
    upstream.on('close', kill);
  });
  const listen = opts.listen === 'tcp' ? { host: '127.0.0.1', port: 0 } : { path: path.join(dir, 'tap.sock') };
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen, resolve);
  });
  const read = (f) => {
    try {
      return fs.readFileSync(f);
    } catch {
      return Buffer.alloc(0);
    }
  };
  const tap = {
    dir,
    ...(listen.path ? { socketPath: listen.path } : { port: server.address().port }),
    files: [upFile, downFile],
    upstreamBytes: () => read(upFile),
    downstreamBytes: () => read(downFile),
    connections: () => count,
    stop() {
      if (!taps.has(tap)) return Promise.resolve();
      taps.delete(tap);
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
  taps.add(tap);
  onCleanup(() => tap.stop());
  return tap;
}
