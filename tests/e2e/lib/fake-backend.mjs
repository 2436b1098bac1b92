// The fault-injection backend (tests/fake-backend/server.mjs) as a child
// process on a UNIX socket. Scenarios are chosen per request by the
// X-Fake-Scenario header or a [[fake:NAME k=v]] marker in the body; see the
// header of tests/fake-backend/server.mjs and docs/operations.md.

import fs from 'node:fs';
import path from 'node:path';

import { repoRoot, startProcess, tempDir, waitForHttp } from './proc.mjs';

/**
 * Start it; returns { socketPath, modelId: 'fake-model', proc, dir, logFile,
 * requests() (every request it received: {time, method, path, headers, body}),
 * stop() }.
 */
export async function startFakeBackend(opts = {}) {
  const dir = opts.dir || tempDir('fake');
  const socketPath = path.join(dir, 'fake.sock');
  const logFile = path.join(dir, 'requests.jsonl');
  const proc = startProcess('fake-backend', process.execPath, [path.join(repoRoot, 'tests/fake-backend/server.mjs'), '--socket', socketPath, '--log', logFile], { dir });
  await waitForHttp({ socketPath, path: '/health' }, { proc, timeoutMs: opts.timeoutMs || 15000 });
  return {
    socketPath,
    modelId: 'fake-model',
    proc,
    dir,
    logFile,
    requests() {
      let text = '';
      try {
        text = fs.readFileSync(logFile, 'utf8');
      } catch {
        return [];
      }
      // The health probes are requests too; keep only the API calls.
      return text.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.path !== '/health');
    },
    stop: () => proc.stop(),
  };
}
