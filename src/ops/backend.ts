import type { HostWeight } from '../loaders/dtypes.js';

// The op set models are written in. Every op writes into tensors the caller passes in (no op allocates
// its result) and takes the number of active rows `n`, so a forward pass is a fixed sequence of calls
// over buffers planned at load: the shape a CUDA graph can capture.
//
// Activations are packed: the tokens of all sequences in a step lie one after another, [tokens, hidden],
// with no padding. Per-token int tensors say which sequence (cache slot) a token belongs to, its position,
// and how many keys it attends to.

export type DType = 'f32' | 'f16' | 'bf16' | 'i32';

export interface Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
}

export type Activation = 'none' | 'gelu' | 'gelu_tanh' | 'tanh';

/** Per-row sampling parameters as the sample op reads them: [topK, seed, temperature bits, topP bits] (int32). */
export const SAMPLING_FIELDS = 4;

/**
 * Runs of consecutive packed rows that belong to one sequence (a prompt, or a chunk of one), as an i32
 * tensor [count, 3] = (first row, rows, 0); prompt attention kernels tile queries by segment.
 */
export interface Segments {
  table: Tensor;
  count: number;
  /** rows of the longest segment */
  longest: number;
}

export interface AttentionShape {
  heads: number;
  headDim: number;
  /** softmax(q k^T * scale) */
  scale: number;
}

export interface Backend {
  readonly name: string;
  /** dtype of activations and the KV cache (weights are stored in it too) */
  readonly activationDtype: DType;

  // ---- memory: used at load and plan time only ----
  /** A weight tensor in the activation dtype from checkpoint bytes; `transpose` turns stored [in, out] into [out, in]. */
  weight(src: HostWeight, shape: number[], transpose?: boolean): Tensor;
  /** A region of `bytes` bytes from which `view` carves buffers: the activation arena. */
  arena(bytes: number): Tensor;
  /** A tensor over `arena` starting at byte `offset`. */
  view(arena: Tensor, offset: number, shape: number[], dtype: DType): Tensor;
  /** A standalone buffer (the KV cache). */
  buffer(shape: number[], dtype: DType): Tensor;
  /** Frees what weight/arena/buffer made. */
  free(t: Tensor): void;

  // ---- host transfers: the only traffic in the hot path ----
  writeInt(dst: Tensor, src: Int32Array, count: number): void;
  /** The first `count` values of a float tensor, as fp32; the result is valid until the next op on the backend. */
  readFloat(src: Tensor, count: number): Float32Array;
  /** The first `count` values of an i32 tensor; the result is valid until the next op on the backend. */
  readInt(src: Tensor, count: number): Int32Array;

  /**
   * Runs `body` (a fixed sequence of ops over fixed tensors). A GPU backend captures it as a graph the first
   * time a key is seen and replays the graph after; the CPU runs `body` every time.
   */
  graph(key: string, body: () => void): void;
  /** Forgets captured graphs (their tensors are about to be freed). */
  invalidateGraphs(): void;

  // ---- ops ----
  /** out[t] = tok[ids[t]] + pos[positions[t]] (+ types[typeIds[t]]) */
  embed(out: Tensor, ids: Tensor, positions: Tensor, tok: Tensor, pos: Tensor, typeIds: Tensor | null, types: Tensor | null, n: number): void;
  layerNorm(out: Tensor, x: Tensor, gamma: Tensor, beta: Tensor, eps: number, n: number): void;
  /** sum = x + bias + residual; norm = LayerNorm(sum). `sum` may be `residual` and may be `norm`. */
  addBiasResidualLayerNorm(sum: Tensor, norm: Tensor, x: Tensor, bias: Tensor | null, residual: Tensor,
    gamma: Tensor, beta: Tensor, eps: number, n: number): void;
  /** out[n, N] = act(x[n, K] w[N, K]^T + bias[N]) */
  linear(out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, act: Activation, n: number): void;
  /** out = act(LayerNorm(x) w^T + bias): a pre-LN block's norm fused into the GEMM (scratch [n, K] may hold the norm). */
  normLinear(out: Tensor, x: Tensor, gamma: Tensor, beta: Tensor, eps: number, w: Tensor, bias: Tensor | null, act: Activation, n: number, scratch: Tensor): void;
  /** residual += x w^T + bias: a projection added into the residual stream (scratch [n, N] may hold the product). */
  linearResidual(residual: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, n: number, scratch: Tensor): void;
  /** Stores the K and V parts of qkv [n, 3 * hidden] at (slots[t], positions[t]) of the caches [slots, maxSeq, hidden]. */
  writeKV(qkv: Tensor, kCache: Tensor, vCache: Tensor, slots: Tensor, positions: Tensor, n: number): void;
  /**
   * out[t] = attention of the Q part of qkv[t] over keys 0 .. keyLens[t]-1 of cache slot slots[t], for
   * prompt tokens grouped in segments (the decode step has decodeAttention).
   */
  attend(out: Tensor, qkv: Tensor, kCache: Tensor, vCache: Tensor, slots: Tensor, keyLens: Tensor, shape: AttentionShape, n: number, segments: Segments): void;
  /**
   * The decode step's attention: each row's k and v go into the caches at position keyLens[t] - 1 of slot
   * slots[t] (as writeKV would), then the row attends over keys 0 .. keyLens[t]-1 (as attend would).
   */
  decodeAttention(out: Tensor, qkv: Tensor, kCache: Tensor, vCache: Tensor, slots: Tensor, keyLens: Tensor, shape: AttentionShape, n: number): void;
  /** out[dstRows[i]] = x[srcRows[i]] for i < n (rows of width x.shape[1]). */
  gatherRows(out: Tensor, x: Tensor, srcRows: Tensor, dstRows: Tensor, n: number): void;
  /** out[s] = mean of x over rows starts[s] .. starts[s] + lengths[s] - 1, for s < n. */
  meanPool(out: Tensor, x: Tensor, starts: Tensor, lengths: Tensor, n: number): void;
  /**
   * ids[i] = a token drawn from f32 logits row i by params row i ([n, SAMPLING_FIELDS]), with the random
   * number of (streams[i], counters[i]); the definition is in backends/cpu/sampling.ts.
   */
  sample(ids: Tensor, logits: Tensor, params: Tensor, streams: Tensor, counters: Tensor, n: number): void;
  /** positions[i] += 1 and keyLens[i] = positions[i] + 1, for i < n: moves decode state to the next token. */
  advance(positions: Tensor, keyLens: Tensor, n: number): void;

  /** Releases everything the backend holds. */
  dispose(): void;
}

/** Runs of equal consecutive slots as (first row, rows, 0) triples in `out`; returns their count and the longest. */
export function packSegments(slots: Int32Array, n: number, out: Int32Array): { count: number; longest: number } {
  let count = 0, longest = 0;
  for (let r = 0; r < n; r++) {
    if (r === 0 || slots[r] !== slots[r - 1]) {
      out[3 * count] = r;
      out[3 * count + 1] = 0;
      out[3 * count + 2] = 0;
      count++;
    }
    const len = ++out[3 * (count - 1) + 1];
    if (len > longest) longest = len;
  }
  return { count, longest };
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function dtypeBytes(dtype: DType): number {
  return dtype === 'f16' || dtype === 'bf16' ? 2 : 4;
}
