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

export interface AttentionShape {
  heads: number;
  headDim: number;
  /** softmax(q k^T * scale) */
  scale: number;
}

export interface Backend {
  readonly name: string;

  // ---- memory: used at load and plan time only ----
  /** A weight tensor from fp32 host values. */
  weight(data: Float32Array, shape: number[]): Tensor;
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
  /** The first `count` values of `src`; the result is valid until the next op on the backend. */
  readFloat(src: Tensor, count: number): Float32Array;

  // ---- ops ----
  /** out[t] = tok[ids[t]] + pos[positions[t]] (+ types[typeIds[t]]) */
  embed(out: Tensor, ids: Tensor, positions: Tensor, tok: Tensor, pos: Tensor, typeIds: Tensor | null, types: Tensor | null, n: number): void;
  layerNorm(out: Tensor, x: Tensor, gamma: Tensor, beta: Tensor, eps: number, n: number): void;
  /** sum = x + bias + residual; norm = LayerNorm(sum). `sum` may be `residual` and may be `norm`. */
  addBiasResidualLayerNorm(sum: Tensor, norm: Tensor, x: Tensor, bias: Tensor | null, residual: Tensor,
    gamma: Tensor, beta: Tensor, eps: number, n: number): void;
  /** out[n, N] = act(x[n, K] w[N, K]^T + bias[N]) */
  linear(out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, act: Activation, n: number): void;
  /** Stores the K and V parts of qkv [n, 3 * hidden] at (slots[t], positions[t]) of the caches [slots, maxSeq, hidden]. */
  writeKV(qkv: Tensor, kCache: Tensor, vCache: Tensor, slots: Tensor, positions: Tensor, n: number): void;
  /** out[t] = attention of the Q part of qkv[t] over keys 0 .. keyLens[t]-1 of cache slot slots[t]. */
  attend(out: Tensor, qkv: Tensor, kCache: Tensor, vCache: Tensor, slots: Tensor, keyLens: Tensor, shape: AttentionShape, n: number): void;
  /** out[dstRows[i]] = x[srcRows[i]] for i < n (rows of width x.shape[1]). */
  gatherRows(out: Tensor, x: Tensor, srcRows: Tensor, dstRows: Tensor, n: number): void;
  /** out[s] = mean of x over rows starts[s] .. starts[s] + lengths[s] - 1, for s < n. */
  meanPool(out: Tensor, x: Tensor, starts: Tensor, lengths: Tensor, n: number): void;

  /** Releases everything the backend holds. */
  dispose(): void;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function dtypeBytes(dtype: DType): number {
  return dtype === 'f16' || dtype === 'bf16' ? 2 : 4;
}
