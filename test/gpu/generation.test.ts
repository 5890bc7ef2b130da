// The request API and the scheduler on the GPU, in fp32: every Hugging Face generate() case (log-probs
// within 1e-3), GPU tokens equal to CPU tokens wherever the computation is deterministic (greedy, beams,
// and seeded sampling), and concurrent requests with random arrivals, a pool too small for the load
// included (caches swapped out, or recomputed), each giving exactly what they give alone.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CudaBackend } from '../../src/backends/cuda/backend.js';
import { loadGenerator } from '../../src/index.js';
import { fixture, reference } from '../helpers/fixtures.js';
import { alone, caseName, checkCase, deterministic, together, tokensOf, workload, type GenerationCase } from '../helpers/generation.js';
import { noGpu } from './helpers.js';

const skip = noGpu();

for (const name of ['gpt2-wide', 'gpt2-tiny']) {
  describe(`${name}: the request API matches Hugging Face on the GPU (fp32)`, { skip: skip ?? false }, () => {
    test('every case, one at a time, then all at once', async () => {
      const { cases } = reference<{ cases: GenerationCase[] }>(name, 'generation.json');
      const gen = await loadGenerator(fixture(name), { device: 'cuda', dtype: 'f32' });
      for (const c of cases) {
        const [r] = await gen.generateIds([c.prompt], c.options);
        checkCase(c, r, 1e-3, caseName(c));
      }
      const all = await Promise.all(cases.map((c) => gen.generateIds([c.prompt], c.options)));
      cases.forEach((c, i) => checkCase(c, all[i][0], 1e-3, `${caseName(c)}, all at once`));
      assert.equal(gen.scheduler.stats().blocksUsed, 0);
      gen.dispose();
    });
  });
}

describe('GPU and CPU agree, and concurrent requests each get what they get alone', { skip: skip ?? false }, () => {
  // a fixture with clear winners (random weights scaled as make_fixtures.py scales them), so that fp32 rounding
  // differences between the backends do not flip near-ties
  const model = fixture('gpt2-tiny');
  const work = workload(64);
  // greedy and beam search: the same tokens from both backends. A seeded draw walks ~50k probabilities that the
  // CPU sums in float64 and the GPU in float32 over logits that differ in their last bits, so near a boundary
  // of a flat distribution the two may pick neighbouring tokens (test/gpu/sampling.test.ts bounds that per draw)
  const same = work.map((w) => deterministic(w.options));

  test('64 mixed requests: GPU tokens equal CPU tokens where decoding is deterministic; random arrivals and a small pool change nothing', async () => {
    const cpu = await loadGenerator(model, { device: 'cpu' });
    const want = await alone(cpu, work);
    const gpu = await loadGenerator(model, { device: 'cuda', dtype: 'f32', maxBatch: 8, prefillChunk: 32, batchInvariant: true });
    assert.ok(gpu.runtime.backend.batchInvariant, 'the GPU backend runs batch-invariant');
    const got = await alone(gpu, work);
    assert.ok(same.filter(Boolean).length >= 20, 'greedy and beam requests are compared across backends');
    assert.deepEqual(tokensOf(got.filter((_, i) => same[i])), tokensOf(want.filter((_, i) => same[i])), 'GPU and CPU give the same tokens');
    got.forEach((r, i) => {
      if (r.logprobs && same[i]) r.logprobs.forEach((lp, j) => assert.ok(Math.abs(lp - want[i].logprobs![j]) < 1e-3, `logprob ${i}.${j}`));
      r.sequences?.forEach((s, j) => assert.ok(Math.abs(s.score - want[i].sequences![j].score) < 1e-3, `beam score ${i}.${j}`));
    });
    assert.deepEqual(tokensOf(await together(gpu, work, 1)), tokensOf(got), 'random arrivals');
    // blocks of 4 tokens: prefix-cache hits often leave a prompt's last token to a decode step, which must give the
    // bits the prompt pass gives (it failed about one run in three while prompts used the prompt-attention kernel)
    const small = await loadGenerator(model, { device: 'cuda', dtype: 'f32', maxBatch: 8, prefillChunk: 32, blockSize: 4, kvBlocks: 30, batchInvariant: true });
    assert.deepEqual(tokensOf(await together(small, work, 2, 4)), tokensOf(got), 'a pool too small for the load');
    assert.ok(small.scheduler.stats().preemptions > 0 && small.scheduler.stats().swapOuts > 0, 'preempted caches were swapped out');
    // no swap space: preempted requests are recomputed, their generated tokens through a prompt pass
    const recomputed = await loadGenerator(model, { device: 'cuda', dtype: 'f32', maxBatch: 8, prefillChunk: 32, blockSize: 4, kvBlocks: 30, batchInvariant: true, swapSpace: 0 });
    assert.deepEqual(tokensOf(await together(recomputed, work, 3, 4)), tokensOf(got), 'preempted requests recomputed');
    assert.ok(recomputed.scheduler.stats().preemptions > 0 && recomputed.scheduler.stats().swapOuts === 0, 'preempted requests were recomputed');
    // a greedy request alone decodes one row with no logits processing: that step is a captured graph
    const backend = gpu.runtime.backend as CudaBackend;
    assert.ok(backend.graphNodes(gpu.runtime.graphKey(1, { process: false, logprobs: false, candidates: false })) > 10, 'decode steps replay a captured graph');
    for (const g of [gpu, small, recomputed]) {
      assert.equal(g.scheduler.stats().blocksUsed, 0);
      g.dispose();
    }
  });
});
