// The real inference server of the tests: llama.cpp's llama-server (built by
// scripts/llama.sh from the node-llama-cpp bundle) serving the random-weight
// model from scripts/make-model.py, listening on a UNIX socket only — as it
// does next to confide-worker inside the TEE.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { repoRoot, startProcess, tempDir, waitForHttp } from './proc.mjs';

/** The model id llama-server reports (its --alias). */
export const LLAMA_MODEL_ID = 'confide-tiny';

let cachedPaths;

/**
 * { server, model }: paths of the cached llama-server binary and test model.
 * Env LLAMA_SERVER / CONFIDE_LLAMA_MODEL override; otherwise asks
 * `scripts/llama.sh --model --no-build`, which fails fast (pointing at
 * scripts/e2e-prepare.sh) instead of starting a long build inside a test.
 */
export function llamaPaths() {
  if (cachedPaths) return cachedPaths;
  let server = process.env.LLAMA_SERVER;
  let model = process.env.CONFIDE_LLAMA_MODEL;
  if (!server || !model) {
    const out = execFileSync(path.join(repoRoot, 'scripts/llama.sh'), ['--model', '--no-build'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    for (const line of out.split('\n')) {
      const m = /^(LLAMA_SERVER|CONFIDE_LLAMA_MODEL)=(.*)$/.exec(line);
      if (m && m[1] === 'LLAMA_SERVER') server ||= m[2];
      if (m && m[1] === 'CONFIDE_LLAMA_MODEL') model ||= m[2];
    }
  }
  if (!server || !model) throw new Error('llama-server or the test model not found: run scripts/e2e-prepare.sh');
  cachedPaths = { server, model };
  return cachedPaths;
}

/**
 * The llama-server command line used by the tests and the demo (see
 * docs/operations.md, "Test and demo infrastructure").
 */
export function llamaArgs({ socketPath, model, embeddings = false, ctx = 4096, parallel = 2, threads = 1, alias = LLAMA_MODEL_ID, extraArgs = [] }) {
  const args = [
    '--model', model,
    '--host', socketPath, // a path ending in .sock: AF_UNIX, the port is ignored
    '--alias', alias,
    '--ctx-size', String(ctx),
    '--parallel', String(parallel),
    '--threads', String(threads),
    '--threads-batch', String(threads),
    '--threads-http', '4',
    '--no-warmup',
    '--metrics',
  ];
  // One server can serve chat/completions and embeddings together; the
  // model has no pooling type of its own and /v1/embeddings needs one.
  if (embeddings) args.push('--embeddings', '--pooling', 'mean');
  return [...args, ...extraArgs];
}

/**
 * Start llama-server on a new UNIX socket and wait for GET /health == 200.
 *   opts.embeddings  also serve /v1/embeddings (see the docs for the trade-off)
 *   opts.ctx, parallel, threads, alias, extraArgs  see llamaArgs()
 *   opts.dir         where the socket and log go (default: a new tempDir)
 * Returns { socketPath, modelId, proc, dir, stop() }.
 */
export async function startLlama(opts = {}) {
  const { server, model } = llamaPaths();
  const dir = opts.dir || tempDir('llama');
  const socketPath = path.join(dir, 'llama.sock');
  // llama-server neither removes its socket file on exit nor replaces a
  // stale one (bind fails with "couldn't bind HTTP server socket").
  fs.rmSync(socketPath, { force: true });
  const proc = startProcess('llama-server', server, llamaArgs({ ...opts, socketPath, model }), { dir });
  await waitForHttp({ socketPath, path: '/health' }, { proc, timeoutMs: opts.timeoutMs || 60000, intervalMs: 50 });
  return { socketPath, modelId: opts.alias || LLAMA_MODEL_ID, proc, dir, stop: () => proc.stop() };
}
