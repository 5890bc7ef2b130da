// Quantized GGUF models (test/fixtures/gguf: Q8_0, Q4_0, and the K-quants written by tools/reference/kquants.py) on
// the GPU, their weights staying quantized, against the CPU backend running the same file (which dequantizes a row at
// a time): fp32 within 1e-3 with identical greedy tokens, fp16 and bf16 within 3e-2: passes of up to 8 rows round the
// activations to int8 per 32 values for the integer GEMV (as llama.cpp's MMVQ does; test/gpu/quant.test.ts bounds that
// rounding layer by layer), which the CPU does not.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadGenerator } from '../../src/index.js';
import { assertClose } from '../helpers/close.js';
import { fixture, reference } from '../helpers/fixtures.js';
import { allLogits } from '../helpers/logits.js';
import { noGpu } from './helpers.js';

const skip = noGpu();
const TOL = { f32: 1e-3, f16: 3e-2, bf16: 3e-2 } as const;
const FILES = ['llama-tiny-q8_0.gguf', 'llama-tiny-q4_0.gguf', 'llama-k-tiny-q4_k_m.gguf', 'llama-k-tiny-q5_k.gguf', 'llama-k-tiny-q6_k.gguf'];

interface Ref { prompts: { ids: number[] }[]; greedy: { ids: number[] }[] }

for (const file of FILES) {
  describe(`${file} on the GPU`, { skip: skip ?? false }, () => {
    const path = join(fixture('gguf'), file);
    const ref = reference<Ref>('llama-tiny');
    test('logits as the CPU computes them, in fp32, fp16 and bf16; greedy tokens identical in fp32', async () => {
      const cpu = await loadGenerator(path, { device: 'cpu' });
      // one prompt at a time: allLogits reads the logits of the generator's last pass
      const want: Float32Array[] = [];
      for (const p of ref.prompts) want.push(await allLogits(cpu, p.ids));
      const prompts = ref.greedy.map((g) => g.ids);
      const tokens = await cpu.generateIds(prompts, { maxNewTokens: 24, stopAtEos: false });
      for (const dtype of ['f32', 'f16', 'bf16'] as const) {
        const gpu = await loadGenerator(path, { device: 'cuda', dtype });
        try {
          assert.ok(gpu.model.weights().some((t) => /^q\d/.test(t.dtype)), 'weights stay quantized on the GPU');
          for (let i = 0; i < ref.prompts.length; i++) {
            assertClose(await allLogits(gpu, ref.prompts[i].ids), want[i], TOL[dtype], `${dtype}, prompt ${i}`);
          }
          if (dtype === 'f32') {
            const got = await gpu.generateIds(prompts, { maxNewTokens: 24, stopAtEos: false });
            got.forEach((r, i) => assert.deepEqual(r.ids, tokens[i].ids, `prompt ${i}`));
          }
        } finally {
          gpu.dispose();
        }
      }
    });
  });
}
