// Decode attention over the paged KV cache (kernels/attention.cu: one query row per sequence, split over the keys by
// flash-decoding when the batch leaves the GPU idle) and the KV write: each key and value is read once per step, so
// a step's time is the cache's bytes over the bandwidth. GPT-2 1.5B (25 heads of 64) and Llama-3-8B (32 query heads
// over 8 KV heads of 128) at batch 1 to 64 and contexts up to 32768, blocks of 16 in order.
import type { AttentionShape } from '../../src/ops/backend.js';
import { copiesFor, type KernelCase, type Tensors } from './harness.js';

const BLOCK = 16;

/** [model, shape, batch, context] */
const CASES: [string, AttentionShape, number, number][] = [];
const gpt2: AttentionShape = { heads: 25, kvHeads: 25, headDim: 64, scale: 0.125, window: 0 };
const llama: AttentionShape = { heads: 32, kvHeads: 8, headDim: 128, scale: 1 / Math.sqrt(128), window: 0 };
for (const [batch, ctx] of [[1, 128], [1, 832], [16, 832], [64, 128], [64, 1024]]) CASES.push(['GPT-2 1.5B', gpt2, batch, ctx]);
for (const [batch, ctx] of [[1, 4096], [1, 32768], [64, 1024]]) CASES.push(['Llama-3-8B', llama, batch, ctx]);

export function* attention(t: Tensors): Generator<KernelCase> {
  const b = t.b;
  for (const [model, shape, batch, ctx] of CASES) {
    const W = shape.kvHeads * shape.headDim, H = shape.heads * shape.headDim, R = H + 2 * W;
    const perSeq = Math.ceil(ctx / BLOCK), cache = 2 * batch * perSeq * BLOCK * W * t.eb, copies = copiesFor(cache);
    const pools = Array.from({ length: copies }, () => [t.random([batch * perSeq, BLOCK, W]), t.random([batch * perSeq, BLOCK, W])]);
    const tables = t.ints(Int32Array.from({ length: batch * perSeq }, (_, i) => i), [batch, perSeq]);
    const slots = t.ints(Int32Array.from({ length: batch }, (_, i) => i)), keyLens = t.ints(new Int32Array(batch).fill(ctx));
    const qkv = t.random([batch, R]), out = t.buffer([batch, H]);
    yield {
      op: 'decodeAttention', shape: `${model}, ${batch} x ${ctx} keys`, bytes: 2 * batch * ctx * W * t.eb + (R + H) * batch * t.eb, copies,
      run: (i) => b.decodeAttention(out, qkv, pools[i][0], pools[i][1], tables, slots, keyLens, shape, batch),
    };
  }
  // the KV write of a prompt chunk: 8192 rows of Llama-3-8B, k and v read from the qkv rows and written into blocks
  const n = 8192, W = 1024, R = 6144, copies = copiesFor(4 * n * W * t.eb);
  const qkvs = Array.from({ length: copies }, () => t.random([n, R]));
  const k = t.buffer([n / BLOCK, BLOCK, W]), v = t.buffer([n / BLOCK, BLOCK, W]);
  const tables = t.ints(Int32Array.from({ length: n / BLOCK }, (_, i) => i), [1, n / BLOCK]);
  const slots = t.ints(new Int32Array(n)), positions = t.ints(Int32Array.from({ length: n }, (_, i) => i));
  yield { op: 'writeKV', shape: `${n} rows of 8 KV heads of 128`, bytes: 4 * n * W * t.eb, copies, run: (i) => b.writeKV(qkvs[i], k, v, tables, slots, positions, n) };
}
