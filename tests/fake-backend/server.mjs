#!/usr/bin/env node
// fake-backend — a tiny OpenAI-compatible backend that misbehaves on request,
// for fault-injection tests of confide-worker (DESIGN §6: never the only
// backend; the real one is llama-server). No dependencies beyond Node.js
// (18.19 or newer: Debian 12's own nodejs runs it).
//
//   node tests/fake-backend/server.mjs (--socket PATH | --port N) [--log FILE]
//
// --socket PATH  listen on a UNIX socket (a stale socket file is replaced)
// --port N       listen on 127.0.0.1:N instead (0 = any; the port is printed)
// --log FILE     append every request as one JSON line
//                {time, method, path, headers, body}
//
// Prints one line "fake-backend listening on unix:PATH" (or "127.0.0.1:N") on
// stdout when ready. Stops on SIGTERM/SIGINT.
//
// Endpoints: GET /health, GET /v1/models (model "fake-model"),
// POST /v1/chat/completions, POST /v1/completions (both with "stream"),
// POST /v1/embeddings (8-dim vectors derived from SHA-256 of each input;
// encoding_format float or base64),
// GET /_fake/requests (the requests seen so far, JSON array). Other paths 404.
//
// A scenario is picked per request, by the header
//     X-Fake-Scenario: NAME [key=value ...]
// or, since headers may not survive the proxy/worker hop, by a marker
// anywhere in the request body (e.g. inside the prompt):
//     [[fake:NAME key=value ...]]
// The header wins. Scenarios (default: echo):
//
//   echo       reply "echo: <last user message or prompt>"; streamed one word
//              per event.                       keys: delay=ms between events (0)
//   slow       tokens=N (20) words "tokK", one every delay=ms (100); non-
//              streamed: the whole reply after N*delay.
//   cut        stream events=N (3) good events, then half of the next event,
//              then the connection is destroyed (no chunked terminator);
//              non-streamed: Content-Length promises more than is sent.
//   huge       one content event (or reply) of size=N bytes (1048576) on a
//              single data line.
//   comments   ": ..." comment lines, "event:", "id:" and "retry:" fields
//              between the events (all legal SSE).
//   crlf       every SSE line ends in CRLF instead of LF.
//   multiline  each event's JSON is pretty-printed over several "data:"
//              lines (SSE joins them with "\n"; still valid JSON).
//   split      each event written in chunk=N-byte (1) writes, delay=ms (0)
//              apart, so event boundaries fall anywhere.
//   nodone     the stream ends cleanly without "data: [DONE]".
//   stall      stream events=N (2) events, then nothing, connection kept open.
//   hang       read the request, never answer (connection kept open).
//   close      destroy the connection without answering.
//   error      status=N (500), OpenAI-style JSON error body, message=TEXT
//              (use "_" for spaces).
//   garbage    status 200 with a body that is not JSON (non-streamed) or
//              data lines that are not JSON (streamed).

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';

const MODEL = 'fake-model';

function parseArgs(argv) {
  const o = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--socket') o.socket = argv[++i];
    else if (a === '--port') o.port = Number(argv[++i]);
    else if (a === '--log') o.log = argv[++i];
    else if (a === '-h' || a === '--help') o.help = true;
    else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

/** "NAME k=v k=v" -> { name, params } */
export function parseScenario(spec) {
  const parts = spec.trim().split(/\s+/).filter(Boolean);
  const name = parts.shift() || 'echo';
  const params = {};
  for (const p of parts) {
    const eq = p.indexOf('=');
    if (eq > 0) params[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return { name, params };
}

function pickScenario(req, bodyText) {
  const h = req.headers['x-fake-scenario'];
  if (typeof h === 'string' && h.trim()) return parseScenario(h);
  const m = /\[\[fake:([^\]]*)\]\]/.exec(bodyText);
  if (m) return parseScenario(m[1]);
  return { name: 'echo', params: {} };
}

const num = (params, key, dflt) => (params[key] !== undefined && Number.isFinite(Number(params[key])) ? Number(params[key]) : dflt);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function lastUserText(body, kind) {
  if (kind === 'chat') {
    const msgs = Array.isArray(body.messages) ? body.messages : [];
    for (let i = msgs.length - 1; i >= 0; i--) {
      if (msgs[i] && msgs[i].role === 'user') {
        const c = msgs[i].content;
        if (typeof c === 'string') return c;
        if (Array.isArray(c)) return c.map((p) => (p && typeof p.text === 'string' ? p.text : '')).join('');
      }
    }
    return '';
  }
  const p = body.prompt;
  return typeof p === 'string' ? p : Array.isArray(p) ? String(p[0] ?? '') : '';
}

/** The words of the reply for a scenario (each one is a streamed delta). */
function replyWords(scn, body, kind) {
  if (scn.name === 'slow') {
    const n = num(scn.params, 'tokens', 20);
    return Array.from({ length: n }, (_, i) => (i ? ' ' : '') + `tok${i + 1}`);
  }
  if (scn.name === 'huge') return ['x'.repeat(num(scn.params, 'size', 1048576))];
  const text = `echo: ${lastUserText(body, kind)}`;
  return text.split(/(?=\s)/);
}

let seq = 0;

function chunkObj(kind, id, created, model, content, finish, first) {
  if (kind === 'chat') {
    const delta = first ? { role: 'assistant', content } : content === null ? {} : { content };
    return { id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish }] };
  }
  return { id, object: 'text_completion', created, model, choices: [{ index: 0, text: content ?? '', finish_reason: finish, logprobs: null }] };
}

