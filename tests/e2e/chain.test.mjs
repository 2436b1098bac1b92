// The whole confidential chain, end to end, from real parts:
//   official openai client -> confide-proxy -> nginx (untrusted gateway,
//   logging request bodies) -> wire tap -> confide-worker -> llama-server
//   (UNIX socket, random-weight model), with confide-as on a simulated TEE.
// The app must see exactly what llama-server produces (compared with a
// direct request at temperature 0), and neither the gateway's body log nor
// the bytes on the wire (both directions) nor any daemon log may contain a
// prompt or a reply.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import OpenAI from 'openai';

import { cleanup, filesContaining, httpRequest, openaiChunks, startConfide } from './lib/confide.mjs';

let d; // the deployment
let client;
const prompts = []; // every prompt sent, for the leak check at the end
const replies = []; // every reply text received

// Distinct, greppable prompts per test (a reply is random-weight gibberish).
const canary = (label) => {
  const p = `confide-chain-canary ${label}: the lighthouse keeper counts ${Math.random().toString(36).slice(2, 10)} waves`;
  prompts.push(p);
  return p;
};

before(async () => {
  d = await startConfide({ llama: { embeddings: true } });
  client = new OpenAI({ baseURL: d.baseURL, apiKey: 'sk-chain-not-a-secret', maxRetries: 0, timeout: 60000 });
});

after(cleanup);

// Greedy decoding (temperature 0) is deterministic for the same batches;
// `cache_prompt: false` (llama.cpp) makes every request compute its prompt
// from scratch, so a prefix cached by the previous request cannot change the
// floating-point path and flip a near-tie.

/** The same request straight to llama-server on its socket (no confide, no gateway). */
async function direct(path, body) {
  const res = await httpRequest({ socketPath: d.backend.socketPath, method: 'POST', path, body, timeoutMs: 60000 });
  assert.equal(res.status, 200, `direct ${path}: ${res.text()}`);
  return body.stream ? openaiChunks(res.text()) : res.json();
}

