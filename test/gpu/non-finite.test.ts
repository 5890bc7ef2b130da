// Non-finite logits on the GPU: the selectCandidates kernels' status goes back with the drawn ids (no read of
// its own), stops the broken request in prefill and in graph-replayed decode steps (launched ahead) while the
// batch goes on, and an fp16 overflow is told apart by its advice (bf16 and f32 run the same checkpoint).
// Encoders refuse NaN outputs. The CPU side of the same is test/non-finite.test.ts.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadEmbedder, loadGenerator, PeregrineError, type GenerateOptions } from '../../src/index.js';
import { writeBert, writeGpt2 } from '../helpers/checkpoints.js';
import { noGpu } from './helpers.js';

const skip = noGpu();
const root = mkdtempSync(join(tmpdir(), 'peregrine-gpu-nan-'));
after(() => rmSync(root, { recursive: true, force: true }));

function nonFinite(pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof PeregrineError, `expected a PeregrineError, got ${(err as Error)?.stack ?? err}`);
    assert.equal(err.code, 'non-finite', err.message);
    assert.match(err.message, pattern);
    return true;
  };
}

describe('non-finite logits on the GPU', { skip: skip ?? false }, () => {
  const nanGpt2 = writeGpt2(join(root, 'nan-gpt2'), {}, { nan: true }).dir;
  const clean = writeGpt2(join(root, 'clean')).dir;
  const poisoned = writeGpt2(join(root, 'poisoned'), {}, { edit: (w) => w.get('wpe.weight')!.fill(NaN, 10 * 32, 11 * 32) }).dir;

  for (const dtype of ['f32', 'f16', 'bf16'] as const) {
    test(`NaN weights, every kind of request, in ${dtype}`, async () => {
      const gen = await loadGenerator(nanGpt2, { device: 'cuda', dtype });
      const kinds: GenerateOptions[] = [{}, { temperature: 0.8, seed: 1 }, { topK: 5, seed: 1 }, { repetitionPenalty: 1.2 }, { logprobs: true }, { numBeams: 2 }];
      for (const o of kinds) await assert.rejects(gen.generateIds([[1, 2, 3]], { maxNewTokens: 4, ...o }), nonFinite(/for prompt 0 at 3 tokens/), JSON.stringify(o));
      assert.equal(gen.scheduler.stats().blocksUsed, 0);
      gen.dispose();
    });

    test(`prefill and graph-replayed decode steps; the rest of the batch goes on; in ${dtype}`, async () => {
      const gen = await loadGenerator(poisoned, { device: 'cuda', dtype });
      const opts = { maxNewTokens: 10, stopAtEos: false };
      const short = [3, 1, 4], shortOpts = { maxNewTokens: 5, stopAtEos: false };
      let drawn = 0;
      const results = await Promise.allSettled([
        gen.generateIds([Array.from({ length: 12 }, (_, i) => i + 20)], opts),
        gen.generateIds([short], shortOpts),
        gen.generateIds([[7, 8, 9, 10, 11]], { ...opts, onToken: () => drawn++ }),
      ]);
      nonFinite(/at 12 tokens/)((results[0] as PromiseRejectedResult).reason);
      nonFinite(/at 11 tokens/)((results[2] as PromiseRejectedResult).reason);
      assert.equal(drawn, 6);
      assert.equal(results[1].status, 'fulfilled');
      if (dtype === 'f32') {
        const ref = await loadGenerator(clean, { device: 'cpu' });
        const [want] = await ref.generateIds([short], shortOpts);
        assert.deepEqual((results[1] as PromiseFulfilledResult<{ ids: number[] }[]>).value[0].ids, want.ids);
      }
      // a run of several decode steps in one batch (launched ahead, replayed from a graph) after the failures
      const r = await gen.generateIds([short, [5, 6]], shortOpts);
      assert.equal(r.length, 2);
      assert.equal(gen.scheduler.stats().blocksUsed, 0);
      gen.dispose();
    });
  }

  test('an overflow in f16 is reported with its advice; bf16 and f32 run the same checkpoint', async () => {
    // MLP outputs of order 1e5: beyond fp16's 65504, nothing for fp32 or bf16
    const big = writeGpt2(join(root, 'overflow'), {}, {
      edit: (w) => {
        for (let l = 0; l < 3; l++) {
          w.get(`h.${l}.mlp.c_fc.weight`)!.forEach((x, i, a) => (a[i] = x * 10));
          w.get(`h.${l}.mlp.c_proj.weight`)!.forEach((x, i, a) => (a[i] = x * 1e4));
        }
      },
    }).dir;
    const prompt = [[5, 17, 3, 88]], opts = { maxNewTokens: 4, stopAtEos: false };
    const f16 = await loadGenerator(big, { device: 'cuda', dtype: 'f16' });
    await assert.rejects(f16.generateIds(prompt, opts), nonFinite(/overflowed in f16; try --dtype bf16 or f32$/));
    f16.dispose();
    const cpu = await loadGenerator(big, { device: 'cpu' });
    const [want] = await cpu.generateIds(prompt, opts);
    for (const dtype of ['f32', 'bf16'] as const) {
      const gen = await loadGenerator(big, { device: 'cuda', dtype });
      const [r] = await gen.generateIds(prompt, opts);
      if (dtype === 'f32') assert.deepEqual(r.ids, want.ids);
      else assert.equal(r.ids.length, 4);
      gen.dispose();
    }
  });

  test('encoders refuse NaN outputs', async () => {
    const bert = writeBert(join(root, 'nan-bert'), {}, 2, { nan: true }).dir;
    for (const dtype of ['f32', 'f16'] as const) {
      const emb = await loadEmbedder(bert, { device: 'cuda', dtype });
      assert.throws(() => emb.model.encode([Int32Array.of(2, 5, 3)], { pooling: 'mean', classify: true }), nonFinite(/last hidden states of input 0/));
      emb.dispose();
    }
  });
});