function fullObj(kind, id, created, model, text, usage) {
  if (kind === 'chat') {
    return {
      id, object: 'chat.completion', created, model,
      choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
      usage,
    };
  }
  return { id, object: 'text_completion', created, model, choices: [{ index: 0, text, finish_reason: 'stop', logprobs: null }], usage };
}

/** Serialise one SSE event the way the scenario wants. */
function sseEvent(scn, obj, n) {
  const json = typeof obj === 'string' ? obj : JSON.stringify(obj);
  const eol = scn.name === 'crlf' ? '\r\n' : '\n';
  let out = '';
  if (scn.name === 'comments') out += `: comment before event ${n}${eol}event: message${eol}id: ${n}${eol}` + (n === 0 ? `retry: 1000${eol}` : '');
  if (scn.name === 'multiline' && typeof obj !== 'string') {
    out += JSON.stringify(obj, null, 2).split('\n').map((l) => `data: ${l}${eol}`).join('');
  } else {
    out += `data: ${json}${eol}`;
  }
  out += eol;
  if (scn.name === 'comments') out += `:keep-alive${eol}${eol}`;
  return out;
}

async function writeRaw(res, scn, text) {
  if (scn.name !== 'split') {
    res.write(text);
    return;
  }
  const size = Math.max(1, num(scn.params, 'chunk', 1));
  const delay = num(scn.params, 'delay', 0);
  const buf = Buffer.from(text);
  for (let i = 0; i < buf.length; i += size) {
    res.write(buf.subarray(i, i + size));
    if (delay) await sleep(delay);
  }
}

async function stream(req, res, scn, body, kind) {
  const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-fake-${++seq}`;
  const created = Math.floor(Date.now() / 1000);
  const model = typeof body.model === 'string' ? body.model : MODEL;
  const words = replyWords(scn, body, kind);
  const delay = scn.name === 'slow' ? num(scn.params, 'delay', 100) : scn.name === 'echo' ? num(scn.params, 'delay', 0) : 0;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  if (res.flushHeaders) res.flushHeaders();

  if (scn.name === 'garbage') {
    res.write('data: this is not json\n\ndata: {"unterminated": \n\ndata: [DONE]\n\n');
    res.end();
    return;
  }
  const events = [];
  events.push(chunkObj(kind, id, created, model, kind === 'chat' ? '' : words.shift() ?? '', null, true));
  for (const w of words) events.push(chunkObj(kind, id, created, model, w, null, false));
  events.push(chunkObj(kind, id, created, model, null, 'stop', false));
  if (body.stream_options && body.stream_options.include_usage) {
    const n = words.length + 1;
    events.push({ id, object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion', created, model, choices: [], usage: { prompt_tokens: 1, completion_tokens: n, total_tokens: n + 1 } });
  }

  const limit = scn.name === 'cut' ? num(scn.params, 'events', 3) : scn.name === 'stall' ? num(scn.params, 'events', 2) : Infinity;
  for (let n = 0; n < events.length; n++) {
    if (res.destroyed || !res.socket || res.socket.destroyed) return;
    const ev = sseEvent(scn, events[n], n);
    if (n >= limit) {
      if (scn.name === 'cut') {
        res.write(ev.slice(0, Math.max(1, Math.floor(ev.length / 2))));
        await sleep(20);
        res.socket?.destroy();
      }
      return; // stall: keep the connection open, send nothing more
    }
    await writeRaw(res, scn, ev);
    if (delay) await sleep(delay);
  }
  if (scn.name !== 'nodone') await writeRaw(res, scn, scn.name === 'crlf' ? 'data: [DONE]\r\n\r\n' : 'data: [DONE]\n\n');
  res.end();
}

async function complete(req, res, scn, body, kind) {
  const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-fake-${++seq}`;
  const created = Math.floor(Date.now() / 1000);
  const model = typeof body.model === 'string' ? body.model : MODEL;
  const words = replyWords(scn, body, kind);
  if (scn.name === 'slow') await sleep(num(scn.params, 'delay', 100) * words.length);
  if (scn.name === 'garbage') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"id": "not json because it stops here');
    return;
  }
  const usage = { prompt_tokens: 1, completion_tokens: words.length, total_tokens: words.length + 1 };
  const payload = Buffer.from(JSON.stringify(fullObj(kind, id, created, model, words.join(''), usage)));
  if (scn.name === 'cut') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': payload.length });
    res.write(payload.subarray(0, Math.floor(payload.length / 2)));
    await sleep(20);
    res.socket?.destroy();
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': payload.length });
  res.end(payload);
}

