// The GPT-2, Llama-family and BERT-family fixtures on the GPU against the Hugging Face references: fp32 within 1e-3 with greedy
// tokens identical for 32 steps (decode steps replayed from a CUDA graph), fp16 and bf16 within 2e-2.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CudaBackend } from '../../src/backends/cuda/backend.js';
import { loadEmbedder, loadGenerator } from '../../src/index.js';
import { assertClose, flat } from '../helpers/close.js';
import { CAUSAL_FIXTURES, FAMILY_FIXTURES, fixture, reference, type FamilyRef } from '../helpers/fixtures.js';
import { allLogits } from '../helpers/logits.js';
import { noGpu } from './helpers.js';

const skip = noGpu();
const TOL = { f32: 1e-3, f16: 2e-2, bf16: 2e-2 } as const;

interface Gpt2Ref {
  forward: { ids: number[]; argmax: number[]; logits: number[][]; indices?: number[] }[];
  greedy: { ids: number[]; generated: number[] }[];
  /** how far Hugging Face's own fp16 and bf16 runs land from its fp32 logits (the Llama-family fixtures) */
  hf_dtype_error?: { f16: number; bf16: number };
}

/**
 * The tolerance in `dtype`: 1e-3 in fp32, and 2e-2 in fp16 and bf16 unless Hugging Face's own run in that dtype lands
 * further from fp32 than that (a tiny random model's 16-bit error varies), then 1.5 times Hugging Face's error. The
 * int4 checkpoints (AWQ, GPTQ) allow 3e-2 in 16 bits: passes of up to 8 rows round the activations to int8 per 32
 * values for the integer GEMV, as test/gpu/gguf.test.ts explains.
 */
function tolerance(ref: { hf_dtype_error?: { f16: number; bf16: number } }, dtype: keyof typeof TOL, name: string): number {
  if (dtype === 'f32') return TOL.f32;
  return Math.max(/awq|gptq/.test(name) ? 3e-2 : TOL[dtype], 1.5 * (ref.hf_dtype_error?.[dtype] ?? 0));
}

