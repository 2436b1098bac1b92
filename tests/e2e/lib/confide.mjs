// A whole confidential deployment for the end-to-end tests, the demo and the
// chain benchmark, from real parts (docs/operations.md, "Test and demo
// infrastructure"):
//
//   app ─► confide-proxy ─► nginx (untrusted gateway) ─► [tap | mitm] ─► confide-worker ─► backend
//                 │                                                           │      (UNIX socket)
//                 └────────────► confide-as (sim TEE) ◄───────────────────────┘
//
// The backend is llama-server (startLlama) or the fault-injection backend
// (startFakeBackend). Between nginx and the worker sits either a byte-exact
// wire tap (what the provider's network carries, both directions) or a
// man-in-the-middle relay (lib/mitm.mjs) that rewrites traffic the way a
// malicious provider could.
//
// Every step is also exported on its own, so tests can build broken
// deployments (an AS whose evidence does not match the manifest, a proxy
// pinned to another manifest, ...).

import { execFileSync } from 'node:child_process';
import path from 'node:path';

import { startGateway } from './nginx.mjs';
import { startLlama } from './llama.mjs';
import { startFakeBackend } from './fake-backend.mjs';
import { startTap } from './tap.mjs';
import { startMitm } from './mitm.mjs';
import { confideBin, httpRequest, startProcess, tempDir, waitFor, waitForHttp } from './proc.mjs';

export * from './index.mjs';
export * from './mitm.mjs';

/** Run the `confide` tool; returns stdout (throws with stderr on failure). */
export function confideTool(args, opts = {}) {
  try {
    return execFileSync(confideBin('confide'), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  } catch (err) {
    throw new Error(`confide ${args.join(' ')} failed (${err.status}): ${err.stderr || err.message}`);
  }
}

/**
 * `confide sim init DIR`: a simulated TEE platform (root + platform key).
 * Returns { dir, rootFingerprint }.
 */
export function simInit(dir = path.join(tempDir('sim'), 'sim')) {
  const out = confideTool(['sim', 'init', dir]);
  const m = /([0-9a-f]{64})/.exec(out);
  if (!m) throw new Error(`confide sim init: no root fingerprint in: ${out}`);
  return { dir, rootFingerprint: m[1] };
}

/**
 * `confide manifest new` for the sim platform, pinning the SHA-384 of the
 * given binaries (default: the confide-as and confide-worker under test).
 * Returns { path, sha256 }.
 */
export function makeManifest({ simDir, models, out, asBinary, workerBinary, name }) {
  const file = out || path.join(tempDir('manifest'), 'manifest.json');
  const args = [
    'manifest', 'new', '--sim-dir', simDir,
    '--as-binary', asBinary || confideBin('confide-as'),
    '--worker-binary', workerBinary || confideBin('confide-worker'),
    '--models', [].concat(models).join(','),
    '--out', file,
  ];
  if (name) args.push('--name', name);
  confideTool(args);
  const sha256 = confideTool(['manifest', 'hash', file]).trim().split(/\s+/)[0];
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`confide manifest hash: unexpected output ${sha256}`);
  return { path: file, sha256 };
}

/** The port a confide daemon logged in its `<event> ... port=N` start line. */
async function loggedPort(proc, event, timeoutMs) {
  const re = new RegExp(`event=${event}\\b.*?\\bport=(\\d+)`);
  return Number(
    await waitFor(`${proc.name} ${event}`, () => {
      const m = re.exec(proc.log());
      return m && m[1];
    }, { proc, timeoutMs }),
  );
}

/**
 * confide-as on the sim platform, on a free port (port 0; read from its
 * `as_started` log line). opts.extraArgs e.g. ['--self-check=false'].
 * Returns { url, port, proc, stop() }.
 */
export async function startAs({ simDir, manifest, extraArgs = [], dir, timeoutMs = 30000 }) {
  const args = ['--platform', 'sim', '--sim-dir', simDir, '--manifest', manifestPath(manifest), '--port', '0', ...extraArgs];
  const proc = startProcess('confide-as', confideBin('confide-as'), args, { dir });
  const port = await loggedPort(proc, 'as_started', timeoutMs);
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}/healthz`, { proc, timeoutMs });
  return { url, port, proc, stop: () => proc.stop() };
}

/**
 * confide-worker on the sim platform in front of `backendSocket`, joined to
 * the AS at `asUrl`: waits until /healthz is 200 (attested, key stream up).
 * Returns { url, port, proc, stop() }.
 */
export async function startWorker({ simDir, manifest, asUrl, backendSocket, extraArgs = [], dir, timeoutMs = 30000 }) {
  const args = [
    '--platform', 'sim', '--sim-dir', simDir, '--manifest', manifestPath(manifest),
    '--as-url', asUrl, '--as-allow-http',
    '--backend-socket', backendSocket, '--port', '0', ...extraArgs,
  ];
  const proc = startProcess('confide-worker', confideBin('confide-worker'), args, { dir });
  const port = await loggedPort(proc, 'worker_started', timeoutMs);
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}/healthz`, { proc, timeoutMs });
  return { url, port, proc, stop: () => proc.stop() };
}

