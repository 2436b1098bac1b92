// The gateway helpers themselves: prefix routing to several UNIX-socket
// upstreams, TLS with a throw-away certificate, the wire tap that records
// both directions, and the leak finder the confide tests use on logs.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import { after, before, describe, test } from 'node:test';

import OpenAI from 'openai';

import {
  cleanup,
  filesContaining,
  httpRequest,
  selfSignedCert,
  startFakeBackend,
  startGateway,
  startLlama,
  startTap,
  LLAMA_MODEL_ID,
} from './lib/index.mjs';

let llama;
let fake;
let tap;
let gateway;

before(async () => {
  [llama, fake] = await Promise.all([startLlama(), startFakeBackend()]);
  tap = await startTap({ upstream: llama.socketPath });
  gateway = await startGateway({ routes: { '/v1/': tap.socketPath, '/_fake/': fake.socketPath } });
});

after(cleanup);

describe('gateway helpers', () => {
  test('routes by path prefix and the tap records both directions', async () => {
    const client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'sk-tap', maxRetries: 0 });
    const res = await client.chat.completions.create({
      model: LLAMA_MODEL_ID,
      messages: [{ role: 'user', content: 'tap-canary-prompt' }],
      max_tokens: 6,
    });
    const reply = res.choices[0].message.content;
    assert.ok(tap.connections() >= 1);
    assert.ok(tap.upstreamBytes().includes('tap-canary-prompt'), 'request not captured');
    assert.ok(tap.downstreamBytes().includes(JSON.stringify(reply).slice(1, -1)), 'reply not captured');
    // A different prefix goes to the other upstream.
    const seen = await httpRequest({ port: gateway.port, path: '/_fake/requests' });
    assert.equal(seen.status, 200);
    assert.ok(Array.isArray(seen.json()));
    const hits = filesContaining(['tap-canary-prompt', 'never-sent-string'], [gateway.accessLog, ...tap.files]);
    assert.deepEqual([...new Set(hits.map((h) => h.needle))], ['tap-canary-prompt']);
    assert.ok(hits.some((h) => h.file === gateway.accessLog));
  });

  test('TLS gateway with a self-signed certificate', async () => {
    const tls = selfSignedCert();
    const gw = await startGateway({ upstream: fake.socketPath, tls });
    assert.match(gw.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const body = JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: 'over tls' }] });
    const text = await new Promise((resolve, reject) => {
      const req = https.request(
        { host: '127.0.0.1', port: gw.port, method: 'POST', path: '/v1/chat/completions', ca: fs.readFileSync(tls.cert), servername: 'localhost', headers: { 'content-type': 'application/json' } },
        (res) => {
          let t = '';
          res.on('data', (d) => (t += d));
          res.on('end', () => resolve(t));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    assert.equal(JSON.parse(text).choices[0].message.content, 'echo: over tls');
    const logged = await gw.waitForRequest((r) => r.uri === '/v1/chat/completions');
    assert.equal(logged.request_body, body);
    await gw.stop();
  });
});
