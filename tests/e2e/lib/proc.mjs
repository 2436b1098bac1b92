// Process, temp-dir, port and readiness helpers for the end-to-end tests.
//
// Everything started or created here is registered and torn down by
// cleanup() — call it from the test file's after() hook — and, as a backstop,
// when the Node process exits or gets SIGINT/SIGTERM/SIGHUP (children get
// SIGKILL then; temp dirs are removed unless CONFIDE_KEEP_TMP=1). If the test
// process is SIGKILLed, the kernel kills the children (PR_SET_PDEATHSIG via
// setpriv); only temp dirs can then be left behind. Each child runs in
// its own process group (so a wrapper's children die with it) with stdout and
// stderr in one log file under its temp dir; a readiness wait fails at once,
// with the log tail, if the child exits first.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (tests/e2e/lib/../../..). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

const SETPRIV = '/usr/bin/setpriv';
const children = new Set();
const tempDirs = new Set();
const cleanupHooks = new Set();
const keepTmp = process.env.CONFIDE_KEEP_TMP === '1';

/**
 * Create a private (0700) temp dir, removed by cleanup(). Kept short so
 * UNIX socket paths inside it stay under the 108-byte sun_path limit.
 */
export function tempDir(label = 'e2e') {
  const base = process.env.CONFIDE_TEST_TMP || os.tmpdir();
  const dir = fs.mkdtempSync(path.join(base, `cfe2e-${label.slice(0, 12)}-`));
  fs.chmodSync(dir, 0o700);
  tempDirs.add(dir);
  return dir;
}

/** Last `lines` lines of a text file ('' if it does not exist). */
export function tail(file, lines = 40) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/**
 * Start a long-running process.
 *   name     label for logs and errors
 *   cmd,args the program
 *   opts.env extra environment (merged over process.env)
 *   opts.cwd working directory (default: repo root)
 *   opts.dir directory for the log file (default: a new tempDir)
 * Returns a handle: { name, pid, child, dir, logPath, exited (Promise of
 * {code, signal}), running(), log() (full log text), stop(signal, ms) }.
 */
export function startProcess(name, cmd, args = [], opts = {}) {
  const dir = opts.dir || tempDir(name);
  const logPath = path.join(dir, `${name}.log`);
  const fd = fs.openSync(logPath, 'a');
  // setpriv (util-linux, always on Debian) makes the kernel SIGKILL the
  // child when this process dies, even by SIGKILL, so nothing is orphaned.
  const [file, argv] = fs.existsSync(SETPRIV) ? [SETPRIV, ['--pdeathsig', 'KILL', '--', cmd, ...args]] : [cmd, args];
  const child = spawn(file, argv, {
    cwd: opts.cwd || repoRoot,
    env: { ...process.env, ...(opts.env || {}) },
    stdio: ['ignore', fd, fd],
    detached: true, // own process group: kill(-pid) reaches its children too
  });
  fs.closeSync(fd);
  // A running child does not keep the test process alive: a file that
  // forgets after(cleanup) still ends, and the exit hook kills the child.
  child.unref();
  let done = false;
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      done = true;
      children.delete(handle);
      resolve({ code, signal });
    });
    child.on('error', (err) => {
      done = true;
      children.delete(handle);
      fs.appendFileSync(logPath, `spawn error: ${err.message}\n`);
      resolve({ code: -1, signal: null, error: err });
    });
  });
  const handle = {
    name,
    pid: child.pid,
    child,
    dir,
    logPath,
    exited,
    running: () => !done,
    log: () => {
      try {
        return fs.readFileSync(logPath, 'utf8');
      } catch {
        return '';
      }
    },
    /** SIGTERM (or `signal`), then SIGKILL after `ms`; resolves on exit. */
    async stop(signal = 'SIGTERM', ms = 5000) {
      if (done) return exited;
      killGroup(child.pid, signal);
      const timer = setTimeout(() => killGroup(child.pid, 'SIGKILL'), ms);
      const res = await exited;
      clearTimeout(timer);
      return res;
    },
  };
  children.add(handle);
  return handle;
}

function killGroup(pid, signal) {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      /* already gone */
    }
  }
}

/** Error carrying the log tail of `proc` (when given). */
function failure(what, proc) {
  const msg = proc ? `${what}\n--- ${proc.name} log (${proc.logPath}) ---\n${tail(proc.logPath)}` : what;
  return new Error(msg);
}

/**
 * Poll `probe` (async () => truthy) every `intervalMs` until it returns a
 * truthy value (which is returned), `timeoutMs` passes, or `proc` exits.
 */