for (const dtype of ['f32', 'f16', 'bf16'] as const) {
  for (const name of CAUSAL_FIXTURES) {
    describe(`${name} on the GPU in ${dtype}`, { skip: skip ?? false }, () => {
      const ref = reference<Gpt2Ref>(name);

      test(`logits at every position within ${tolerance(ref, dtype, name)}`, async () => {
        const gen = await loadGenerator(fixture(name), { device: 'cuda', dtype });
        const V = gen.model.info.vocabSize;
        for (const f of ref.forward) {
          const logits = await allLogits(gen, f.ids);
          for (let pos = 0; pos < f.ids.length; pos++) {
            const row = logits.subarray(pos * V, (pos + 1) * V);
            const got = f.indices ? f.indices.map((i) => row[i]) : Array.from(row);
            assertClose(got, f.logits[pos], tolerance(ref, dtype, name), `prompt of ${f.ids.length}, position ${pos}`);
          }
        }
        gen.dispose();
      });

      if (dtype === 'f32') {
        test('greedy tokens identical for 32 steps, all prompts in one batch, decode replayed from a graph', async () => {
          const gen = await loadGenerator(fixture(name), { device: 'cuda', dtype });
          const results = await gen.generateIds(ref.greedy.map((g) => g.ids), { maxNewTokens: 32, stopAtEos: false });
          results.forEach((r, i) => assert.deepEqual(r.ids, ref.greedy[i].generated, `prompt ${i}`));
          const nodes = (gen.runtime.backend as CudaBackend).graphNodes(gen.runtime.graphKey(ref.greedy.length, { process: false, logprobs: false, candidates: false }));
          assert.ok(nodes > 10, `the decode step was captured as a graph (${nodes} nodes)`);
          // and again, each prompt alone
          for (const g of ref.greedy) {
            const [r] = await gen.generateIds([g.ids], { maxNewTokens: 32, stopAtEos: false });
            assert.deepEqual(r.ids, g.generated);
          }
          gen.dispose();
        });
      }
    });
  }

  for (const name of ['bert-tiny', 'bert-wide']) {
    describe(`${name} on the GPU in ${dtype}`, { skip: skip ?? false }, () => {
      test(`hidden states, pooling and classification within ${TOL[dtype]}`, async () => {
        const ref = reference<{ inputs: { ids: number[] }[]; hidden: number[][][]; cls: number[][]; mean: number[][]; logits?: number[][] }>(name);
        const emb = await loadEmbedder(fixture(name), { device: 'cuda', dtype });
        const seqs = ref.inputs.map((x) => Int32Array.from(x.ids));
        const H = emb.model.info.hidden;
        const out = emb.model.encode(seqs, { pooling: 'mean', classify: !!ref.logits });
        ref.hidden.forEach((h, i) => assertClose(out.hidden.subarray(out.starts[i] * H, (out.starts[i] + out.lengths[i]) * H), flat(h), TOL[dtype], `hidden ${i}`));
        assertClose(out.pooled!, flat(ref.mean), TOL[dtype], 'mean pooled');
        if (ref.logits) assertClose(out.logits!, flat(ref.logits), TOL[dtype], 'classification logits');
        const cls = emb.model.encode(seqs, { pooling: 'cls' }).pooled!;
        assertClose(cls, flat(ref.cls), TOL[dtype], 'cls pooled');
        // without the hidden states the pass runs eagerly, is then captured, then replayed: the same vectors each time
        const runs = [0, 1, 2].map(() => emb.model.encode(seqs, { pooling: 'mean', classify: !!ref.logits, hidden: false }));
        assert.equal(runs[0].hidden.length, 0, 'the hidden states stay on the device');
        for (const r of runs) {
          assert.deepEqual(Array.from(r.pooled!), Array.from(out.pooled!), 'mean pooled, graphed');
          if (ref.logits) assert.deepEqual(Array.from(r.logits!), Array.from(out.logits!), 'classification logits, graphed');
        }
        // other tokens of the same lengths replay the same graph over the new inputs
        const other = seqs.map((s) => s.map((id, i) => (i === 0 ? id : (id * 7 + i) % emb.model.info.vocabSize)));
        const eager = emb.model.encode(other, { pooling: 'mean', classify: !!ref.logits });
        const replayed = emb.model.encode(other, { pooling: 'mean', classify: !!ref.logits, hidden: false });
        assert.deepEqual(Array.from(replayed.pooled!), Array.from(eager.pooled!), 'mean pooled of other tokens, replayed');
        if (ref.logits) assert.deepEqual(Array.from(replayed.logits!), Array.from(eager.logits!), 'classification logits of other tokens, replayed');
        emb.dispose();
      });
    });
  }
}

for (const dtype of ['f32', 'f16', 'bf16'] as const) {
  for (const [name] of FAMILY_FIXTURES) {
    describe(`${name} on the GPU in ${dtype}`, { skip: skip ?? false }, () => {
      const ref = reference<FamilyRef>(name);
      const tol = tolerance(ref, dtype, name);
      test(`hidden states, pooling and the checkpoint's head within ${tol}`, async () => {
        const emb = await loadEmbedder(fixture(name), { device: 'cuda', dtype });
        const seqs = ref.inputs.map((x) => Int32Array.from(x.ids));
        const H = emb.model.info.hidden, V = emb.model.info.vocabSize;
        const starts = seqs.map((_, i) => seqs.slice(0, i).reduce((a, s) => a + s.length, 0));
        const lmRows = (ref.lm_rows ?? []).map((r) => starts[r.input] + r.position);
        const out = emb.model.encode(seqs, { pooling: 'mean', classify: !!ref.logits, tokens: ref.token_logits ? true : ref.lm_rows ? lmRows : undefined });
        ref.hidden?.forEach((h, i) => assertClose(out.hidden.subarray(out.starts[i] * H, (out.starts[i] + out.lengths[i]) * H), flat(h), tol, `hidden ${i}`));
        assertClose(out.pooled!, flat(ref.mean), tol, 'mean pooled');
        if (ref.logits) assertClose(out.logits!, flat(ref.logits), tol, 'classification logits');
        if (ref.token_logits) assertClose(out.tokenLogits!, flat(ref.token_logits), tol, 'token logits');
        ref.lm_rows?.forEach((r, k) => assertClose(out.tokenLogits!.subarray(k * V, (k + 1) * V), r.logits, tol, `LM logits of input ${r.input} at ${r.position}`));
        if (ref.max) assertClose(emb.model.encode(seqs, { pooling: 'max' }).pooled!, flat(ref.max), tol, 'max pooled');
        emb.dispose();
      });
    });
  }
}

