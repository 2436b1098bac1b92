#!/usr/bin/env node
// The confide demo (`make demo`, started by scripts/demo.sh): a whole
// confidential deployment on this machine — simulated TEE, confide-as,
// confide-worker, llama-server on a UNIX socket, real nginx as the untrusted
// provider gateway, confide-proxy — then one streamed chat request through
// it with the official openai client, and what the app received next to
// what the provider saw (request bodies from nginx's access log, response
// bytes from a wire tap between nginx and the worker).
//
// Env: MODEL=/path/x.gguf (default: the random-weight test model),
//      KEEP=1 (keep running until Ctrl-C), PORT (the proxy's port, default
//      8080, or any free port when 8080 is taken), NO_COLOR.
// It lives under tests/e2e because it uses the e2e helpers and the `openai`
// package installed there.

import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import OpenAI from 'openai';

import {
  cleanup,
  confideBin,
  filesContaining,
  llamaPaths,
  makeManifest,
  simInit,
  startAs,
  startGateway,
  startLlama,
  startProxy,
  startTap,
  startWorker,
  LLAMA_MODEL_ID,
} from '../lib/confide.mjs';

const keep = process.env.KEEP === '1' || process.env.KEEP === 'yes' || process.env.KEEP === 'true';
const color = process.stdout.isTTY && !process.env.NO_COLOR && process.env.TERM !== 'dumb';
const width = Math.max(60, Math.min(110, process.stdout.columns || 100));
const sgr = (code) => (s) => (color ? `\x1b[${code}m${s}\x1b[0m` : String(s));
const bold = sgr('1');
const dim = sgr('2');
const green = sgr('32');
const red = sgr('31');
const cyan = sgr('36');
const yellow = sgr('33');

const out = (s = '') => process.stdout.write(`${s}\n`);
const section = (title) => {
  out();
  out(bold(`── ${title} ${'─'.repeat(Math.max(3, width - title.length - 4))}`));
};
let stepNo = 0;
const STEPS = 7;
const step = (what, detail) => {
  stepNo++;
  out(`  ${dim(`${stepNo}/${STEPS}`)}  ${what.padEnd(34)} ${detail}`);
};
const short = (hex) => `${hex.slice(0, 12)}…`;

/** Shorten every encrypted value "cf1:<key_id>:<salt>:<ct>" to its head. */
function elideCiphertext(text) {
  return text.replace(/"(cf1[nf]):([A-Za-z0-9_-]+):([A-Za-z0-9_-]+):([A-Za-z0-9_-]+)"/g, (_, v, kid, salt, ct) => `"${v}:${kid.slice(0, 6)}…:${salt.slice(0, 6)}…:${ct.slice(0, 10)}…(${ct.length} chars)"`);
}

/** Wrap a long line at `w` columns with an indent. */
function wrap(text, indent = '    ', w = width) {
  const room = Math.max(30, w - indent.length);
  const lines = [];
  for (const line of String(text).split('\n')) {
    if (line.length === 0) {
      lines.push(indent);
      continue;
    }
    for (let i = 0; i < line.length; i += room) lines.push(indent + line.slice(i, i + room));
  }
  return lines.join('\n');
}

/**
 * A JSON object one top-level member per line ("name  value"), long values
 * cut; ciphertext shortened. Anything that is not a JSON object is wrapped.
 */
function members(text, indent = '    ') {
  let obj;
  try {
    obj = JSON.parse(text);
  } catch {
    return wrap(elideCiphertext(text), indent);
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) return wrap(elideCiphertext(text), indent);
  const names = Object.keys(obj);
  const pad = Math.min(20, Math.max(...names.map((n) => n.length)) + 2);
  const room = Math.max(20, width - indent.length - pad);
  return names
    .map((n) => {
      let v = elideCiphertext(JSON.stringify(obj[n]));
      if (v.length > room) v = `${v.slice(0, room - 1)}…`;
      const enc = /^"cf1[nf]:/.test(v);
      return `${indent}${n.padEnd(pad)}${enc ? yellow(v) : v}`;
    })
    .join('\n');
}

function portFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

async function main() {
  const t0 = Date.now();
  const model = process.env.MODEL ? path.resolve(process.env.MODEL) : null;
  if (model && !fs.existsSync(model)) throw new Error(`MODEL=${process.env.MODEL}: no such file`);
  if (model) process.env.CONFIDE_LLAMA_MODEL = model;
  const alias = model ? path.basename(model).replace(/\.gguf$/i, '').replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 64) || 'local-model' : LLAMA_MODEL_ID;

  out(bold('confide demo') + ' — a whole confidential deployment on this machine, one request through it');
  out(dim('  TEE: simulated (development keys); gateway: real nginx; inference: llama.cpp llama-server'));
  out();

  // 1. The simulated TEE platform and the manifest the user pins.
  const sim = simInit();
  step('simulated TEE platform', `root ${short(sim.rootFingerprint)}  ${dim('(confide sim init)')}`);
  const manifest = makeManifest({ simDir: sim.dir, models: [alias], name: 'confide demo' });
  step('manifest (what the user pins)', `sha256 ${short(manifest.sha256)}  ${dim('pins confide-as and confide-worker by SHA-384')}`);

  // 2. The inference server, on a UNIX socket only (inside the TEE).
  const { model: modelPath } = llamaPaths();
  const threads = Math.max(1, Math.min(4, os.availableParallelism() - 1));
  // A real model may take a while to load: up to 5 minutes.
  const llama = await startLlama({ alias, threads, ctx: 4096, parallel: 2, timeoutMs: 300000 });
  step('llama-server', `${alias} on unix:${llama.socketPath}`);
  if (!model) out(`  ${' '.repeat(4)} ${' '.repeat(34)} ${dim('random-weight test model: its replies are gibberish by design (MODEL=x.gguf for a real one)')}`);
  else out(`  ${' '.repeat(4)} ${' '.repeat(34)} ${dim(modelPath)}`);

  // 3. The attestation service and the worker, both "in the TEE".
  const as = await startAs({ simDir: sim.dir, manifest });
  step('confide-as (TEE)', `${as.url}  ${dim('attested itself against the manifest')}`);
  const worker = await startWorker({ simDir: sim.dir, manifest, asUrl: as.url, backendSocket: llama.socketPath, timeoutMs: 60000 });
  step('confide-worker (TEE)', `${worker.url}  ${dim('attested to the AS, key stream open')}`);

  // 4. The provider: nginx in front of the worker, and a wire tap on the hop.
  const tap = await startTap({ upstream: worker.port });
  const gateway = await startGateway({ upstream: tap.socketPath });
  step('nginx gateway (provider)', `${gateway.url}  ${dim('logs every request body; a tap records the replies')}`);

  // 5. The user's proxy.
  let port = Number(process.env.PORT || 8080);
  if (!(await portFree(port))) port = 0;
  const proxy = await startProxy({ asUrl: as.url, manifest, upstream: gateway.url, port, timeoutMs: 60000 });
  step('confide-proxy (your machine)', `${cyan(proxy.baseURL)}  ${dim('verified the AS, uploaded a key')}`);
  out(dim(`  ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`));

  // 6. The app: the official openai client, only the base URL changed.
  const nonce = Math.random().toString(36).slice(2, 8);
  const prompt = `Tell me a secret about the tide, the lighthouse and the number ${nonce}.`;
  section('the app: official openai client, streamed, baseURL = the proxy');
  out(`  ${dim('const client = new OpenAI({ baseURL: ')}${cyan(`'${proxy.baseURL}'`)}${dim(' });')}`);
  out(`  ${bold('prompt')}  ${prompt}`);
  const client = new OpenAI({ baseURL: proxy.baseURL, apiKey: 'sk-demo-not-a-secret', maxRetries: 0, timeout: 120000 });
  const tReq = Date.now();
  const stream = await client.chat.completions.create({
    model: alias,
    messages: [{ role: 'user', content: prompt }],
    max_tokens: 40,
    temperature: 0.7,
    stream: true,
    stream_options: { include_usage: true },
    // The test model ends at its first '.', often after a few words: let it
    // babble on (a llama.cpp sampling option; encrypted like the prompt).
    ...(model ? {} : { ignore_eos: true, max_tokens: 32 }),
  });
  process.stdout.write(`  ${bold('reply')}   `);
  let reply = '';
  let chunks = 0;
  let usage = null;
  let ttft = null;
  let finish = null;
  let sample = null; // one content chunk as the app got it, and its index
  let col = 10;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.finish_reason) finish = c.finish_reason;
      let piece = c.delta && c.delta.content;
      if (!piece) continue;
      if (ttft === null) ttft = Date.now() - tReq;
      reply += c.delta.content;
      if (!sample && /\w{3}/.test(piece)) sample = { index: chunks - 1, json: JSON.stringify(chunk) };
      // Word-wrap the stream as it arrives.
      for (const part of piece.split(/(\s+)/)) {
        if (!part) continue;
        if (/^\s+$/.test(part)) {
          if (col === 10) continue; // no blank at a line start
        } else if (col > 10 && col + part.length > width - 2) {
          process.stdout.write(`\n          `);
          col = 10;
        }
        process.stdout.write(part.replace(/\s+/g, ' '));
        col += part.length;
      }
    }
  }
  out();
  const took = Date.now() - tReq;
  out(dim(`          ${chunks} chunks, finish_reason ${finish}, ${usage ? `${usage.completion_tokens} tokens, ` : ''}first token after ${ttft} ms, done in ${took} ms`));

  // 7. What the provider saw.
  section('what the provider saw');
  // nginx writes its access-log line when the request is done: wait for it.
  for (let i = 0; i < 100 && !gateway.requests().some((r) => r.uri.startsWith('/v1/chat/completions')); i++) await new Promise((r) => setTimeout(r, 20));
  const entry = [...gateway.requests()].reverse().find((r) => r.uri.startsWith('/v1/chat/completions'));
  // (the temp dirs go away at the end unless KEEP=1: name the file only then)
  out(`  ${bold('request body')} ${dim(keep ? `(nginx access log: ${gateway.accessLog})` : "(nginx's access log, as a curious provider keeps it)")}`);
  if (entry) {
    out(dim(`    ${entry.method} ${entry.uri} → ${entry.status}, ${entry.request_length} bytes in, ${entry.bytes_sent} bytes out`));
    out(members(entry.request_body));
  } else out(red('    (no access-log entry found)'));
  out();
  out(`  ${bold('response bytes')} ${dim('(wire tap between nginx and the worker; first events)')}`);
  // (chunked transfer encoding: the chunk-size lines are lines of their own)
  const events = tap
    .downstreamBytes()
    .toString('utf8')
    .split(/\r?\n/)
    .filter((l) => l.startsWith('data: '));
  const showEvent = (l, i) => {
    out(dim(`    event ${i + 1}: data:`));
    out(members(l.slice(6), '      '));
  };
  events.slice(0, 2).forEach(showEvent);
  if (events.length > 4) out(dim(`    … ${events.length - 4} more events …`));
  events.slice(Math.max(2, events.length - 2)).forEach((l, j) => showEvent(l, Math.max(2, events.length - 2) + j));
  if (sample && events[sample.index]) {
    out();
    out(`  ${bold('one chunk, both sides')}`);
    out(`    ${green('what the app received')} ${dim(`(chunk ${sample.index + 1}, from the proxy)`)}`);
    out(members(sample.json, '      '));
    out(`    ${yellow('what the provider saw')} ${dim(`(event ${sample.index + 1}, between nginx and the worker)`)}`);
    out(members(events[sample.index].slice(6), '      '));
  }

  // The proof: the prompt and the reply appear nowhere the provider can look.
  const wireFiles = [gateway.accessLog, gateway.errorLog, ...tap.files];
  const needles = [prompt, `number ${nonce}`];
  const replyNeedle = reply.trim().length >= 8 ? reply.trim() : null;
  const promptHits = filesContaining(needles, wireFiles);
  const replyHits = replyNeedle ? filesContaining([replyNeedle], wireFiles) : [];
  const logHits = filesContaining([prompt, ...(replyNeedle ? [replyNeedle] : [])], [as.proc, worker.proc, proxy.proc]);
  out();
  const verdict = (ok, yes, no) => out(`  ${ok ? green('✓') : red('✗')} ${ok ? yes : no}`);
  verdict(promptHits.length === 0, 'the prompt appears nowhere in the gateway log or on the wire', `the prompt leaked: ${promptHits.map((h) => h.file).join(', ')}`);
  if (replyNeedle) verdict(replyHits.length === 0, 'the reply appears nowhere in the gateway log or on the wire', `the reply leaked: ${replyHits.map((h) => h.file).join(', ')}`);
  verdict(logHits.length === 0, 'no daemon log contains the prompt or the reply', `found in logs: ${logHits.map((h) => h.file).join(', ')}`);
  out(dim('    the gateway can read model, stream, max_tokens and usage — authenticated, so it cannot change them'));
  const failed = promptHits.length + replyHits.length + logHits.length > 0 || !reply;

  section('use it from your own app');
  out(`  Point any OpenAI-compatible client at the proxy — only the base URL changes:`);
  out();
  out(`    ${cyan(`export OPENAI_BASE_URL=${proxy.baseURL}`)}`);
  out(`    ${cyan('export OPENAI_API_KEY=anything')}      ${dim('# passed to the provider, not needed here')}`);
  out();
  out(`    ${cyan(`curl -sN ${proxy.baseURL}/chat/completions -H 'content-type: application/json' \\`)}`);
  out(`    ${cyan(`  -d '{"model":"${alias}","stream":true,"messages":[{"role":"user","content":"hello"}]}'`)}`);
  out();
  if (!keep) {
    out(dim(`  This deployment stops now. Keep it running with:  make demo KEEP=1   (Ctrl-C stops it)`));
    return failed ? 1 : 0;
  }
  out(`  ${yellow('Running until Ctrl-C.')} Logs:`);
  for (const [name, file] of [
    ['confide-proxy', proxy.proc.logPath],
    ['nginx access log', gateway.accessLog],
    ['confide-worker', worker.proc.logPath],
    ['confide-as', as.proc.logPath],
    ['llama-server', llama.proc.logPath],
  ])
    out(`    ${name.padEnd(18)} ${file}`);
  out(dim('    (tail -f the access log while your app talks to the proxy: ciphertext only)'));
  // Stay up until a signal, then stop everything gracefully (cleanup() in
  // the finally below); proc.mjs's immediate-kill handlers are replaced, its
  // exit hook stays as the backstop.
  process.removeAllListeners('SIGINT');
  process.removeAllListeners('SIGTERM');
  let stopping = false;
  await new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
    for (const p of [proxy.proc, worker.proc, as.proc, llama.proc, gateway.proc])
      p.exited.then(({ code, signal }) => {
        if (stopping) return;
        out(red(`  ${p.name} exited (code ${code}, signal ${signal}); stopping. Log: ${p.logPath}`));
        resolve();
      });
  });
  stopping = true;
  out();
  out('  stopping…');
  return 0;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  out();
  out(red(`demo failed: ${err.message}`));
  if (err.status) out(red(`  (HTTP ${err.status}${err.code ? `, code ${err.code}` : ''})`));
} finally {
  await cleanup();
}
process.exit(code);
