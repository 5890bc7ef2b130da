// The padding-free encoder at scale on the GPU against the CPU backend: a random BERT with 512 positions over one pass of
// 128 sequences whose lengths mix 1 to 512 (packed: no padding, the tensor-core attention in 16 bits reading keys from
// the rows), and over one sequence of 512; fp32 within 1e-3, fp16 and bf16 within 2e-2. The pass without hidden states
// (replayed from a CUDA graph the second time) gives the same vectors as the eager one.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadEmbedder } from '../../src/index.js';
import { assertClose } from '../helpers/close.js';
import { writeRandomBert } from '../helpers/random-model.js';
import { noGpu } from './helpers.js';

const skip = noGpu();
const root = mkdtempSync(join(tmpdir(), 'peregrine-gpu-encoder-'));
after(() => rmSync(root, { recursive: true, force: true }));
const TOL = { f32: 1e-3, f16: 2e-2, bf16: 2e-2 } as const;
const V = 1000, P = 512;

/** 128 lengths spread over 1 .. 512 (both ends included), in no order. */
const MIXED = Array.from({ length: 128 }, (_, i) => (i === 0 ? 512 : i === 1 ? 1 : 1 + ((i * 389) % P)));
const ids = (lengths: number[]) => lengths.map((len, s) => Int32Array.from({ length: len }, (_, i) => (s * 131 + i * 17 + 1) % V));

describe('the encoder on the GPU against the CPU, batches of 128 mixed lengths and of one', { skip: skip ?? false }, () => {
  // head size 64: the tensor-core prompt attention's most common size
  const dir = join(root, 'bert');
  writeRandomBert(dir, { vocab: V, hidden: 128, heads: 2, layers: 2, positions: P, labels: 3 });

  for (const [name, lengths] of [['128 sequences of 1 to 512 tokens', MIXED], ['one sequence of 512 tokens', [P]]] as [string, number[]][]) {
    test(name, async () => {
      assert.ok(lengths.includes(512) && (lengths.length === 1 || lengths.includes(1)));
      const seqs = ids(lengths);
      const cpu = await loadEmbedder(dir, { device: 'cpu' });
      const want = cpu.model.encode(seqs, { pooling: 'mean', classify: true });
      cpu.dispose();
      for (const dtype of ['f32', 'f16', 'bf16'] as const) {
        const gpu = await loadEmbedder(dir, { device: 'cuda', dtype });
        const got = gpu.model.encode(seqs, { pooling: 'mean', classify: true });
        assertClose(got.hidden, want.hidden, TOL[dtype], `hidden states in ${dtype}`);
        assertClose(got.pooled!, want.pooled!, TOL[dtype], `mean pooled in ${dtype}`);
        assertClose(got.logits!, want.logits!, TOL[dtype], `classification logits in ${dtype}`);
        for (let run = 0; run < 2; run++) {
          const graphed = gpu.model.encode(seqs, { pooling: 'mean', classify: true, hidden: false });
          assert.deepEqual(Array.from(graphed.pooled!), Array.from(got.pooled!), `mean pooled without hidden states, run ${run}, ${dtype}`);
          assert.deepEqual(Array.from(graphed.logits!), Array.from(got.logits!), `logits without hidden states, run ${run}, ${dtype}`);
        }
        gpu.dispose();
      }
    });
  }
});