/**
 * The command-line flags of confide-proxy for this deployment (see
 * docs/operations.md §confide-proxy), shared with scripts/demo.sh.
 */
export function proxyArgs({ asUrl, manifest, upstream, port = 0, extraArgs = [] }) {
  return [
    '--as', asUrl, '--allow-plain-http',
    '--manifest', manifestPath(manifest),
    '--upstream', upstream,
    '--port', String(port), ...extraArgs,
  ];
}

/**
 * confide-proxy: attests the AS, uploads its key, then serves the OpenAI API
 * on 127.0.0.1 (`port`, default 0: any free one, read from its
 * `proxy_started` log line). By default
 * resolves when its /healthz is 200 (AS verified, key uploaded); rejects
 * (with the log tail) if it exits first. With `ready: false` it resolves as
 * soon as it listens, for tests of a proxy that must refuse to serve.
 * Returns { url, baseURL, port, proc, health(), stop() }.
 */
export async function startProxy({ asUrl, manifest, upstream, port = 0, extraArgs = [], dir, timeoutMs = 30000, ready = true }) {
  const proc = startProcess('confide-proxy', confideBin('confide-proxy'), proxyArgs({ asUrl, manifest, upstream, port, extraArgs }), { dir });
  const listening = await loggedPort(proc, 'proxy_started', timeoutMs);
  const url = `http://127.0.0.1:${listening}`;
  if (ready) await waitForHttp(`${url}/healthz`, { proc, timeoutMs });
  const health = async () => {
    const r = await httpRequest({ port: listening, path: '/healthz', timeoutMs: 5000 });
    let body = null;
    try {
      body = r.json();
    } catch {
      /* not JSON */
    }
    return { status: r.status, body };
  };
  return { url, baseURL: `${url}/v1`, port: listening, proc, health, stop: () => proc.stop() };
}

function manifestPath(m) {
  return typeof m === 'string' ? m : m.path;
}

/**
 * Start a whole deployment.
 *   opts.backend   'llama' (default) | 'fake' | { socketPath, modelId } (already running)
 *   opts.llama     options for startLlama (e.g. { embeddings: true })
 *   opts.between   'tap' (default) | 'mitm' | 'none': what sits between nginx and the worker
 *   opts.workerArgs, opts.asArgs, opts.proxyArgs   extra flags
 * Returns { sim, manifest, backend, as, worker, tap?, mitm?, gateway, proxy,
 * baseURL, modelId, daemons (process handles, for log leak checks),
 * wireFiles (gateway access log + tap captures) }.
 */
export async function startConfide(opts = {}) {
  const backendOpt = opts.backend || 'llama';
  const backendP =
    backendOpt === 'llama' ? startLlama(opts.llama || {}) : backendOpt === 'fake' ? startFakeBackend() : Promise.resolve(backendOpt);
  const sim = simInit();
  const models = opts.models || [...new Set(['confide-tiny', 'fake-model', backendOpt.modelId].filter(Boolean))];
  const manifest = makeManifest({ simDir: sim.dir, models });
  const [backend, as] = await Promise.all([backendP, startAs({ simDir: sim.dir, manifest, extraArgs: opts.asArgs })]);
  const worker = await startWorker({ simDir: sim.dir, manifest, asUrl: as.url, backendSocket: backend.socketPath, extraArgs: opts.workerArgs });
  const between = opts.between || 'tap';
  let tap;
  let mitm;
  let workerHop = worker.port;
  if (between === 'tap') {
    tap = await startTap({ upstream: worker.port });
    workerHop = tap.socketPath;
  } else if (between === 'mitm') {
    mitm = await startMitm({ upstream: worker.port });
    workerHop = mitm.socketPath;
  }
  // The provider's gateway carries the API; the AS is reached directly here
  // (it would have its own route in production; it is attested either way).
  const gateway = await startGateway({ upstream: workerHop });
  const proxy = await startProxy({ asUrl: as.url, manifest, upstream: gateway.url, extraArgs: opts.proxyArgs });
  return {
    sim,
    manifest,
    backend,
    as,
    worker,
    tap,
    mitm,
    gateway,
    proxy,
    baseURL: proxy.baseURL,
    modelId: backend.modelId,
    daemons: [as.proc, worker.proc, proxy.proc],
    wireFiles: [gateway.accessLog, ...(tap ? tap.files : [])],
  };
}
