// Row movers: the embedding lookup (kernels/embedding.cu), rotary embedding in place (kernels/rotary.cu), and the
// gathers and mean pooling of kernels/rows.cu. Each reads and writes its rows once: bound by memory.
import { f32Table } from '../../src/models/weights.js';
import type { AttentionShape } from '../../src/ops/backend.js';
import { copiesFor, type KernelCase, type Tensors } from './harness.js';

/** n ids in [0, V), different for each copy. */
function randomIds(n: number, V: number, seed: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729) % V);
}

export function* embedding(t: Tensors): Generator<KernelCase> {
  const b = t.b;
  // [vocabulary, hidden, positions (0: none, as Llama)]
  for (const [V, H, P] of [[50257, 1600, 1024], [128256, 4096, 0]]) {
    const [tok, pos] = t.forFamily(() => [t.random([V, H]), P ? t.random([P, H]) : null]);
    for (const n of [1, 64, 8192]) {
      const per = (P ? 3 : 2) * n * H * t.eb, copies = copiesFor(per);
      const ids = Array.from({ length: copies }, (_, c) => t.ints(randomIds(n, V, c)));
      const positions = t.ints(Int32Array.from({ length: n }, (_, i) => i % Math.max(P, 1)));
      const outs = Array.from({ length: copies }, () => t.buffer([n, H]));
      yield { op: `embed${P ? ' + positions' : ''}`, shape: `${n} of [${V}, ${H}]`, bytes: per, copies, run: (i) => b.embed(outs[i], ids[i], positions, tok, pos, null, null, n) };
    }
  }
}

export function* rotary(t: Tensors): Generator<KernelCase> {
  const b = t.b;
  // Llama-3-8B: 32 query heads over 8 KV heads of 128; with Qwen3's per-head RMSNorm too
  const shape: AttentionShape = { heads: 32, kvHeads: 8, headDim: 128, scale: 1, window: 0 };
  const R = (shape.heads + 2 * shape.kvHeads) * shape.headDim, turned = (shape.heads + shape.kvHeads) * shape.headDim;
  for (const norms of [false, true]) {
    for (const n of [1, 64, 8192]) {
      const per = 2 * n * turned * t.eb, copies = copiesFor(per);
      const invFreq = t.keep(f32Table(b, Float32Array.from({ length: 64 }, (_, i) => 1 / 500000 ** (i / 64))));
      const rot = { invFreq, dims: 128, scale: 1, dynamic: null };
      const hn = norms ? { q: t.random([128]), k: t.random([128]), eps: 1e-6 } : null;
      const qkvs = Array.from({ length: copies }, () => t.random([n, R]));
      const positions = t.ints(Int32Array.from({ length: n }, (_, i) => 100 + i)), lengths = t.ints(Int32Array.from({ length: n }, (_, i) => 101 + i));
      yield { op: `rotary${norms ? ' + head RMSNorm' : ''}`, shape: `${n} rows, 32 / 8 heads of 128`, bytes: per, copies, run: (i) => b.rotary(qkvs[i], positions, lengths, rot, shape, hn, n) };
    }
  }
}

export function* rows(t: Tensors): Generator<KernelCase> {
  const b = t.b;
  for (const [n, H] of [[64, 1600], [8192, 4096]]) {
    const per = 2 * n * H * t.eb, copies = copiesFor(per);
    const xs = Array.from({ length: copies }, () => t.random([n, H])), outs = Array.from({ length: copies }, () => t.buffer([n, H]));
    // every row to another place (a reorder, as beams and the scheduler's compaction do)
    const src = t.ints(Int32Array.from({ length: n }, (_, i) => (i * 31) % n)), dst = t.ints(Int32Array.from({ length: n }, (_, i) => i));
    yield { op: 'gatherRows', shape: `[${n}, ${H}]`, bytes: per, copies, run: (i) => b.gatherRows(outs[i], xs[i], src, dst, n) };
  }
  // BERT-base sentence embeddings: 64 sequences of 128 rows of 768 pooled
  const [seqs, L, H] = [64, 128, 768];
  const per = (seqs * L + seqs) * H * t.eb, copies = copiesFor(per);
  const xs = Array.from({ length: copies }, () => t.random([seqs * L, H])), outs = Array.from({ length: copies }, () => t.buffer([seqs, H]));
  const starts = t.ints(Int32Array.from({ length: seqs }, (_, i) => i * L)), lengths = t.ints(new Int32Array(seqs).fill(L));
  yield { op: 'meanPool', shape: `${seqs} x [${L}, ${H}]`, bytes: per, copies, run: (i) => b.meanPool(outs[i], xs[i], starts, lengths, seqs) };
}
