// Real nginx as the untrusted provider gateway (scripts/nginx-gateway.sh and
// scripts/nginx/gateway.conf.in): routes by path prefix to TCP or UNIX-socket
// upstreams, streams SSE unbuffered, and logs every request body it forwards,
// as a curious provider would.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import { freePort, repoRoot, startProcess, tempDir, waitFor, httpRequest } from './proc.mjs';

const script = path.join(repoRoot, 'scripts/nginx-gateway.sh');

/** nginx upstream syntax for a target: a socket path, a port, host:port or {socketPath}/{port}. */
export function upstreamOf(target) {
  if (typeof target === 'number') return `127.0.0.1:${target}`;
  if (typeof target === 'object') return target.socketPath ? `unix:${target.socketPath}` : `${target.host || '127.0.0.1'}:${target.port}`;
  if (target.startsWith('/')) return `unix:${target}`;
  return target; // already host:port or unix:/path
}

/**
 * Start the gateway.
 *   opts.upstream   one upstream for every path (socket path, port, host:port, {socketPath})
 *   opts.routes     or { '/v1/': upstream, '/attest/': upstream, ... } (longest prefix wins)
 *   opts.tls        { cert, key } file paths: serve HTTPS
 *   opts.maxBody    largest request body (nginx size, default '64m')
 *   opts.readTimeout upstream read timeout (nginx time, default '300s')
 * Returns { url, port, dir, accessLog, errorLog, proc, requests(), bodies(),
 * waitForRequest(), stop() }:
 *   requests() the parsed access-log entries so far (one per finished request)
 *   bodies()   just their request_body strings
 *   waitForRequest(match, timeoutMs) the first entry for which match(entry) is
 *              true, once nginx has logged it. nginx writes the log line when it
 *              finalises the request, which can be after the client has read the
 *              whole response (it is, with Node 18's non-keep-alive agent), so
 *              a test that checks the request it just made must wait for it.
 */
export async function startGateway(opts = {}) {
  const routes = opts.routes || { '/': opts.upstream };
  const routeArgs = [];
  for (const [prefix, target] of Object.entries(routes)) {
    if (target === undefined) throw new Error('startGateway: give opts.upstream or opts.routes');
    routeArgs.push('--route', `${prefix}=${upstreamOf(target)}`);
  }
  const dir = tempDir('nginx');
  const extra = [];
  if (opts.tls) extra.push('--tls', opts.tls.cert, opts.tls.key);
  if (opts.maxBody) extra.push('--max-body', opts.maxBody);
  if (opts.readTimeout) extra.push('--read-timeout', opts.readTimeout);

  // The port is free when picked but may be taken before nginx binds it:
  // retry with a fresh one when bind() fails.
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const args = ['--dir', dir, '--listen', `127.0.0.1:${port}`, ...routeArgs, ...extra];
    const proc = startProcess('nginx', script, args, { dir });
    const scheme = opts.tls ? 'https' : 'http';
    try {
      await waitFor(
        'nginx gateway',
        async () => {
          if (opts.tls) return fs.existsSync(path.join(dir, 'nginx.pid')) && (await canConnect(port));
          return (await httpRequest({ port, path: '/_gateway/health', timeoutMs: 1000 })).status === 200;
        },
        { proc, timeoutMs: 15000 },
      );
    } catch (err) {
      await proc.stop('SIGKILL');
      if (attempt < 3 && /Address already in use/.test(proc.log())) continue;
      throw err;
    }
    const accessLog = path.join(dir, 'access.log');
    const gw = {
      url: `${scheme}://127.0.0.1:${port}`,
      port,
      dir,
      proc,
      accessLog,
      errorLog: path.join(dir, 'error.log'),
      requests() {
        let text = '';
        try {
          text = fs.readFileSync(accessLog, 'utf8');
        } catch {
          return [];
        }
        return text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
      },
      bodies() {
        return gw.requests().map((r) => r.request_body);
      },
      waitForRequest: (match, timeoutMs = 5000) =>
        waitFor('nginx access-log entry', () => gw.requests().find(match), { timeoutMs, intervalMs: 20 }),
      stop: () => proc.stop('SIGTERM'),
    };
    return gw;
  }
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * A self-signed certificate for 127.0.0.1/localhost (openssl CLI), for
 * gateway TLS: returns { cert, key } paths in a new temp dir.
 */
export function selfSignedCert() {
  const dir = tempDir('cert');
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ], { stdio: 'ignore' });
  return { cert, key };
}
