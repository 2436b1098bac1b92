// The baseline chain without confide: the official openai client -> real
// nginx (the untrusted gateway) -> real llama-server on a UNIX socket with
// the random-weight test model. It proves the test infrastructure works and
// shows what a curious provider sees when nothing is encrypted: the prompt,
// verbatim, in its access log. The confide tests put confide-proxy and
// confide-worker into this same chain and assert the opposite.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import OpenAI from 'openai';

import { cleanup, httpRequest, startGateway, startLlama, LLAMA_MODEL_ID } from './lib/index.mjs';

const PROMPT = 'confide-e2e-canary: the quick brown fox';

let llama;
let gateway;
let client;

before(async () => {
  llama = await startLlama({ embeddings: true });
  gateway = await startGateway({ upstream: llama.socketPath });
  client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'sk-test-not-a-secret', maxRetries: 0, timeout: 60000 });
});

after(cleanup);

describe('openai client -> nginx -> llama-server (UNIX socket)', () => {
  test('GET /v1/models lists the test model', async () => {
    const page = await client.models.list();
    const ids = page.data.map((m) => m.id);
    assert.ok(ids.includes(LLAMA_MODEL_ID), `model ids: ${ids.join(', ')}`);
    for (const m of page.data) assert.equal(m.object, 'model');
  });

  test('chat completion, not streamed: real output shape', async () => {
    const res = await client.chat.completions.create({
      model: LLAMA_MODEL_ID,
      messages: [{ role: 'user', content: PROMPT }],
      max_tokens: 16,
      seed: 7,
    });
    assert.equal(res.object, 'chat.completion');
    assert.match(res.id, /\S/);
    assert.equal(res.choices.length, 1);
    const [choice] = res.choices;
    assert.equal(choice.index, 0);
    assert.equal(choice.message.role, 'assistant');
    assert.equal(typeof choice.message.content, 'string');
    assert.ok(choice.message.content.trim().length > 0, 'empty reply');
    assert.ok(['length', 'stop'].includes(choice.finish_reason), choice.finish_reason);
    assert.ok(res.usage.prompt_tokens > 0);
    assert.ok(res.usage.completion_tokens > 0 && res.usage.completion_tokens <= 16, JSON.stringify(res.usage));
    assert.equal(res.usage.total_tokens, res.usage.prompt_tokens + res.usage.completion_tokens);
    // The model only ever emits pseudo-latin words and punctuation.
    assert.match(choice.message.content, /^[\x20-\x7e]+$/);
  });

  test('chat completion, streamed: chunks add up to a reply', async () => {
    const stream = await client.chat.completions.create({
      model: LLAMA_MODEL_ID,
      messages: [{ role: 'user', content: PROMPT }],
      max_tokens: 12,
      seed: 7,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let finish = null;
    let usage = null;
    let chunks = 0;
    let sawRole = false;
    for await (const chunk of stream) {
      chunks++;
      assert.equal(chunk.object, 'chat.completion.chunk');
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        if (c.delta.role) {
          assert.equal(c.delta.role, 'assistant');
          sawRole = true;
        }
        if (c.delta.content) text += c.delta.content;
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    assert.ok(sawRole, 'no chunk carried the assistant role');
    assert.ok(chunks >= 3, `only ${chunks} chunks`);
    assert.ok(text.trim().length > 0, 'empty streamed reply');
    assert.ok(['length', 'stop'].includes(finish), String(finish));
    assert.ok(usage && usage.completion_tokens > 0 && usage.completion_tokens <= 12, JSON.stringify(usage));
  });

  test('greedy decoding is deterministic and streamed == not streamed', async () => {
    const params = { model: LLAMA_MODEL_ID, messages: [{ role: 'user', content: PROMPT }], max_tokens: 10, temperature: 0 };
    const a = await client.chat.completions.create(params);
    const b = await client.chat.completions.create(params);
    assert.equal(a.choices[0].message.content, b.choices[0].message.content);
    let streamed = '';
    for await (const chunk of await client.chat.completions.create({ ...params, stream: true })) {
      for (const c of chunk.choices) streamed += c.delta.content || '';
    }
    assert.equal(streamed, a.choices[0].message.content);
    // Different input, different computation: the reply depends on the prompt.
    const other = await client.chat.completions.create({ ...params, messages: [{ role: 'user', content: 'something else entirely' }] });
    assert.notEqual(other.choices[0].message.content, a.choices[0].message.content);
  });

  test('legacy completions endpoint', async () => {
    const res = await client.completions.create({ model: LLAMA_MODEL_ID, prompt: PROMPT, max_tokens: 8, seed: 3 });
    assert.equal(res.object, 'text_completion');
    assert.equal(typeof res.choices[0].text, 'string');
    assert.ok(res.choices[0].text.length > 0);
    assert.ok(res.usage.completion_tokens > 0 && res.usage.completion_tokens <= 8);
  });

  test('embeddings from the same server (--embeddings --pooling mean)', async () => {
    const res = await client.embeddings.create({ model: LLAMA_MODEL_ID, input: ['alpha', 'beta'] });
    assert.equal(res.data.length, 2);
    for (const d of res.data) {
      assert.equal(d.object, 'embedding');
      assert.equal(d.embedding.length, 128); // n_embd of the test model
      const norm = Math.hypot(...d.embedding);
      assert.ok(Math.abs(norm - 1) < 1e-3, `not L2-normalised: ${norm}`);
    }
    assert.notDeepEqual(res.data[0].embedding, res.data[1].embedding);
  });

  test('llama-server answers directly on its UNIX socket', async () => {
    const res = await httpRequest({ socketPath: llama.socketPath, path: '/health' });
    assert.equal(res.status, 200);
  });

  test('the gateway, unprotected, sees the prompt in its access log', async () => {
    // Every request above went through nginx; a curious provider logs bodies.
    const posts = gateway.requests().filter((r) => r.method === 'POST');
    assert.ok(posts.length >= 5, `access log has ${posts.length} POSTs`);
    assert.ok(posts.every((r) => r.status === 200), JSON.stringify(posts.map((r) => r.status)));
    assert.ok(posts.some((r) => r.request_body.includes(PROMPT)), 'prompt not in the gateway log');
    assert.ok(posts.every((r) => r.upstream === `unix:${llama.socketPath}`));
  });
});