async function collect(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

const chatText = (chunks) => chunks.map((c) => c.choices.map((ch) => (ch.delta && ch.delta.content) || '').join('')).join('');
const textOf = (chunks) => chunks.map((c) => c.choices.map((ch) => ch.text || '').join('')).join('');
const finishOf = (chunks) => chunks.flatMap((c) => c.choices.map((ch) => ch.finish_reason)).filter(Boolean).pop();
const remember = (text) => {
  // Only replies long enough to be a meaningful needle (they contain spaces
  // or dots, which never occur in base64url ciphertext).
  if (text.trim().length >= 8) replies.push(text.trim());
  return text;
};

describe('openai client -> confide-proxy -> nginx -> confide-worker -> llama-server', () => {
  test('GET /v1/models passes through: the model served behind the worker', async () => {
    const page = await client.models.list();
    const ids = page.data.map((m) => m.id);
    assert.ok(ids.includes(d.modelId), `model ids: ${ids.join(', ')}`);
    const directList = await httpRequest({ socketPath: d.backend.socketPath, path: '/v1/models' });
    assert.deepEqual(ids, directList.json().data.map((m) => m.id));
  });

  test('chat completion, not streamed: exactly what llama-server says', async () => {
    const params = { model: d.modelId, messages: [{ role: 'user', content: canary('chat') }], max_tokens: 24, temperature: 0, cache_prompt: false };
    const viaConfide = await client.chat.completions.create(params);
    const plain = await direct('/v1/chat/completions', params);
    remember(viaConfide.choices[0].message.content);
    assert.equal(viaConfide.object, 'chat.completion');
    assert.equal(viaConfide.model, plain.model);
    assert.equal(viaConfide.choices.length, 1);
    assert.equal(viaConfide.choices[0].message.role, 'assistant');
    assert.ok(viaConfide.choices[0].message.content.length > 0, 'empty reply');
    assert.equal(viaConfide.choices[0].message.content, plain.choices[0].message.content);
    assert.equal(viaConfide.choices[0].finish_reason, plain.choices[0].finish_reason);
    assert.equal(viaConfide.usage.completion_tokens, plain.usage.completion_tokens);
    assert.equal(viaConfide.usage.prompt_tokens, plain.usage.prompt_tokens);
  });

  test('chat completion, streamed: the same chunks as llama-server sends', async () => {
    const params = {
      model: d.modelId,
      messages: [{ role: 'user', content: canary('chat-stream') }],
      max_tokens: 24,
      temperature: 0,
      cache_prompt: false,
      stream: true,
      stream_options: { include_usage: true },
    };
    const chunks = await collect(await client.chat.completions.create(params));
    const plain = await direct('/v1/chat/completions', params);
    assert.ok(plain.done, 'llama-server stream without [DONE]');
    assert.equal(chunks.length, plain.length, 'chunk count differs');
    for (const c of chunks) assert.equal(c.object, 'chat.completion.chunk');
    const text = remember(chatText(chunks));
    assert.ok(text.length > 0, 'empty streamed reply');
    assert.equal(text, chatText(plain));
    assert.equal(finishOf(chunks), finishOf(plain));
    const usage = chunks.find((c) => c.usage)?.usage;
    assert.ok(usage, 'no usage chunk (stream_options.include_usage)');
    assert.equal(usage.completion_tokens, plain.find((c) => c.usage).usage.completion_tokens);
    // Chunk by chunk, the content deltas are the same (not just their sum).
    assert.deepEqual(
      chunks.map((c) => c.choices.map((ch) => ch.delta?.content ?? null)),
      plain.map((c) => c.choices.map((ch) => ch.delta?.content ?? null)),
    );
  });

  test('completions, not streamed and streamed', async () => {
    const prompt = canary('completion');
    const params = { model: d.modelId, prompt, max_tokens: 16, temperature: 0, cache_prompt: false };
    const res = await client.completions.create(params);
    const plain = await direct('/v1/completions', params);
    assert.equal(res.object, 'text_completion');
    assert.ok(res.choices[0].text.length > 0);
    assert.equal(res.choices[0].text, plain.choices[0].text);
    assert.equal(res.choices[0].finish_reason, plain.choices[0].finish_reason);
    remember(res.choices[0].text);

    const chunks = await collect(await client.completions.create({ ...params, stream: true }));
    const plainChunks = await direct('/v1/completions', { ...params, stream: true });
    assert.equal(textOf(chunks), textOf(plainChunks));
    assert.equal(textOf(chunks), res.choices[0].text);
    assert.equal(finishOf(chunks), finishOf(plainChunks));
  });

  test('embeddings: the same vectors as llama-server computes', async () => {
    const input = [canary('embed-a'), canary('embed-b')];
    const res = await client.embeddings.create({ model: d.modelId, input, encoding_format: 'float' });
    const plain = await direct('/v1/embeddings', { model: d.modelId, input, encoding_format: 'float' });
    assert.equal(res.data.length, 2);
    for (let i = 0; i < 2; i++) {
      assert.equal(res.data[i].embedding.length, 128);
      assert.deepEqual(res.data[i].embedding, plain.data[i].embedding);
    }
    assert.notDeepEqual(res.data[0].embedding, res.data[1].embedding);
    // The openai client's default (base64) decodes to the same vectors.
    const b64 = await client.embeddings.create({ model: d.modelId, input });
    for (let i = 0; i < 2; i++) for (let j = 0; j < 128; j++) assert.ok(Math.abs(b64.data[i].embedding[j] - plain.data[i].embedding[j]) < 1e-6);
  });

  test('an endpoint without encryption rules is refused by the proxy, never forwarded', async () => {
    const before = d.gateway.requests().length;
    const secret = canary('unknown-endpoint');
    for (const path of ['/v1/responses', '/v1/audio/speech', '/v2/chat/completions']) {
      const res = await httpRequest({ port: d.proxy.port, method: 'POST', path, body: { model: d.modelId, input: secret } });
      assert.ok(res.status === 404 || res.status === 501, `${path}: HTTP ${res.status}`);
    }
    await new Promise((r) => setTimeout(r, 100)); // nginx logs a request when it ends
    assert.equal(d.gateway.requests().length, before, 'the proxy forwarded an unknown endpoint');
  });

  test('the gateway sees the routing fields and ciphertext, and can bill', async () => {
    const posts = d.gateway.requests().filter((r) => r.method === 'POST');
    assert.ok(posts.length >= 6, `${posts.length} POSTs in the access log`);
    for (const r of posts) {
      assert.equal(r.status, 200, JSON.stringify(r));
      const body = JSON.parse(r.request_body);
      assert.equal(body.model, d.modelId, 'model is a plain (routing) field');
      // Every member that is not a plain field is an encrypted value.
      for (const [name, value] of Object.entries(body)) {
        if (['model', 'stream', 'stream_options', 'max_tokens', 'max_completion_tokens', 'n'].includes(name)) continue;
        assert.match(String(value), /^cf1[nf]:[A-Za-z0-9_-]{22}:[A-Za-z0-9_-]{22}:[A-Za-z0-9_-]{22,}$/, `${r.uri} member ${name} is not encrypted`);
      }
    }
    // usage stays readable on the wire (billing), the content does not.
    const down = d.tap.downstreamBytes().toString('utf8');
    assert.match(down, /"usage":\{"completion_tokens":\d+/);
    assert.match(down, /"choices":"cf1n:/);
  });

  test('no prompt and no reply anywhere the provider can look, nor in any daemon log', async () => {
    assert.ok(prompts.length >= 6 && replies.length >= 3, `${prompts.length} prompts, ${replies.length} replies`);
    assert.ok(d.tap.upstreamBytes().length > 0 && d.tap.downstreamBytes().length > 0, 'the tap saw no traffic');
    // Sanity: the leak finder does find text that is there.
    assert.ok(filesContaining(['/v1/chat/completions'], [d.gateway.accessLog]).length > 0);
    const hits = filesContaining([...prompts, ...replies], [...d.wireFiles, d.gateway.errorLog, ...d.daemons]);
    assert.deepEqual(hits, []);
  });

  test('the daemons stop cleanly on SIGTERM (exit 0; no sanitizer report under SANITIZE=1)', async () => {
    // The proxy first: it deletes its key at the AS on the way out.
    for (const p of [d.proxy.proc, d.worker.proc, d.as.proc]) {
      const { code, signal } = await p.stop('SIGTERM', 20000);
      assert.equal(signal, null, `${p.name} was killed (${signal})`);
      assert.equal(code, 0, `${p.name} exited ${code}:\n${p.log().slice(-2000)}`);
      assert.doesNotMatch(p.log(), /ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:/, p.name);
    }
    assert.match(d.as.proc.log(), /event=key_removed\b.*reason=deleted/, 'the proxy did not delete its key at the AS');
  });
});