function embeddings(res, body) {
  const inputs = Array.isArray(body.input) ? body.input : [body.input ?? ''];
  const data = inputs.map((inp, index) => {
    const h = crypto.createHash('sha256').update(typeof inp === 'string' ? inp : JSON.stringify(inp)).digest();
    const vec = Array.from({ length: 8 }, (_, i) => (h[i] - 128) / 128);
    // The openai client asks for base64 (little-endian float32) by default.
    const embedding = body.encoding_format === 'base64' ? Buffer.from(new Float32Array(vec).buffer).toString('base64') : vec;
    return { object: 'embedding', index, embedding };
  });
  sendJson(res, 200, { object: 'list', data, model: typeof body.model === 'string' ? body.model : MODEL, usage: { prompt_tokens: inputs.length, total_tokens: inputs.length } });
}

function sendJson(res, status, obj) {
  const b = Buffer.from(JSON.stringify(obj));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': b.length });
  res.end(b);
}

function errorBody(status, message, type = 'fake_error') {
  return { error: { message, type, code: status, param: null } };
}

export function createFakeBackend({ log } = {}) {
  const seen = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks)).catch((err) => {
        if (!res.headersSent) sendJson(res, 500, errorBody(500, `fake-backend bug: ${err.message}`));
        else res.destroy();
      });
    });
  });
  server.keepAliveTimeout = 30000;
  server.requestTimeout = 0; // "hang" and "stall" must be able to outlive any client timeout
  server.headersTimeout = 60000;

  async function handle(req, res, raw) {
    const text = raw.toString('utf8');
    const entry = { time: new Date().toISOString(), method: req.method, path: req.url, headers: req.headers, body: text };
    seen.push(entry);
    if (log) fs.appendFileSync(log, JSON.stringify(entry) + '\n');
    const url = new URL(req.url, 'http://fake');

    if (req.method === 'GET' && url.pathname === '/health') return sendJson(res, 200, { status: 'ok' });
    if (req.method === 'GET' && url.pathname === '/_fake/requests') return sendJson(res, 200, seen);
    if (req.method === 'GET' && url.pathname === '/v1/models') {
      return sendJson(res, 200, { object: 'list', data: [{ id: MODEL, object: 'model', created: 0, owned_by: 'confide-tests' }] });
    }
    const kind = url.pathname === '/v1/chat/completions' ? 'chat' : url.pathname === '/v1/completions' ? 'completion' : url.pathname === '/v1/embeddings' ? 'embeddings' : null;
    if (req.method !== 'POST' || !kind) return sendJson(res, 404, errorBody(404, `no route for ${req.method} ${url.pathname}`, 'not_found_error'));

    const scn = pickScenario(req, text);
    if (scn.name === 'hang') return; // never answer
    if (scn.name === 'close') return req.socket.destroy();
    if (scn.name === 'error') {
      const status = num(scn.params, 'status', 500);
      const msg = (scn.params.message || 'injected failure').replace(/_/g, ' ');
      return sendJson(res, status, errorBody(status, msg));
    }
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      return sendJson(res, 400, errorBody(400, 'request body is not JSON', 'invalid_request_error'));
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) return sendJson(res, 400, errorBody(400, 'request body is not a JSON object', 'invalid_request_error'));
    if (kind === 'embeddings') return embeddings(res, body);
    if (body.stream === true) return stream(req, res, scn, body, kind);
    return complete(req, res, scn, body, kind);
  }

  return { server, requests: () => seen };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.help || (!opts.socket && opts.port === undefined)) {
    const src = fs.readFileSync(new URL(import.meta.url), 'utf8').split('\n');
    process.stdout.write(src.slice(1, src.findIndex((l, i) => i > 0 && !l.startsWith('//'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n');
    process.exit(opts.help ? 0 : 2);
  }
  const { server } = createFakeBackend({ log: opts.log });
  if (opts.socket) {
    try {
      if (fs.statSync(opts.socket).isSocket()) fs.unlinkSync(opts.socket);
    } catch {
      /* not there */
    }
  }
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    if (opts.socket) server.listen(opts.socket, resolve);
    else server.listen(opts.port, '127.0.0.1', resolve);
  });
  const where = opts.socket ? `unix:${opts.socket}` : `127.0.0.1:${server.address().port}`;
  process.stdout.write(`fake-backend listening on ${where}\n`);
  const stop = () => {
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fs.realpathSync(new URL(import.meta.url).pathname)) {
  main().catch((err) => {
    process.stderr.write(`fake-backend: ${err.message}\n`);
    process.exit(1);
  });
}
