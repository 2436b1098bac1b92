// The whole confidential path with the real pieces: the official openai
// client -> confide-proxy -> nginx (the untrusted gateway) -> a wire tap ->
// confide-worker -> llama-server on a UNIX socket, with confide-as (sim
// platform) attesting both ends. Replies must equal what llama-server answers
// directly (temperature 0, fixed seed), and neither the prompt nor the reply
// may appear on the wire between gateway and worker, in the gateway's logs or
// in any daemon log.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import OpenAI from 'openai';

import {
  cleanup,
  filesContaining,
  httpRequest,
  repoRoot,
  startGateway,
  startLlama,
  startProcess,
  startTap,
  tempDir,
  waitFor,
  waitForHttp,
  LLAMA_MODEL_ID,
} from './lib/index.mjs';

const build = process.env.CONFIDE_BUILD || path.join(repoRoot, 'build/default');
const bin = (name) => path.join(build, 'bin', name);
const PROMPT = 'Tell me about the zebra-canary-4417 please';

let llama, as, worker, tap, gateway, proxy, client;

/** Wait for "event=<event> ... port=N" in a daemon's log. */
function startedPort(proc, event) {
  return waitFor(
    `${proc.name} ${event}`,
    () => {
      const m = new RegExp(`event=${event} .*?port=(\\d+)`).exec(proc.log());
      return m ? Number(m[1]) : 0;
    },
    { proc, timeoutMs: 20000 },
  );
}

before(async () => {
  const dir = tempDir('worker-e2e');
  const sim = path.join(dir, 'sim');
  const manifest = path.join(dir, 'manifest.json');
  execFileSync(bin('confide'), ['sim', 'init', sim], { stdio: 'ignore' });
  execFileSync(bin('confide'), [
    'manifest', 'new', '--sim-dir', sim, '--as-binary', bin('confide-as'), '--worker-binary', bin('confide-worker'),
    '--models', LLAMA_MODEL_ID, '--out', manifest,
  ], { stdio: 'ignore' });

  llama = await startLlama();
  as = startProcess('confide-as', bin('confide-as'), [
    '--platform', 'sim', '--sim-dir', sim, '--manifest', manifest, '--port', '0',
  ], { dir });
  const asPort = await startedPort(as, 'as_started');
  const asUrl = `http://127.0.0.1:${asPort}`;

  worker = startProcess('confide-worker', bin('confide-worker'), [
    '--platform', 'sim', '--sim-dir', sim, '--manifest', manifest, '--as-url', asUrl, '--as-allow-http',
    '--backend-socket', llama.socketPath, '--port', '0',
  ], { dir });
  const workerPort = await startedPort(worker, 'worker_started');
  await waitForHttp(`http://127.0.0.1:${workerPort}/healthz`, { proc: worker, timeoutMs: 20000 });

  // The provider's side: a wire tap in front of the worker, nginx in front
  // of the tap. Everything the provider could see passes through both.
  tap = await startTap({ upstream: workerPort });
  gateway = await startGateway({ upstream: tap.socketPath });

  proxy = startProcess('confide-proxy', bin('confide-proxy'), [
    '--port', '0', '--as', asUrl, '--manifest', manifest, '--upstream', gateway.url, '--allow-plain-http',
    '--api-key', 'sk-provider-key',
  ], { dir });
  const proxyPort = await startedPort(proxy, 'proxy_started');
  client = new OpenAI({ baseURL: `http://127.0.0.1:${proxyPort}/v1`, apiKey: 'sk-app', maxRetries: 0 });
});

after(cleanup);

const request = { model: LLAMA_MODEL_ID, max_tokens: 12, temperature: 0, seed: 42 };

/** The same request sent directly to llama-server (plaintext reference). */
async function direct(body) {
  const res = await httpRequest({ socketPath: llama.socketPath, method: 'POST', path: '/v1/chat/completions', body });
  assert.equal(res.status, 200);
  return res.text();
}

describe('confide-worker end to end (openai client, proxy, nginx, worker, llama-server)', () => {
  test('a chat completion decrypts to exactly what llama-server answers', async () => {
    const messages = [{ role: 'user', content: PROMPT }];
    const want = JSON.parse(await direct({ ...request, messages })).choices[0].message.content;
    const res = await client.chat.completions.create({ ...request, messages });
    assert.equal(res.choices[0].message.content, want);
    assert.ok(want.length > 0);
  });

  test('a streamed chat completion arrives event by event and complete', async () => {
    const messages = [{ role: 'user', content: `${PROMPT} (stream)` }];
    const raw = await direct({ ...request, messages, stream: true });
    let want = '';
    for (const line of raw.split('\n')) {
      if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
      want += JSON.parse(line.slice(6)).choices[0]?.delta?.content ?? '';
    }
    const stream = await client.chat.completions.create({ ...request, messages, stream: true });
    let got = '';
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      got += chunk.choices[0]?.delta?.content ?? '';
    }
    assert.equal(got, want);
    assert.ok(chunks >= 2);
  });

  test('models are listed through the whole path', async () => {
    const list = await client.models.list();
    assert.ok(list.data.some((m) => m.id === LLAMA_MODEL_ID));
  });

  test('the provider never sees the prompt or the reply', async () => {
    const messages = [{ role: 'user', content: PROMPT }];
    const reply = JSON.parse(await direct({ ...request, messages })).choices[0].message.content;
    assert.ok(tap.connections() >= 1, 'the tap saw no traffic');
    const needles = ['zebra-canary-4417', reply.slice(0, 24)];
    const hits = filesContaining(needles, [...tap.files, gateway.accessLog, gateway.errorLog, worker, as, proxy]);
    assert.deepEqual(hits, []);
    // The wire did carry the exchanges (encrypted): confide values and the
    // plain routing fields.
    const wire = fs.readFileSync(tap.files[0], 'utf8');
    assert.ok(wire.includes('cf1n:') || wire.includes('cf1f:'), 'no encrypted values on the wire');
    assert.ok(wire.includes(`"model":"${LLAMA_MODEL_ID}"`), 'the routing field model is not plain');
  });
});
