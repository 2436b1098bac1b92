// The fault-injection backend does what its scenarios promise, seen through
// the real nginx gateway (which must pass SSE through unbuffered and
// unchanged) and directly on its UNIX socket. The worker's fault tests rely
// on exactly these behaviours.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';

import OpenAI from 'openai';

import { cleanup, httpRequest, openaiChunks, parseSse, startFakeBackend, startGateway } from './lib/index.mjs';

let fake;
let gateway;
let client;

before(async () => {
  fake = await startFakeBackend();
  gateway = await startGateway({ upstream: fake.socketPath, readTimeout: '3s' });
  client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'sk-test', maxRetries: 0, timeout: 20000 });
});

after(cleanup);

const chatBody = (content, extra = {}) => ({ model: 'fake-model', messages: [{ role: 'user', content }], ...extra });

function post(target, path, body, headers = {}, timeoutMs = 10000) {
  const t = target === 'gateway' ? { port: gateway.port } : { socketPath: fake.socketPath };
  return httpRequest({ ...t, method: 'POST', path, body, headers, timeoutMs });
}

describe('fake backend through nginx', () => {
  test('echo, not streamed, via the openai client', async () => {
    const res = await client.chat.completions.create(chatBody('hello there'));
    assert.equal(res.choices[0].message.content, 'echo: hello there');
    assert.equal(res.choices[0].finish_reason, 'stop');
    const seen = fake.requests().at(-1);
    assert.equal(seen.path, '/v1/chat/completions');
    assert.equal(JSON.parse(seen.body).messages[0].content, 'hello there');
  });

  test('echo, streamed, via the openai client', async () => {
    let text = '';
    for await (const c of await client.chat.completions.create(chatBody('one two three', { stream: true }))) {
      text += c.choices[0]?.delta?.content || '';
    }
    assert.equal(text, 'echo: one two three');
  });

  test('completions and embeddings endpoints', async () => {
    const c = await client.completions.create({ model: 'fake-model', prompt: 'abc def', max_tokens: 4 });
    assert.equal(c.choices[0].text, 'echo: abc def');
    const e = await client.embeddings.create({ model: 'fake-model', input: ['a', 'b'] });
    assert.equal(e.data.length, 2);
    assert.equal(e.data[0].embedding.length, 8);
    assert.notDeepEqual(e.data[0].embedding, e.data[1].embedding);
  });

  test('error scenario: status and OpenAI-style JSON body reach the client', async () => {
    await assert.rejects(
      client.chat.completions.create(chatBody('[[fake:error status=429 message=slow_down]]')),
      (err) => err.status === 429 && /slow down/.test(err.message),
    );
    const res = await post('gateway', '/v1/chat/completions', chatBody('x'), { 'x-fake-scenario': 'error status=503' });
    assert.equal(res.status, 503);
    assert.equal(res.json().error.code, 503);
  });

  test('slow stream arrives event by event through nginx (no buffering)', async () => {
    const started = Date.now();
    const arrivals = [];
    await new Promise((resolve, reject) => {
      const req = http.request({ port: gateway.port, method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' } }, (res) => {
        res.on('data', () => arrivals.push(Date.now() - started));
        res.on('end', resolve);
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(JSON.stringify(chatBody('[[fake:slow tokens=5 delay=150]]', { stream: true })));
    });
    const total = arrivals.at(-1);
    assert.ok(total >= 700, `stream took ${total} ms`);
    assert.ok(arrivals[0] < total - 500, `first bytes at ${arrivals[0]} ms of ${total}: buffered`);
  });

  for (const name of ['comments', 'crlf', 'multiline', 'split']) {
    test(`${name} scenario: still a valid stream with the same content`, async () => {
      const res = await post('gateway', '/v1/chat/completions', chatBody(`[[fake:${name}]] hi`, { stream: true }));
      assert.equal(res.status, 200);
      const raw = res.text();
      if (name === 'crlf') assert.ok(raw.includes('\r\n\r\n'));
      if (name === 'comments') assert.match(raw, /^: /m);
      if (name === 'multiline') assert.ok(parseSse(raw).some((e) => e.data.includes('\n')));
      const chunks = openaiChunks(raw);
      assert.ok(chunks.done);
      assert.equal(chunks.map((c) => c.choices[0]?.delta?.content || '').join(''), 'echo: [[fake:' + name + ']] hi');
    });
  }

  test('huge scenario: one 1 MiB event', async () => {
    const res = await post('gateway', '/v1/chat/completions', chatBody('[[fake:huge]]', { stream: true }));
    const chunks = openaiChunks(res.text());
    assert.ok(chunks.some((c) => c.choices[0]?.delta?.content?.length === 1048576));
  });

  test('nodone scenario: clean end without [DONE]', async () => {
    const res = await post('gateway', '/v1/chat/completions', chatBody('[[fake:nodone]]', { stream: true }));
    assert.equal(res.status, 200);
    assert.equal(openaiChunks(res.text()).done, false);
  });

  test('cut scenario: the stream breaks mid-event (directly on the socket)', async () => {
    await assert.rejects(post('direct', '/v1/chat/completions', chatBody('[[fake:cut events=2]]', { stream: true })), /aborted|socket hang up|ECONNRESET/);
    await assert.rejects(post('direct', '/v1/chat/completions', chatBody('[[fake:cut]]')), /aborted|socket hang up|ECONNRESET/);
  });

  test('cut scenario through nginx: the client sees a truncated stream', async () => {
    // nginx ends the chunked response abruptly when its upstream breaks.
    let raw = '';
    try {
      raw = (await post('gateway', '/v1/chat/completions', chatBody('[[fake:cut events=2]]', { stream: true }))).text();
    } catch (err) {
      assert.match(err.message, /aborted|socket hang up|ECONNRESET/);
      return;
    }
    assert.equal(openaiChunks(raw).done, false);
  });

  test('hang and close scenarios', async () => {
    await assert.rejects(post('direct', '/v1/chat/completions', chatBody('[[fake:hang]]'), {}, 500), /timeout/);
    await assert.rejects(post('direct', '/v1/chat/completions', chatBody('[[fake:close]]')), /socket hang up|ECONNRESET/);
    // nginx gives up on a silent upstream after its read timeout (3 s here).
    const res = await post('gateway', '/v1/chat/completions', chatBody('[[fake:hang]]'), {}, 15000);
    assert.equal(res.status, 504);
  });

  test('garbage scenario: 200 with a body that is not JSON', async () => {
    const res = await post('direct', '/v1/chat/completions', chatBody('[[fake:garbage]]'));
    assert.equal(res.status, 200);
    assert.throws(() => res.json());
  });
});
