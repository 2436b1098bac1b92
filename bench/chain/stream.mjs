#!/usr/bin/env node
// stream.mjs — streamed-reply figures for the chain benchmark
// (scripts/bench-chain.sh): time to first token and tokens per second.
//
//   node bench/chain/stream.mjs --url URL [--url URL2 ...] --body FILE
//        [--requests N] [--warmup N] [--timeout-ms MS]
//
// Sends N streamed requests to each URL, one request at a time, over one
// keep-alive connection per URL (after `--warmup` unmeasured ones each). The
// URLs take turns request by request, in alternating order (1 2 3 3 2 1 …),
// so that a change in the machine's load hits every chain alike. Parses each
// event stream and prints one JSON line per URL, in the order given:
//   {"url":…,"requests":N,"errors":E,"ttft_ms_p50":…,"ttft_ms_p99":…,
//    "tokens_per_s_p50":…,"tokens":T,"total_ms_p50":…}
// time to first token = from sending the request to the first event whose
// delta carries content; tokens per second = content events after the first
// divided by the time from the first to the last one (the decode rate the
// app sees). A reply that is not a 200 event stream ending in [DONE] counts
// as an error (and is not measured). Node 20, no dependencies.

import fs from 'node:fs';
import http from 'node:http';

function args(argv) {
  const o = { urls: [], requests: 50, warmup: 5, timeoutMs: 30000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--url') o.urls.push(v());
    else if (a === '--body') o.body = fs.readFileSync(v());
    else if (a === '--requests') o.requests = Number(v());
    else if (a === '--warmup') o.warmup = Number(v());
    else if (a === '--timeout-ms') o.timeoutMs = Number(v());
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.urls.length || !o.body) throw new Error('--url and --body are required');
  return o;
}

const agents = new Map();

function one(url, body, timeoutMs) {
  if (!agents.has(url)) agents.set(url, new http.Agent({ keepAlive: true, maxSockets: 1 }));
  const agent = agents.get(url);
  return new Promise((resolve) => {
    const u = new URL(url);
    const t0 = process.hrtime.bigint();
    const ms = () => Number(process.hrtime.bigint() - t0) / 1e6;
    let first = null;
    let last = null;
    let tokens = 0;
    let buf = '';
    let done = false;
    let failed = null;
    const req = http.request(
      { host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': body.length, accept: 'text/event-stream' } },
      (res) => {
        if (res.statusCode !== 200) failed = `HTTP ${res.statusCode}`;
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          buf += chunk;
          // Events end with a blank line (the chain emits LF line ends).
          let i;
          while ((i = buf.search(/\r?\n\r?\n/)) >= 0) {
            const ev = buf.slice(0, i);
            buf = buf.slice(i).replace(/^\r?\n\r?\n/, '');
            const data = ev.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
            if (!data) continue;
            if (data === '[DONE]') {
              done = true;
              continue;
            }
            let obj;
            try {
              obj = JSON.parse(data);
            } catch {
              failed ||= 'non-JSON event';
              continue;
            }
            if (obj.error) failed ||= `error event: ${obj.error.code || obj.error.message}`;
            const c = obj.choices && obj.choices[0];
            const text = c && ((c.delta && c.delta.content) || c.text);
            if (text) {
              const t = ms();
              if (first === null) first = t;
              last = t;
              tokens++;
            }
          }
        });
        res.on('end', () => {
          if (!done) failed ||= 'stream ended without [DONE]';
          resolve({ failed, ttft: first, tokens, decodeMs: last - first, total: ms() });
        });
        res.on('error', (e) => resolve({ failed: e.message }));
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error('timeout')));
    // A server may close an idle keep-alive connection just as it is reused
    // (llama-server does): that request never reached it; send it again on a
    // new connection (Node's documented pattern, http.ClientRequest.reusedSocket).
    req.on('error', (e) => (req.reusedSocket && first === null && ['ECONNRESET', 'EPIPE'].includes(e.code) ? one(url, body, timeoutMs).then(resolve) : resolve({ failed: e.message })));
    req.end(body);
  });
}

function pct(values, p) {
  if (!values.length) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

const o = args(process.argv.slice(2));
for (let i = 0; i < o.warmup; i++) for (const u of o.urls) await one(u, o.body, o.timeoutMs);
const results = new Map(o.urls.map((u) => [u, { ok: [], errors: 0, firstError: null }]));
for (let i = 0; i < o.requests; i++) {
  for (const u of i % 2 ? [...o.urls].reverse() : o.urls) {
    const r = await one(u, o.body, o.timeoutMs);
    const res = results.get(u);
    if (r.failed || r.ttft === null) {
      res.errors++;
      res.firstError ||= r.failed || 'no content event';
    } else res.ok.push(r);
  }
}
for (const a of agents.values()) a.destroy();
const round = (x, d = 2) => (x === null ? null : Number(x.toFixed(d)));
let failed = false;
for (const [url, { ok, errors, firstError }] of results) {
  const rates = ok.filter((r) => r.tokens > 1 && r.decodeMs > 0).map((r) => ((r.tokens - 1) * 1000) / r.decodeMs);
  failed ||= errors > 0;
  console.log(
    JSON.stringify({
      url,
      requests: o.requests,
      errors,
      first_error: firstError,
      ttft_ms_p50: round(pct(ok.map((r) => r.ttft), 50), 3),
      ttft_ms_p99: round(pct(ok.map((r) => r.ttft), 99), 3),
      tokens_per_s_p50: round(pct(rates, 50), 0),
      tokens: ok.length ? ok[0].tokens : 0,
      total_ms_p50: round(pct(ok.map((r) => r.total), 50), 3),
    }),
  );
}
process.exit(failed ? 1 : 0);
