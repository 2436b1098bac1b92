// The proxy must not trust an attestation service whose evidence does not
// match the manifest the user pinned (DESIGN §3 flow 1): a wrong
// measurement (other code), another manifest, or a sim report signed by a
// platform key that does not chain to the manifest's root (forged). In each
// case it must refuse to serve — /healthz 503 `attestation_failed`, every API
// request answered with an error — and send nothing to the provider.
//
// Each case runs its own AS (--self-check=false: the AS would otherwise
// refuse to start on its own mismatch, which is tested by the AS's own
// suite) and a proxy pointed at a gateway in front of the fake backend, so
// the test can show that not a single request left the proxy.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import OpenAI from 'openai';

import { cleanup, confideBin, httpRequest, makeManifest, simInit, startAs, startFakeBackend, startGateway, startProxy, waitFor } from './lib/confide.mjs';

let fake;
let gateway;
let sim; // the platform the user's manifest trusts
let manifest; // what the user pins

before(async () => {
  fake = await startFakeBackend();
  gateway = await startGateway({ upstream: fake.socketPath });
  sim = simInit();
  manifest = makeManifest({ simDir: sim.dir, models: ['fake-model'] });
});

after(cleanup);

/**
 * Start an AS as given and a proxy pinned to `pinned`; the proxy must end up
 * refusing: returns the attestation failure it reports.
 */
async function expectRefusal({ asSim, asManifest, pinned, why }) {
  const as = await startAs({ simDir: asSim.dir, manifest: asManifest, extraArgs: ['--self-check=false'] });
  const proxy = await startProxy({ asUrl: as.url, manifest: pinned, upstream: gateway.url, ready: false });
  const before = gateway.requests().length;
  try {
    // It may exit (refusing to start) or stay up refusing to serve.
    const failure = await waitFor(`proxy refuses (${why})`, async () => {
      if (!proxy.proc.running()) return { exited: await proxy.proc.exited };
      const h = await proxy.health();
      return h.status === 503 && h.body?.error?.code === 'attestation_failed' ? { health: h.body.error } : null;
    }, { timeoutMs: 20000, intervalMs: 100 });
    assert.match(proxy.proc.log(), /attestation_failed/, 'no attestation_failed log line');
    if (failure.exited) {
      assert.notEqual(failure.exited.code, 0, 'the proxy exited 0');
    } else {
      // Still up, but it must not serve: every endpoint answers an error.
      const client = new OpenAI({ baseURL: proxy.baseURL, apiKey: 'sk-x', maxRetries: 0, timeout: 20000 });
      await assert.rejects(client.chat.completions.create({ model: 'fake-model', messages: [{ role: 'user', content: 'secret prompt' }] }), (err) => {
        assert.ok(err instanceof OpenAI.APIError, String(err));
        assert.equal(err.status, 503);
        return true;
      });
      await assert.rejects(client.models.list(), (err) => err instanceof OpenAI.APIError && err.status === 503);
      const res = await httpRequest({ port: proxy.port, method: 'POST', path: '/v1/embeddings', body: { model: 'fake-model', input: 'x' } });
      assert.equal(res.status, 503);
      // The AS was reached: it answered /v1/attest, and the proxy uploaded no key.
      assert.match(as.proc.log(), /path=\/v1\/attest\b/);
      assert.doesNotMatch(as.proc.log(), /key_uploaded/);
    }
    assert.equal(gateway.requests().length, before, 'the proxy sent something to the provider');
    assert.deepEqual(fake.requests(), []);
    return failure.health ? failure.health.message : proxy.proc.log();
  } finally {
    await proxy.stop();
    await as.stop();
  }
}

describe('confide-proxy refuses an AS whose evidence does not match the pinned manifest', () => {
  test('control: the matching AS is accepted', async () => {
    const as = await startAs({ simDir: sim.dir, manifest });
    const proxy = await startProxy({ asUrl: as.url, manifest, upstream: gateway.url });
    const h = await proxy.health();
    assert.equal(h.status, 200);
    assert.equal(h.body.attestation, 'verified');
    await proxy.stop();
    await as.stop();
  });

  test('wrong measurement: the AS runs code the manifest does not list', async () => {
    // A manifest whose AS policy pins another binary's SHA-384 (the worker's),
    // enforced by the real AS: its evidence measures confide-as.
    const other = makeManifest({ simDir: sim.dir, models: ['fake-model'], asBinary: confideBin('confide-worker') });
    const why = await expectRefusal({ asSim: sim, asManifest: other, pinned: other, why: 'measurement' });
    assert.match(why, /measurement|policy/i);
  });

  test('another manifest: the AS enforces a manifest the user did not pin', async () => {
    const theirs = makeManifest({ simDir: sim.dir, models: ['fake-model'], name: 'the provider would prefer this one' });
    const why = await expectRefusal({ asSim: sim, asManifest: theirs, pinned: manifest, why: 'other manifest' });
    assert.match(why, /manifest/i);
  });

  test('forged sim report: signed by a platform key outside the manifest\'s roots', async () => {
    // The attacker has its own sim platform (its own root and platform key)
    // and produces evidence for exactly the right code and manifest.
    const forger = simInit();
    assert.notEqual(forger.rootFingerprint, sim.rootFingerprint);
    const why = await expectRefusal({ asSim: forger, asManifest: manifest, pinned: manifest, why: 'forged report' });
    assert.match(why, /root|certificate|chain|signature|untrusted/i);
  });
});
