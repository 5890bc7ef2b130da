// The config variants against Hugging Face transformers on the CPU: checkpoints and references made by
// tools/reference/make_config_fixtures.py (attention scales, reorder_and_upcast_attn, LayerNorm epsilon,
// activation functions, for GPT-2 and BERT). Skipped, saying how to make them, while they are absent.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadEmbedder, loadGenerator } from '../src/index.js';
import { assertClose, flat } from './helpers/close.js';
import { VARIANT_FIXTURES, variantFixtures } from './helpers/config-fixtures.js';
import { reference } from './helpers/fixtures.js';
import { allLogits } from './helpers/logits.js';

const { names, skip } = variantFixtures();

describe('config variants match Hugging Face', { skip: skip ?? false }, () => {
  test('the fixtures hold GPT-2 and BERT variants', () => {
    assert.ok(names.some((n) => n.startsWith('gpt2-')) && names.some((n) => n.startsWith('bert-')), `found ${names.join(', ')}`);
  });

  for (const name of names) {
    const dir = join(VARIANT_FIXTURES, name);
    test(name, async () => {
      const ref = reference(join('config-variants', name));
      if (ref.kind === 'causal-lm') {
        const gen = await loadGenerator(dir, { device: 'cpu' });
        const V = gen.model.info.vocabSize;
        for (const f of ref.forward as { ids: number[]; logits: number[][] }[]) {
          const logits = await allLogits(gen, f.ids);
          f.logits.forEach((row, p) => assertClose(logits.subarray(p * V, (p + 1) * V), row, 1e-4, `prompt of ${f.ids.length}, position ${p}`));
        }
        const greedy = ref.greedy as { ids: number[]; generated: number[] }[];
        const results = await gen.generateIds(greedy.map((g) => g.ids), { maxNewTokens: 32, stopAtEos: false });
        results.forEach((r, i) => assert.deepEqual(r.ids, greedy[i].generated, `greedy tokens of prompt ${i}`));
        gen.dispose();
      } else {
        const emb = await loadEmbedder(dir, { device: 'cpu' });
        const seqs = (ref.inputs as { ids: number[] }[]).map((x) => Int32Array.from(x.ids));
        const H = emb.model.info.hidden;
        const out = emb.model.encode(seqs, { pooling: 'mean' });
        (ref.hidden as number[][][]).forEach((h, i) => assertClose(out.hidden.subarray(out.starts[i] * H, (out.starts[i] + out.lengths[i]) * H), flat(h), 1e-4, `hidden ${i}`));
        assertClose(out.pooled!, flat(ref.mean), 1e-4, 'mean pooled');
        emb.dispose();
      }
    });
  }
});
