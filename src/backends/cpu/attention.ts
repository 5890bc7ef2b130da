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
 * last `window` of them when shape.window > 0); query head h reads KV head h / (heads / kvHeads). For head sizes that
 * are a multiple of 4, the loops take 4 values a step (four partial sums in q . k); a head's output is summed in f64,
 * then stored. Scratch from the caller: scores and rowsOf hold a value per key, acc one per value of a head.
 */
export function attend(
  c: Paged, out: Float32Array, q: Float32Array, rows: Queries, shape: AttentionShape, n: number, scores: Float32Array, rowsOf: Int32Array,
  acc: Float64Array,
): void {
  const { heads, kvHeads, headDim: D, scale, window } = shape;
  const H = heads * D, rowWidth = rows.rowWidth, group = heads / kvHeads, bias = rows.bias, K = c.k, V = c.v, by4 = D % 4 === 0;
  for (let t = 0; t < n; t++) {
    const L = rows.keyLens[rows.bySlot ? rows.slots[t] : t], first = window > 0 ? Math.max(0, L - window) : 0;
    for (let j = first; j < L; j++) rowsOf[j] = cacheOffset(c, rows.slots[t], j);
    for (let h = 0; h < heads; h++) {
      const qo = t * rowWidth + h * D, kv = Math.floor(h / group) * D;
      let max = -Infinity;
      for (let j = first; j < L; j++) {
        const k = rowsOf[j] + kv;
        let s = 0;
        if (by4) {
          let s1 = 0, s2 = 0, s3 = 0;
          for (let i = 0; i < D; i += 4) {
            s += q[qo + i] * K[k + i];
            s1 += q[qo + i + 1] * K[k + i + 1];
            s2 += q[qo + i + 2] * K[k + i + 2];
            s3 += q[qo + i + 3] * K[k + i + 3];
          }
          s = s + s1 + (s2 + s3);
        } else {
          for (let i = 0; i < D; i++) s += q[qo + i] * K[k + i];
        }
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
      acc.fill(0, 0, D);
      for (let j = first; j < L; j++) {
        const p = scores[j] / sum, v = rowsOf[j] + kv;
        if (by4) {
          for (let i = 0; i < D; i += 4) {
            acc[i] += p * V[v + i];
            acc[i + 1] += p * V[v + i + 1];
            acc[i + 2] += p * V[v + i + 2];
            acc[i + 3] += p * V[v + i + 3];
          }
        } else {
          for (let i = 0; i < D; i++) acc[i] += p * V[v + i];
        }
      }
      const o = t * H + h * D;
      for (let i = 0; i < D; i++) out[o + i] = acc[i];
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