describe('planning GPU memory', { skip: skip ?? false }, () => {
  test('asking for more than fits fails at load, before allocating, saying how much and what to lower', async () => {
    await assert.rejects(loadGenerator(fixture('gpt2-wide'), { device: 'cuda', maxBatch: 20_000_000, maxSeqLen: 128 }), (err: unknown) => {
      const e = err as { code?: string; message: string };
      assert.equal(e.code, 'out-of-memory', e.message);
      assert.match(e.message, /memory plan needs (at least )?[\d.]+ [GT]iB \(.*logits.*\) but the cuda device has .* available; lower --max-batch \(20000000\) or --max-seq-len \(128\)/);
      assert.ok(!e.message.includes('\n'));
      return true;
    });
  });

  test('inspect --device cuda prints the plan in the compute dtype', async () => {
    const { inspectModel } = await import('../../src/index.js');
    // gpt2-tiny: its tokenizer fits its vocabulary (inspect refuses gpt2-wide's, which does not)
    const r = await inspectModel(fixture('gpt2-tiny'), { device: 'cuda', dtype: 'bf16', maxBatch: 4, maxSeqLen: 64 });
    assert.equal(r.device, 'cuda');
    assert.equal(r.dtype, 'bf16');
    const kv = r.memory.regions.find((x) => x.name === 'kv-cache')!.bytes;
    // 4 sequences of 64 tokens in blocks of 16, and the padding block: 17 blocks, 3 layers of K and V, hidden 8, bf16
    assert.equal(kv, (4 * (64 / 16) + 1) * 16 * 2 * 3 * 8 * 2);
  });
});

describe('GEMM algorithm choice', { skip: skip ?? false }, () => {
  test('is timed once per shape, kept on disk, and reused by the next load', async () => {
    const { mkdtempSync, existsSync, readFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const cache = mkdtempSync(join(tmpdir(), 'peregrine-gemm-'));
    const saved = process.env.PEREGRINE_CACHE;
    process.env.PEREGRINE_CACHE = cache;
    try {
      const run = async () => {
        const gen = await loadGenerator(fixture('gpt2-wide'), { device: 'cuda', dtype: 'f16' });
        // 12 prompts: batch and prompt GEMMs go through cuBLASLt
        const r = await gen.generateIds(Array.from({ length: 12 }, (_, i) => [i + 1, 7, 9]), { maxNewTokens: 4, stopAtEos: false });
        const blas = (gen.runtime.backend as CudaBackend).ctx.blas;
        gen.dispose();
        return { ids: r.map((x) => x.ids), tunings: blas.tunings, file: blas.cacheFile };
      };
      const first = await run();
      assert.ok(first.tunings > 0, 'the first load timed its GEMM shapes');
      assert.ok(existsSync(first.file) && Object.keys(JSON.parse(readFileSync(first.file, 'utf8'))).length >= first.tunings);
      const second = await run();
      assert.equal(second.tunings, 0, 'the second load took every algorithm from the cache');
      assert.deepEqual(second.ids, first.ids);
    } finally {
      if (saved === undefined) delete process.env.PEREGRINE_CACHE;
      else process.env.PEREGRINE_CACHE = saved;
      rmSync(cache, { recursive: true, force: true });
    }
  });
});
