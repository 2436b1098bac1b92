// A malicious provider between confide-proxy and confide-worker (DESIGN §2:
// it may drop, modify, reflect, inject and replay). A man-in-the-middle
// relay (lib/mitm.mjs) sits between nginx and the worker and rewrites
// traffic; every manipulation must be detected and reach the app (the
// official openai client) as an error — never as a wrong or shortened answer
// presented as complete.
//
//   app -> confide-proxy -> nginx -> MITM -> confide-worker -> llama-server

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';

import OpenAI from 'openai';

import { cleanup, encryptedValues, flipCiphertext, httpRequest, startConfide } from './lib/confide.mjs';

let d;
let client;
let reference; // the honest answer to PARAMS, for "never a wrong answer" checks

const PARAMS = { messages: [{ role: 'user', content: 'confide-adversarial: what does the gateway see?' }], max_tokens: 16, temperature: 0, cache_prompt: false };

before(async () => {
  d = await startConfide({ between: 'mitm' });
  client = new OpenAI({ baseURL: d.baseURL, apiKey: 'sk-adv', maxRetries: 0, timeout: 60000 });
  reference = (await client.chat.completions.create({ model: d.modelId, ...PARAMS })).choices[0].message.content;
  assert.ok(reference.length > 0);
});

afterEach(() => d.mitm.reset());
after(cleanup);

const chat = (extra = {}) => client.chat.completions.create({ model: d.modelId, ...PARAMS, ...extra });

/** Rewrite the JSON request body the worker gets (only chat completions). */
function onChatRequest(edit) {
  d.mitm.onRequest = (req) => (req.path.endsWith('/chat/completions') ? { ...req, body: edit(req.body.toString('utf8'), req) } : req);
}

function onChatResponse(edit) {
  d.mitm.onResponse = (res, req) => (req.path.endsWith('/chat/completions') ? { ...res, body: edit(res.body.toString('utf8'), res, req) } : res);
}

/** The call must fail with an openai APIError; returns it. */
async function rejectsApi(promise, what) {
  try {
    const res = await promise;
    assert.fail(`${what}: the app got an answer: ${JSON.stringify(res).slice(0, 300)}`);
  } catch (err) {
    if (err.code === 'ERR_ASSERTION') throw err;
    assert.ok(err instanceof OpenAI.APIError, `${what}: not an APIError: ${err}`);
    return err;
  }
}

/** Consume a stream: returns { text, error } (the error it threw, if any). */
async function drain(stream) {
  let text = '';
  try {
    for await (const c of stream) for (const ch of c.choices) text += (ch.delta && ch.delta.content) || '';
    return { text, error: null };
  } catch (error) {
    return { text, error };
  }
}

describe('the gateway tampers with requests', () => {
  test('a changed plain `model` fails authentication at the worker', async () => {
    onChatRequest((b) => b.replace(`"model":"${d.modelId}"`, '"model":"a-cheaper-model"'));
    const err = await rejectsApi(chat(), 'model rewritten');
    assert.ok(err.status >= 400 && err.status < 500, `status ${err.status}`);
    assert.match(JSON.stringify(err.error ?? err.message), /auth_failed/);
    assert.ok(d.mitm.exchanges.at(-1).request.body.includes('a-cheaper-model'), 'the tampering did not happen');
  });

  test('a changed plain `max_tokens` fails authentication', async () => {
    onChatRequest((b) => b.replace('"max_tokens":16', '"max_tokens":4096'));
    const err = await rejectsApi(chat(), 'max_tokens rewritten');
    assert.match(JSON.stringify(err.error ?? err.message), /auth_failed/);
    assert.ok(d.mitm.exchanges.at(-1).request.body.includes('"max_tokens":4096'));
  });

  test('a flipped request ciphertext byte fails authentication', async () => {
    onChatRequest((b) => flipCiphertext(b, 0));
    const err = await rejectsApi(chat(), 'request ciphertext flipped');
    assert.match(JSON.stringify(err.error ?? err.message), /auth_failed|bad_ciphertext/);
  });

  test('a removed encrypted member (the final one) is refused', async () => {
    // Drop the last encrypted member (it carries the final flag).
    onChatRequest((b) => {
      const obj = JSON.parse(b);
      const last = Object.keys(obj).filter((k) => /^cf1[nf]:/.test(String(obj[k]))).sort().pop();
      delete obj[last];
      return JSON.stringify(obj);
    });
    const err = await rejectsApi(chat(), 'final member dropped');
    assert.match(JSON.stringify(err.error ?? err.message), /truncated|auth_failed|bad_ciphertext/);
  });

  test('a replayed request: the worker refuses it, the app gets an error', async () => {
    // Capture one honest request, then answer the app's next request by
    // sending the captured one instead (same key, same salt).
    await chat();
    const captured = d.mitm.exchanges.at(-1).request;
    assert.match(captured.body.toString('utf8'), /cf1[nf]:/);
    // Straight to the worker: refused as a replay, in plaintext.
    const again = await d.mitm.send(captured);
    assert.equal(again.status, 409);
    assert.equal(again.headers['confide-error'], 'replay');
    // Through the chain: the app's new request is swapped for the old one.
    d.mitm.onRequest = (req) => (req.path.endsWith('/chat/completions') ? captured : req);
    const err = await rejectsApi(chat(), 'replay');
    assert.equal(err.status, 409);
    assert.match(JSON.stringify(err.error ?? err.message), /replay/);
  });
});

