// Config variants on the GPU: every GPT-2 and BERT variant of test/config.test.ts (attention scales per layer,
// reorder_and_upcast_attn, LayerNorm epsilon, activation functions) against the CPU backend, in fp32 (greedy
// tokens identical, decode replayed from graphs) and fp16; and the Hugging Face config-variant fixtures
// (tools/reference/make_config_fixtures.py) where they have been made.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadEmbedder, loadGenerator } from '../../src/index.js';
import { writeBert, writeGpt2 } from '../helpers/checkpoints.js';
import { assertClose, flat } from '../helpers/close.js';
import { VARIANT_FIXTURES, variantFixtures } from '../helpers/config-fixtures.js';
import { reference } from '../helpers/fixtures.js';
import { allLogits } from '../helpers/logits.js';
import { BERT_VARIANTS, GPT2_VARIANTS } from '../helpers/variants.js';
import { noGpu } from './helpers.js';

const skip = noGpu();
const root = mkdtempSync(join(tmpdir(), 'peregrine-gpu-config-'));
after(() => rmSync(root, { recursive: true, force: true }));
const TOL = { f32: 1e-4, f16: 2e-2 } as const;
const PROMPTS = [[5, 17, 3, 88, 42, 9, 60, 1, 77], [2], [40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57]];

for (const dtype of ['f32', 'f16'] as const) {
  describe(`GPT-2 config variants on the GPU in ${dtype}, against the CPU`, { skip: skip ?? false }, () => {
    for (const [name, changes] of GPT2_VARIANTS) {
      test(name, async () => {
        const dir = join(root, `gpt2-${dtype}-${name.replace(/\W+/g, '-')}`);
        writeGpt2(dir, changes);
        const cpu = await loadGenerator(dir, { device: 'cpu' });
        const gpu = await loadGenerator(dir, { device: 'cuda', dtype });
        const V = cpu.model.info.vocabSize;
        const want = await allLogits(cpu, PROMPTS[0]), got = await allLogits(gpu, PROMPTS[0]);
        for (let p = 0; p < PROMPTS[0].length; p++) assertClose(got.subarray(p * V, (p + 1) * V), want.subarray(p * V, (p + 1) * V), TOL[dtype], `position ${p}`);
        if (dtype === 'f32') {
          const opts = { maxNewTokens: 12, stopAtEos: false };
          const a = await gpu.generateIds(PROMPTS, opts), b = await cpu.generateIds(PROMPTS, opts);
          assert.deepEqual(a.map((r) => r.ids), b.map((r) => r.ids), 'greedy tokens, all prompts in one batch');
        }
        cpu.dispose();
        gpu.dispose();
      });
    }
  });

  describe(`BERT config variants on the GPU in ${dtype}, against the CPU`, { skip: skip ?? false }, () => {
    for (const [name, changes] of BERT_VARIANTS) {
      test(name, async () => {
        const dir = join(root, `bert-${dtype}-${name.replace(/\W+/g, '-')}`);
        writeBert(dir, changes, 3);
        const seqs = [Int32Array.of(2, 50, 7, 33, 90, 3), Int32Array.of(2, 11, 3)];
        const outs = [];
        for (const device of ['cpu', 'cuda'] as const) {
          const emb = await loadEmbedder(dir, { device, dtype: device === 'cuda' ? dtype : undefined });
          outs.push(emb.model.encode(seqs, { pooling: 'mean', classify: true }));
          emb.dispose();
        }
        assertClose(outs[1].hidden, outs[0].hidden, TOL[dtype], 'hidden states');
        assertClose(outs[1].pooled!, outs[0].pooled!, TOL[dtype], 'mean pooled');
        assertClose(outs[1].logits!, outs[0].logits!, TOL[dtype] * 2, 'classification logits');
      });
    }
  });
}

const fixtures = variantFixtures();
describe('Hugging Face config-variant fixtures on the GPU', { skip: skip ?? fixtures.skip ?? false }, () => {
  for (const dtype of ['f32', 'f16'] as const) {
    for (const name of fixtures.names) {
      test(`${name} in ${dtype}`, async () => {
        const dir = join(VARIANT_FIXTURES, name);
        const ref = reference(join('config-variants', name));
        const tol = dtype === 'f32' ? 1e-3 : 2e-2;
        if (ref.kind === 'causal-lm') {
          const gen = await loadGenerator(dir, { device: 'cuda', dtype });
          const V = gen.model.info.vocabSize;
          for (const f of ref.forward as { ids: number[]; logits: number[][] }[]) {
            const logits = await allLogits(gen, f.ids);
            f.logits.forEach((row, p) => assertClose(logits.subarray(p * V, (p + 1) * V), row, tol, `prompt of ${f.ids.length}, position ${p}`));
          }
          if (dtype === 'f32') {
            const greedy = ref.greedy as { ids: number[]; generated: number[] }[];
            const results = await gen.generateIds(greedy.map((g) => g.ids), { maxNewTokens: 32, stopAtEos: false });
            results.forEach((r, i) => assert.deepEqual(r.ids, greedy[i].generated, `greedy tokens of prompt ${i}`));
          }
          gen.dispose();
        } else {
          const emb = await loadEmbedder(dir, { device: 'cuda', dtype });
          const seqs = (ref.inputs as { ids: number[] }[]).map((x) => Int32Array.from(x.ids));
          const H = emb.model.info.hidden;
          const out = emb.model.encode(seqs, { pooling: 'mean' });
          (ref.hidden as number[][][]).forEach((h, i) => assertClose(out.hidden.subarray(out.starts[i] * H, (out.starts[i] + out.lengths[i]) * H), flat(h), tol, `hidden ${i}`));
          emb.dispose();
        }
      });
    }
  }
});
