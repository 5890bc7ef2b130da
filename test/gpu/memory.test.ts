// A long run on the GPU: 2,000+ decode steps over many batches, with sampling; device memory stays flat
// (everything is planned at load: no allocation while generating).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { CudaBackend } from '../../src/backends/cuda/backend.js';
import { loadGenerator } from '../../src/index.js';
import { writeRandomGpt2 } from '../helpers/random-model.js';
import { FIXTURES } from '../helpers/fixtures.js';
import { noGpu } from './helpers.js';

const skip = noGpu();
const dir = mkdtempSync(join(tmpdir(), 'peregrine-gpu-mem-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('2,000 decode steps over many batches keep GPU memory flat', { skip: skip ?? false }, async () => {
  writeRandomGpt2(dir, { hidden: 128, layers: 2, heads: 4, positions: 512 }, join(FIXTURES, 'tokenizers', 'gpt2'), 'F16');
  const gen = await loadGenerator(dir, { device: 'cuda', dtype: 'f16', maxBatch: 8, maxSeqLen: 512 });
  const backend = gen.runtime.backend as CudaBackend;
  const batches = [1, 3, 8, 5, 2, 8, 1, 4];
  const prompt = (i: number, len: number) => Array.from({ length: len }, (_, j) => (i * 131 + j * 7) % 50000);
  // warm-up: every batch size once (graphs captured, GEMMs tuned)
  for (const b of batches) await gen.generateIds(Array.from({ length: b }, (_, i) => prompt(i, 5)), { maxNewTokens: 3, stopAtEos: false });
  const before = backend.freeMemory();
  const plan = gen.runtime.memory();
  let steps = 0;
  for (let round = 0; steps < 2000; round++) {
    const b = batches[round % batches.length];
    const r = await gen.generateIds(Array.from({ length: b }, (_, i) => prompt(i + round, 3 + ((round * 7 + i) % 40))), {
      maxNewTokens: 150, stopAtEos: false, temperature: 0.9, topK: 50, seed: round,
    });
    assert.ok(r.every((x) => x.ids.length === 150));
    steps += 149;
  }
  const afterFree = backend.freeMemory();
  assert.deepEqual(gen.runtime.memory(), plan, 'the memory plan did not change');
  assert.ok(Math.abs(before - afterFree) <= 2 * 2 ** 20, `free GPU memory moved from ${before} to ${afterFree} over ${steps} steps`);
  gen.dispose();
});