export async function waitFor(what, probe, { timeoutMs = 30000, intervalMs = 50, proc } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  for (;;) {
    if (proc && !proc.running()) {
      const { code, signal } = await proc.exited;
      throw failure(`${what}: ${proc.name} exited (code ${code}, signal ${signal}) before it was ready`, proc);
    }
    try {
      const v = await probe();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      throw failure(`${what}: not ready after ${timeoutMs} ms${lastErr ? ` (last error: ${lastErr.message})` : ''}`, proc);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

function tryConnect(opts) {
  return new Promise((resolve, reject) => {
    const s = net.connect(opts);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', reject);
  });
}

/** Wait until a UNIX socket at `socketPath` accepts connections. */
export function waitForSocket(socketPath, opts = {}) {
  return waitFor(`socket ${socketPath}`, () => tryConnect({ path: socketPath }), opts);
}

/** Wait until 127.0.0.1:`port` (or `opts.host`) accepts connections. */
export function waitForPort(port, opts = {}) {
  const host = opts.host || '127.0.0.1';
  return waitFor(`port ${host}:${port}`, () => tryConnect({ host, port }), opts);
}

/**
 * Wait until an HTTP GET answers `opts.status` (default 200). `target` is a
 * URL string or { socketPath, path } for a UNIX socket.
 */
export function waitForHttp(target, opts = {}) {
  const want = opts.status || 200;
  const label = typeof target === 'string' ? target : `unix:${target.socketPath}${target.path}`;
  return waitFor(
    `GET ${label}`,
    async () => (await httpRequest({ ...toReq(target), timeoutMs: 2000 })).status === want,
    opts,
  );
}

function toReq(target) {
  if (typeof target !== 'string') return { method: 'GET', ...target };
  const u = new URL(target);
  return { method: 'GET', host: u.hostname, port: Number(u.port || 80), path: u.pathname + u.search };
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * One raw HTTP/1.1 request (no client library in the way), for tests that
 * need exact bytes: { socketPath | host+port, method, path, headers, body,
 * timeoutMs } -> { status, headers, body (Buffer), text() , json() }.
 */
export function httpRequest({ socketPath, host = '127.0.0.1', port, method = 'GET', path: p = '/', headers = {}, body, timeoutMs = 30000 }) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const h = { ...headers };
    if (payload) {
      h['content-length'] = payload.length;
      if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['content-type'] = 'application/json';
    }
    const req = http.request(
      socketPath ? { socketPath, method, path: p, headers: h, agent: false } : { host, port, method, path: p, headers: h, agent: false },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const buf = Buffer.concat(chunks);
          resolve({
            status: res.statusCode,
            headers: res.headers,
            body: buf,
            text: () => buf.toString('utf8'),
            json: () => JSON.parse(buf.toString('utf8')),
          });
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
    if (payload) req.write(payload);
    req.end();
  });
}

/** Run `fn` (async) in cleanup(), before processes stop; e.g. to close in-process servers. */
export function onCleanup(fn) {
  cleanupHooks.add(fn);
  return fn;
}

/**
 * Stop everything started here: cleanup hooks, then every process (SIGTERM,
 * then SIGKILL after 5 s), then remove the temp dirs. Use as after(cleanup).
 */
export async function cleanup() {
  const hooks = [...cleanupHooks];
  cleanupHooks.clear();
  for (const fn of hooks) await fn();
  await Promise.all([...children].map((c) => c.stop()));
  if (!keepTmp) {
    for (const d of tempDirs) await fsp.rm(d, { recursive: true, force: true });
  } else if (tempDirs.size) {
    process.stderr.write(`CONFIDE_KEEP_TMP=1: kept ${[...tempDirs].join(' ')}\n`);
  }
  tempDirs.clear();
}

// Backstop for failures that skip after(): synchronous kill and removal.
function cleanupSync() {
  for (const c of children) killGroup(c.pid, 'SIGKILL');
  children.clear();
  if (!keepTmp) for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
  tempDirs.clear();
}
process.on('exit', cleanupSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    cleanupSync();
    process.exit(128 + os.constants.signals[sig]);
  });
}

/**
 * Path of a program built by make (build/default/bin/NAME, or $CONFIDE_BUILD
 * which the Makefile exports, so SANITIZE=1 runs test the sanitizer build).
 */
export function confideBin(name) {
  const p = path.join(process.env.CONFIDE_BUILD || path.join(repoRoot, 'build/default'), 'bin', name);
  if (!fs.existsSync(p)) throw new Error(`${p} not built: run make`);
  return p;
}

/**
 * Which of `files` contain any of `needles` (strings or Buffers), as
 * [{ file, needle }]: for asserting that prompts, replies or keys never show
 * up in logs, gateway records or tap captures. Missing files are skipped.
 */
export function filesContaining(needles, files) {
  const hits = [];
  for (const file of files.flat()) {
    let data;
    try {
      data = fs.readFileSync(typeof file === 'string' ? file : file.logPath);
    } catch {
      continue;
    }
    for (const n of needles) if (data.includes(Buffer.isBuffer(n) ? n : Buffer.from(String(n)))) hits.push({ file: typeof file === 'string' ? file : file.logPath, needle: String(n) });
  }
  return hits;
}
