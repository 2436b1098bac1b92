// A test-only man-in-the-middle: an HTTP relay between the gateway (nginx)
// and confide-worker that can rewrite requests and responses the way a
// malicious provider could (DESIGN §2: drop, modify, reflect, inject,
// replay). It parses HTTP (Node's http module), buffers each request and each
// response completely (also streams: the tests' streams are short), lets the
// test's hooks change them, and sends the result on with a fresh
// Content-Length. Without hooks it relays unchanged.
//
//   const mitm = await startMitm({ upstream: worker.port });
//   mitm.onRequest = (req) => ({ ...req, body: tamper(req.body) });
//   mitm.onResponse = (res, req) => ({ ...res, body: tamper(res.body) });
//   mitm.onRequest = (req) => ({ respond: { status: 200, headers, body } }); // inject
//   mitm.reset();                    // back to a faithful relay
//   mitm.exchanges                   // [{ request, response }] as relayed (after hooks)
//
// request:  { method, path, headers (lower-case names), body: Buffer }
// response: { status, headers, body: Buffer }

import http from 'node:http';
import path from 'node:path';

import { onCleanup, tempDir } from './proc.mjs';

// Hop-by-hop and framing headers are recomputed for each hop.
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'te', 'trailer', 'upgrade', 'proxy-connection']);

function endToEnd(headers) {
  const out = {};
  for (const [k, v] of Object.entries(headers)) if (!HOP.has(k.toLowerCase())) out[k.toLowerCase()] = v;
  return out;
}

function readAll(stream) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    stream.on('data', (c) => chunks.push(c));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

/**
 * Start the relay on a UNIX socket (in a new temp dir).
 *   opts.upstream  the worker: a TCP port on 127.0.0.1, or { host, port } / { socketPath }
 * Returns { socketPath, exchanges, onRequest, onResponse, reset(), send(req), stop() }.
 * send(req) sends a (captured) request straight to the upstream, bypassing
 * the hooks: a replay.
 */
export async function startMitm(opts) {
  const up = typeof opts.upstream === 'number' ? { host: '127.0.0.1', port: opts.upstream } : opts.upstream;
  const socketPath = path.join(tempDir('mitm'), 'mitm.sock');
  const agent = new http.Agent({ keepAlive: true });

  const forward = (req) =>
    new Promise((resolve, reject) => {
      const headers = { ...endToEnd(req.headers) };
      if (req.body.length || !['GET', 'HEAD'].includes(req.method)) headers['content-length'] = req.body.length;
      const r = http.request({ ...(up.socketPath ? { socketPath: up.socketPath } : { host: up.host || '127.0.0.1', port: up.port }), method: req.method, path: req.path, headers, agent }, async (res) => {
        try {
          resolve({ status: res.statusCode, headers: endToEnd(res.headers), body: await readAll(res) });
        } catch (err) {
          reject(err);
        }
      });
      r.setTimeout(120000, () => r.destroy(new Error('mitm: upstream timeout')));
      r.on('error', reject);
      r.end(req.body);
    });

  const mitm = {
    socketPath,
    exchanges: [],
    onRequest: null,
    onResponse: null,
    reset() {
      mitm.onRequest = null;
      mitm.onResponse = null;
    },
    send: forward,
    stop() {
      agent.destroy();
      const closed = new Promise((resolve) => server.close(() => resolve()));
      // Node 19+ does this inside close(); on Node 18 close() waits for the
      // idle keep-alive connections to time out (keepAliveTimeout, 60 s).
      server.closeIdleConnections();
      return closed;
    },
  };

  const server = http.createServer(async (inReq, outRes) => {
    try {
      let request = { method: inReq.method, path: inReq.url, headers: endToEnd(inReq.headers), body: await readAll(inReq) };
      let response;
      if (mitm.onRequest) {
        const r = await mitm.onRequest(request);
        if (r && r.respond) response = { headers: {}, ...r.respond, body: Buffer.from(r.respond.body ?? '') };
        else if (r) request = { ...r, body: Buffer.from(r.body) };
      }
      if (!response) {
        response = await forward(request);
        if (mitm.onResponse) {
          const r = await mitm.onResponse(response, request);
          if (r) response = { ...r, body: Buffer.from(r.body) };
        }
      }
      mitm.exchanges.push({ request, response });
      outRes.writeHead(response.status, { ...response.headers, 'content-length': response.body.length });
      outRes.end(response.body);
    } catch (err) {
      outRes.writeHead(599, { 'content-type': 'text/plain' });
      outRes.end(`mitm relay error: ${err.message}`);
    }
  });
  server.keepAliveTimeout = 60000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, resolve);
  });
  onCleanup(() => mitm.stop());
  return mitm;
}

// ---- tampering helpers -------------------------------------------------------------------

/** The encrypted values ("cf1n:..." / final "cf1f:...") in a body, in order of appearance. */
export function encryptedValues(text) {
  return [...String(text).matchAll(/"(cf1[nf]:[A-Za-z0-9_-]+:[A-Za-z0-9_-]+:[A-Za-z0-9_-]+)"/g)].map((m) => m[1]);
}

/**
 * Flip one bit of the ciphertext of the `which`-th encrypted value (default
 * the first) — a base64url character replaced by another one, so the value
 * stays well-formed and only authentication can catch it.
 */
export function flipCiphertext(text, which = 0) {
  const values = encryptedValues(text);
  if (!values.length) throw new Error('flipCiphertext: no encrypted value in the body');
  const v = values[Math.min(which, values.length - 1)];
  const ct = v.lastIndexOf(':') + 1;
  // Change a character in the middle of the ciphertext (not the last one,
  // whose low bits may be padding bits of base64url).
  const i = ct + Math.floor((v.length - ct) / 2);
  const c = v[i];
  const swapped = c === 'A' ? 'B' : 'A';
  return String(text).replace(v, v.slice(0, i) + swapped + v.slice(i + 1));
}
