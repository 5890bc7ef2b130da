// Attention over a paged KV cache: the reference for kernels/attention.cu. Each layer's cache is
// [blocks, blockSize, width = kvHeads * headDim]; sequence s keeps position p in block blockTables[s, p / blockSize],
// row p % blockSize. Queries come from packed qkv rows [tokens, (heads + 2 kvHeads) headDim] (q | k | v).
import type { AttentionShape } from '../../ops/backend.js';


export interface Paged {
  k: Float32Array;
  v: Float32Array;
  /** [slots, maxBlocks] */
  tables: Int32Array;
  maxBlocks: number;
  blockSize: number;
  /** values per cached token (kvHeads * headDim) */
  width: number;
}

/** Offset of (slot, position) in a cache. */
export function cacheOffset(c: Paged, slot: number, position: number): number {
  const block = c.tables[slot * c.maxBlocks + Math.floor(position / c.blockSize)];
  return (block * c.blockSize + (position % c.blockSize)) * c.width;
}

/** Copies the k and v parts of each token's qkv row (its last 2 * width values) to its sequence and position of the caches. */
export function writeKV(c: Paged, qkv: Float32Array, rowWidth: number, slots: Int32Array, positions: Int32Array, n: number): void {
  const W = c.width;
  for (let t = 0; t < n; t++) {
    const src = t * rowWidth + rowWidth - 2 * W;
    const dst = cacheOffset(c, slots[t], positions[t]);
    for (let i = 0; i < W; i++) {
      c.k[dst + i] = qkv[src + i];
      c.v[dst + i] = qkv[src + W + i];
    }
  }
}

/**
 * T5's bucket of a key at `distance` = key position - query position (Hugging Face's
 * T5Attention._relative_position_bucket, with its float32 arithmetic for the logarithmic buckets).
 */
export function relativeBucket(distance: number, buckets: number, maxDistance: number, bidirectional: boolean): number {
  let bucket = 0, n = buckets, d: number;
  if (bidirectional) {
    n = Math.floor(n / 2);
    if (distance > 0) bucket += n;
    d = Math.abs(distance);
  } else {
    d = -Math.min(distance, 0);
  }
  const exact = Math.floor(n / 2);
  if (d < exact) return bucket + d;
  const f = Math.fround, ratio = f(Math.log(f(d / exact)));
  const large = Math.trunc(f(f(ratio / f(Math.log(maxDistance / exact))) * (n - exact)));
  return bucket + Math.min(exact + large, n - 1);
}

/** Where a pass's queries are and which keys each attends to. */
export interface Queries {
  /** values per row of the q tensor; q of head h starts at h * headDim */
  rowWidth: number;
  slots: Int32Array;
  /** keys of row t: keyLens[t], or (bySlot) keyLens[slots[t]] */
  keyLens: Int32Array;
  bySlot: boolean;
  /** T5's bias: its table [buckets, heads] and each row's position */
  bias: { table: Float32Array; positions: Int32Array; buckets: number; maxDistance: number; bidirectional: boolean } | null;
}

/**
 * out[t, head] = softmax(q . k_j * scale (+ bias)) . v_j over keys j < the row's key count of sequence slots[t] (the
 * last `window` of them when shape.window > 0); query head h reads KV head h / (heads / kvHeads).
 */
export function attend(
  c: Paged, out: Float32Array, q: Float32Array, rows: Queries, shape: AttentionShape, n: number, scores: Float32Array, rowsOf: Int32Array,
): void {
  const { heads, kvHeads, headDim, scale, window } = shape;
  const H = heads * headDim, rowWidth = rows.rowWidth, group = heads / kvHeads, bias = rows.bias;
  for (let t = 0; t < n; t++) {
    const L = rows.keyLens[rows.bySlot ? rows.slots[t] : t], first = window > 0 ? Math.max(0, L - window) : 0;
    for (let j = first; j < L; j++) rowsOf[j] = cacheOffset(c, rows.slots[t], j);
    for (let h = 0; h < heads; h++) {
      const qo = t * rowWidth + h * headDim, kv = Math.floor(h / group) * headDim;
      let max = -Infinity;
      for (let j = first; j < L; j++) {
        const k = rowsOf[j] + kv;
        let s = 0;
        for (let i = 0; i < headDim; i++) s += q[qo + i] * c.k[k + i];
        s *= scale;
        if (bias) s += bias.table[relativeBucket(j - bias.positions[t], bias.buckets, bias.maxDistance, bias.bidirectional) * heads + h];
        scores[j] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let j = first; j < L; j++) {
        const e = Math.exp(scores[j] - max);
        scores[j] = e;
        sum += e;
      }
      const o = t * H + h * headDim;
      for (let i = 0; i < headDim; i++) out[o + i] = 0;
      for (let j = first; j < L; j++) {
        const p = scores[j] / sum;
        const v = rowsOf[j] + kv;
        for (let i = 0; i < headDim; i++) out[o + i] += p * c.v[v + i];
      }
    }
  }
}

/** block pairs[2i + 1] = block pairs[2i] in every plane of pool [planes, blocks, blockSize * width]. */
export function copyBlocks(pool: Float32Array, planes: number, blocks: number, blockValues: number, pairs: Int32Array, count: number): void {
  for (let p = 0; p < planes; p++) {
    const base = p * blocks * blockValues;
    for (let i = 0; i < count; i++) {
      const src = base + pairs[2 * i] * blockValues, dst = base + pairs[2 * i + 1] * blockValues;
      pool.copyWithin(dst, src, src + blockValues);
    }
  }
}
