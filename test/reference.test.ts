// The CPU backend against Hugging Face transformers (fixtures made by tools/reference/make_fixtures.py).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadEmbedder, loadGenerator } from '../src/index.js';
import { assertClose, flat } from './helpers/close.js';
import { CAUSAL_FIXTURES, fixture, reference } from './helpers/fixtures.js';
import { allLogits } from './helpers/logits.js';

interface Gpt2Ref {
  prompts: { text?: string; ids: number[] }[];
  forward: { ids: number[]; logsumexp: number[]; argmax: number[]; logits: number[][]; indices?: number[] }[];
  greedy: { ids: number[]; generated: number[] }[];
}

interface BertRef {
  inputs: { text?: string; ids: number[] }[];
  hidden: number[][][];
  cls: number[][];
  mean: number[][];
  cls_normalized: number[][];
  mean_normalized: number[][];
  logits?: number[][];
}

function logsumexp(row: Float32Array): number {
  let max = -Infinity;
  for (const x of row) max = Math.max(max, x);
  let s = 0;
  for (const x of row) s += Math.exp(x - max);
  return max + Math.log(s);
}

for (const name of CAUSAL_FIXTURES) {
  describe(`${name} matches Hugging Face`, async () => {
    const ref = reference<Gpt2Ref>(name);
    const gen = await loadGenerator(fixture(name), { device: 'cpu' });
    const V = gen.model.info.vocabSize;

    test('tokenization', () => {
      for (const p of ref.prompts) if (p.text !== undefined) assert.deepEqual(gen.tokenizer.encode(p.text), p.ids, p.text);
    });

    test('logits at every position within 1e-4', async () => {
      for (const f of ref.forward) {
        const logits = await allLogits(gen, f.ids);
        for (let pos = 0; pos < f.ids.length; pos++) {
          const row = logits.subarray(pos * V, (pos + 1) * V);
          const got = f.indices ? f.indices.map((i) => row[i]) : Array.from(row);
          assertClose(got, f.logits[pos], 1e-4, `${name} prompt of ${f.ids.length} tokens, position ${pos}`);
          // the full row, through its logsumexp and argmax
          assert.ok(Math.abs(logsumexp(row) - f.logsumexp[pos]) <= 1e-4 * Math.max(1, Math.abs(f.logsumexp[pos])), `logsumexp at ${pos}`);
          assert.equal(argmaxOf(row), f.argmax[pos], `argmax at ${pos}`);
        }
      }
    });

    test('greedy tokens identical for 32 steps, all prompts in one batch', async () => {
      const results = await gen.generateIds(ref.greedy.map((g) => g.ids), { maxNewTokens: 32, stopAtEos: false });
      results.forEach((r, i) => assert.deepEqual(r.ids, ref.greedy[i].generated, `prompt ${i}`));
    });

    test('greedy tokens identical when each prompt runs alone', async () => {
      for (const g of ref.greedy) {
        const [r] = await gen.generateIds([g.ids], { maxNewTokens: 32, stopAtEos: false });
        assert.deepEqual(r.ids, g.generated);
      }
    });
  });
}

function argmaxOf(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

for (const name of ['bert-tiny', 'bert-wide']) {
  describe(`${name} matches Hugging Face`, async () => {
    const ref = reference<BertRef>(name);
    const emb = await loadEmbedder(fixture(name), { device: 'cpu' });
    const seqs = ref.inputs.map((x) => Int32Array.from(x.ids));

    test('tokenization', () => {
      for (const x of ref.inputs) if (x.text !== undefined) assert.deepEqual(emb.tokenizer.encode(x.text), x.ids, x.text);
    });

    test('last hidden states within 1e-4 (packed batch of different lengths)', () => {
      const out = emb.model.encode(seqs, {});
      const H = emb.model.info.hidden;
      ref.hidden.forEach((h, i) => {
        const got = out.hidden.subarray(out.starts[i] * H, (out.starts[i] + out.lengths[i]) * H);
        assertClose(got, flat(h), 1e-4, `input ${i} hidden states`);
      });
    });

    test('CLS and mean pooling, plain and L2-normalized', () => {
      const H = emb.model.info.hidden;
      for (const pooling of ['cls', 'mean'] as const) {
        const pooled = emb.model.encode(seqs, { pooling }).pooled!;
        ref[pooling].forEach((v, i) => assertClose(pooled.subarray(i * H, (i + 1) * H), v, 1e-4, `${pooling} pooled ${i}`));
      }
      if (ref.inputs.every((x) => x.text !== undefined)) {
        const texts = ref.inputs.map((x) => x.text!);
        for (const pooling of ['cls', 'mean'] as const) {
          const vecs = emb.embed(texts, { pooling, normalize: true });
          vecs.forEach((v, i) => assertClose(v, ref[`${pooling}_normalized`][i], 1e-4, `${pooling} normalized ${i}`));
        }
      }
    });

    if (ref.logits) {
      test('sequence-classification logits within 1e-4', () => {
        const out = emb.model.encode(seqs, { classify: true });
        assertClose(out.logits!, flat(ref.logits), 1e-4, 'classification logits');
        // pooling and classification in one pass
        const both = emb.model.encode(seqs, { pooling: 'mean', classify: true });
        assertClose(both.pooled!, flat(ref.mean), 1e-4, 'mean pooled with classification');
        assertClose(both.logits!, flat(ref.logits), 1e-4, 'classification with mean pooling');
        const labels = emb.classify(ref.inputs.map((x) => x.text!));
        labels.forEach((c, i) => {
          assertClose(c.logits, ref.logits![i], 1e-4, `classify() logits ${i}`);
          assert.equal(c.label, `LABEL_${argmaxOf(Float32Array.from(ref.logits![i]))}`);
        });
      });
    }
  });
}