describe('the gateway tampers with responses', () => {
  test('a flipped response ciphertext byte: 502, never the content', async () => {
    onChatResponse((b) => flipCiphertext(b, 0));
    const err = await rejectsApi(chat(), 'response ciphertext flipped');
    assert.equal(err.status, 502);
    assert.match(JSON.stringify(err.error ?? err.message), /auth_failed|bad_ciphertext/);
  });

  test('a changed plain response field (`usage`) fails authentication', async () => {
    onChatResponse((b) => b.replace(/"completion_tokens":(\d+)/, (_, n) => `"completion_tokens":${Number(n) + 1000}`));
    const err = await rejectsApi(chat(), 'usage rewritten');
    assert.equal(err.status, 502);
    assert.ok(/"completion_tokens":\d{4}/.test(d.mitm.exchanges.at(-1).response.body.toString()), 'the tampering did not happen');
  });

  test('a reflected request value in the response is refused', async () => {
    // Put the request's encrypted `messages` where the reply's `choices` go:
    // same key and salt, but the other direction's key and AAD.
    onChatResponse((b, res, req) => {
      const reqBody = JSON.parse(req.body.toString('utf8'));
      const obj = JSON.parse(b);
      obj.choices = reqBody.messages;
      return JSON.stringify(obj);
    });
    const err = await rejectsApi(chat(), 'reflection');
    assert.equal(err.status, 502);
  });

  test('an injected plaintext 200 answer is refused (with or without confide headers)', async () => {
    const fake = JSON.stringify({
      id: 'chatcmpl-injected',
      object: 'chat.completion',
      created: 1,
      model: d.modelId,
      choices: [{ index: 0, message: { role: 'assistant', content: 'INJECTED ANSWER' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
    });
    for (const headers of [{ 'content-type': 'application/json' }, { 'content-type': 'application/json', 'confide-version': '1' }]) {
      d.mitm.onRequest = (req) => (req.path.endsWith('/chat/completions') ? { respond: { status: 200, headers, body: fake } } : req);
      const err = await rejectsApi(chat(), `injected 200 ${JSON.stringify(headers)}`);
      assert.equal(err.status, 502);
      assert.doesNotMatch(JSON.stringify(err.error ?? err.message), /INJECTED ANSWER/);
    }
  });

  test('an injected plaintext error is passed on marked as unauthenticated', async () => {
    const body = JSON.stringify({ error: { message: 'please send your prompt again in plaintext', type: 'invalid_request_error', code: 'x' } });
    d.mitm.onRequest = (req) => (req.path.endsWith('/chat/completions') ? { respond: { status: 400, headers: { 'content-type': 'application/json' }, body } } : req);
    const err = await rejectsApi(chat(), 'injected error');
    assert.equal(err.status, 400);
    assert.match(JSON.stringify(err.error ?? err.message), /unauthenticated/);
  });

  test('the answer to another request is refused', async () => {
    await chat({ messages: [{ role: 'user', content: 'an earlier question' }] });
    const earlier = d.mitm.exchanges.at(-1).response;
    onChatResponse(() => earlier.body.toString('utf8'));
    const err = await rejectsApi(chat(), 'swapped answer');
    assert.equal(err.status, 502);
  });
});

describe('the gateway tampers with streams', () => {
  const streamed = () => chat({ stream: true });
  const events = (body) => body.split(/\n\n/).filter((e) => e.trim());
  const join = (evs) => `${evs.join('\n\n')}\n\n`;

  test('an honest stream through the relay ends normally (control)', async () => {
    const { text, error } = await drain(await streamed());
    assert.equal(error, null);
    assert.equal(text, reference);
  });

  test('a dropped final event: the app gets a truncation error, not a silent end', async () => {
    onChatResponse((b) => join(events(b).filter((e) => !e.includes('"cf1f:'))));
    const { text, error } = await drain(await streamed());
    assert.ok(error instanceof OpenAI.APIError, `no error: ${error}`);
    assert.match(JSON.stringify(error.error ?? error.message), /truncated/);
    assert.ok(reference.startsWith(text), 'what was released is not a prefix of the honest answer');
  });

  test('a stream cut after two events: truncation error', async () => {
    onChatResponse((b) => join(events(b).slice(0, 2)));
    const { text, error } = await drain(await streamed());
    assert.ok(error instanceof OpenAI.APIError, `no error: ${error}`);
    assert.match(JSON.stringify(error.error ?? error.message), /truncated/);
    assert.ok(reference.startsWith(text));
  });

  test('a dropped [DONE] after the final event that announced it: error', async () => {
    onChatResponse((b) => join(events(b).filter((e) => e.trim() !== 'data: [DONE]')));
    const { error } = await drain(await streamed());
    assert.ok(error instanceof OpenAI.APIError, `no error: ${error}`);
  });

  test('a flipped byte in one event: error, nothing after it released', async () => {
    onChatResponse((b) => {
      const evs = events(b);
      evs[2] = flipCiphertext(evs[2], 0);
      return join(evs);
    });
    const { text, error } = await drain(await streamed());
    assert.ok(error instanceof OpenAI.APIError, `no error: ${error}`);
    assert.ok(reference.startsWith(text));
  });

  test('two events swapped: error', async () => {
    onChatResponse((b) => {
      const evs = events(b);
      [evs[1], evs[2]] = [evs[2], evs[1]];
      return join(evs);
    });
    const { text, error } = await drain(await streamed());
    assert.ok(error instanceof OpenAI.APIError, `no error: ${error}`);
    assert.ok(reference.startsWith(text));
  });

  test('an injected plaintext event: error, the text never reaches the app', async () => {
    onChatResponse((b) => {
      const evs = events(b);
      const fake = `data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: ' INJECTED' }, finish_reason: null }] })}`;
      evs.splice(2, 0, fake);
      return join(evs);
    });
    const { text, error } = await drain(await streamed());
    assert.ok(error instanceof OpenAI.APIError, `no error: ${error}`);
    assert.ok(!text.includes('INJECTED'));
  });

  test('an injected plaintext 200 stream is refused', async () => {
    const body = `data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 1, model: d.modelId, choices: [{ index: 0, delta: { content: 'INJECTED' }, finish_reason: 'stop' }] })}\n\ndata: [DONE]\n\n`;
    d.mitm.onRequest = (req) => (req.path.endsWith('/chat/completions') ? { respond: { status: 200, headers: { 'content-type': 'text/event-stream', 'confide-version': '1' }, body } } : req);
    let text = '';
    let error = null;
    try {
      ({ text, error } = await drain(await streamed()));
    } catch (err) {
      error = err; // refused before the stream started
    }
    assert.ok(error instanceof OpenAI.APIError, `no error: ${error}`);
    assert.ok(!text.includes('INJECTED'));
  });
});

describe('the chain still works after all that', () => {
  test('an honest request succeeds with the reference answer', async () => {
    const res = await chat();
    assert.equal(res.choices[0].message.content, reference);
    // The relay saw only ciphertext for the prompt.
    assert.ok(encryptedValues(d.mitm.exchanges.at(-1).request.body.toString()).length >= 2);
    const health = await httpRequest({ port: d.proxy.port, path: '/healthz' });
    assert.equal(health.status, 200);
  });
});
