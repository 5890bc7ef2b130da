import type { HostWeight, StorageDType } from '../loaders/dtypes.js';
import { quantBytes, type StoredQuant } from '../loaders/quant.js';

// The op set models are written in. Every op writes into tensors the caller passes in (no op allocates
// its result) and takes the number of active rows `n`, so a forward pass is a fixed sequence of calls
// over buffers planned at load: the shape a CUDA graph can capture.
//
// Activations are packed: the tokens of all sequences in a step lie one after another, [tokens, hidden],
// with no padding. Per-token int tensors say which sequence (cache slot) a token belongs to, its position,
// and how many keys it attends to.

/**
 * Quantized weights, GEMM operands only, [out, in]: ggml blocks (GGUF, --quantize; `in` a multiple of the block,
 * loaders/quant.ts), the grouped int4 of AWQ and GPTQ checkpoints (groups of 32, 64, 128 inputs; loaders/int4.ts) and
 * SmoothQuant's int8 weights run against int8 activations (loaders/w8a8.ts), and E4M3 weights scaled per output channel
 * (loaders/fp8.ts).
 */
export type QuantDType = 'q8_0' | 'q4_0' | 'q4_k' | 'q5_k' | 'q6_k' | 'q4_g32' | 'q4_g64' | 'q4_g128' | 'w8a8' | 'fp8';
export type DType = 'f32' | 'f16' | 'bf16' | 'i32' | QuantDType;

export function isQuant(dtype: DType): dtype is QuantDType {
  return dtype[0] === 'q' || dtype === 'w8a8' || dtype === 'fp8';
}

/** The ggml type of a quantized dtype, and back. */
export const quantType = (d: QuantDType): StoredQuant => d.toUpperCase() as StoredQuant;
export const quantDType = (t: StoredQuant): QuantDType => t.toLowerCase() as QuantDType;

export interface Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
}

/**
 * Elementwise activations of linear/normLinear: gelu = x Phi(x) (erf); gelu_tanh = GPT-2's tanh approximation;
 * quick_gelu = x sigmoid(1.702 x); silu = x sigmoid(x); relu; tanh. Reference: src/backends/cpu/activations.ts.
 */
export type Activation = 'none' | 'gelu' | 'gelu_tanh' | 'tanh' | 'relu' | 'silu' | 'quick_gelu';
export const ACTIVATIONS: readonly Activation[] = ['none', 'gelu', 'gelu_tanh', 'tanh', 'relu', 'silu', 'quick_gelu'];

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

/** Rows that turn logits into tokens: the sequence of each row and how many tokens it holds. */
export interface SampleRows {
  /** [rows] i32: sequence slot (row of the sequence tables) */
  slots: Tensor;
  /** [rows] i32: the sequence's length; the token drawn will sit at this position */
  lengths: Tensor;
}

/** Per-sequence tables, indexed by slot (layout: ops/requests.ts). */
export interface SequenceTables {
  /** [slots, REQUEST_STRIDE] i32 */
  requests: Tensor;
  /** [slots, maxSeq] i32: the tokens of each sequence, prompt and generated */
  history: Tensor;
  /** [slots] f32: the runtime top-p (it decays as tokens are drawn) */
  topP: Tensor;
}

/** The best candidates of each row, [rows, MAX_CANDIDATES], best first. */
export interface Candidates {
  values: Tensor;
  ids: Tensor;
  /** [rows, CANDIDATE_SCRATCH] i32: room a backend may use while selecting (the GPU's first stage) */
  scratch: Tensor;
}

/**
 * Attention heads over packed qkv rows [tokens, (heads + 2 kvHeads) headDim] = q | k | v. The KV cache holds
 * kvHeads * headDim values per token; query head h reads KV head h / (heads / kvHeads) (grouped-query and
 * multi-query attention; kvHeads = heads is plain multi-head attention).
 */
export interface AttentionShape {
  heads: number;
  kvHeads: number;
  headDim: number;
  /** softmax(q k^T * scale) */
  scale: number;
  /** keys a query sees: its own position and the window - 1 before it (sliding-window attention); 0: all */
  window: number;
  /** T5's relative position bias added to the scores; absent or null: none */
  bias?: RelativeBias | null;
}

/**
 * T5's relative position bias: the score of a query at position i for the key at position j gets
 * table[bucket(j - i), head], buckets as Hugging Face's T5Attention._relative_position_bucket makes them
 * (reference: src/backends/cpu/attention.ts, relativeBucket).
 */
export interface RelativeBias {
  /** [buckets, heads] */
  table: Tensor;
  buckets: number;
  maxDistance: number;
  /** the encoder's (keys on both sides) or the decoder's (keys up to the query) buckets */
  bidirectional: boolean;
  /** [rows] i32: each query row's position */
  positions: Tensor;
}

/** A normalization in front of a GEMM: LayerNorm ((x - mean) / sqrt(var + eps) * gamma + beta) or RMSNorm (x / sqrt(mean(x^2) + eps) * gamma). */
export interface Norm {
  kind: 'layer' | 'rms';
  gamma: Tensor;
  /** LayerNorm's shift; null for RMSNorm and bias-free LayerNorm */
  beta: Tensor | null;
  eps: number;
}

/**
 * Rotary position embedding (RoPE, the rotate-half layout of Hugging Face's Llama): dimension i < dims / 2 of a
 * head pairs with i + dims / 2, and the pair turns by position * invFreq[i]; cos and sin are scaled by `scale`.
 * Reference: src/backends/cpu/rotary.ts.
 */
export interface Rotary {
  /** [dims / 2] f32: each pair's angle per position, as the config's rope scaling makes it */
  invFreq: Tensor;
  /** leading dimensions of each head that turn (the head size unless partial) */
  dims: number;
  /** YaRN's attention factor; 1 otherwise */
  scale: number;
  /**
   * Dynamic NTK scaling: a sequence of L > original positions turns at
   * 1 / (base * (factor * L / original - (factor - 1)) ^ (dims / (dims - 2))) ^ (2i / dims) instead of invFreq,
   * L being the length the pass brings the sequence to (Hugging Face recomputes it per forward call).
   */
  dynamic: { base: number; factor: number; original: number } | null;
}

/** Qwen3's RMSNorm of each query and key head before rotary, weights [headDim]. */
export interface HeadNorms {
  q: Tensor;
  k: Tensor;
  eps: number;
}

/** A backend's place in a tensor-parallel group: its model holds slice `rank` of `size` of each layer. */
export interface ParallelRank {
  rank: number;
  size: number;
}

/** A backend's place in a pipeline: its model holds the layers of stage `stage` of `stages` (src/models/shard.ts stageLayers). */
export interface PipelineStage {
  stage: number;
  stages: number;
}

export interface Backend {
  readonly name: string;
  /** dtype of activations and the KV cache (weights are stored in it too) */
  readonly activationDtype: DType;
  /** whether a row's result is the same whatever other rows share its pass (bit for bit) */
  readonly batchInvariant: boolean;
  /** the tensor-parallel group this backend is a rank of; null: its model is whole */
  readonly parallel: ParallelRank | null;
  /** the pipeline stage this backend runs; null: it runs every layer */
  readonly pipeline: PipelineStage | null;

  // ---- memory: used at load and plan time only ----
  /**
   * A weight tensor in the activation dtype from checkpoint bytes; `transpose` turns stored [in, out] into [out, in].
   * Block-quantized bytes stay as they are with `quantized` (a GEMM operand of linear, normLinear, linearResidual)
   * and are dequantized at load otherwise.
   */
  weight(src: HostWeight, shape: number[], transpose?: boolean, quantized?: boolean): Tensor;
  /**
   * A float weight [out, in] (stored [in, out] when `transpose`) quantized to blocks of `type` as it loads
   * (LoadOptions.quantize), a GEMM operand as `weight` keeps quantized ones; src/loaders/quantize.ts is the reference.
   */
  quantizedWeight(src: HostWeight & { dtype: StorageDType }, shape: number[], transpose: boolean, type: StoredQuant): Tensor;
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
  /**
   * For i < count: dst[pairs[2i]] = pairs[2i + 1], the indices distinct (i32 tensors; the pairs written with
   * writeInt): many scattered entries of a table changed by one launch instead of a copy each.
   */
  scatterInt(dst: Tensor, pairs: Tensor, count: number): void;
  /** The first `count` values of a float tensor, as fp32; the result is valid until the next op on the backend. */
  readFloat(src: Tensor, count: number): Float32Array;
  /** The first `count` values of an i32 tensor; the result is valid until the next op on the backend. */
  readInt(src: Tensor, count: number): Int32Array;
  /**
   * The bytes of `blocks` of a cache pool [planes, blocks, blockSize, width] in every plane, laid out as
   * blockRegions says (a preempted sequence's cache, swapped out to the host).
   */
  readBlocks(pool: Tensor, blocks: readonly number[]): Uint8Array;
  /** Writes what readBlocks returned into `blocks` of the pool (as many blocks, any of them). */
  writeBlocks(pool: Tensor, blocks: readonly number[], data: Uint8Array): void;

  /**
   * Runs `body` (a fixed sequence of ops over fixed tensors). A GPU backend captures it as a graph the first
   * time a key is seen and replays the graph after; the CPU runs `body` every time.
   */
  graph(key: string, body: () => void): void;
  /** Forgets captured graphs (their tensors are about to be freed). */
  invalidateGraphs(): void;

  // ---- ops ----
  /** out[t] = tok[ids[t]] (+ pos[positions[t]]) (+ types[typeIds[t]]) */
  embed(out: Tensor, ids: Tensor, positions: Tensor, tok: Tensor, pos: Tensor | null, typeIds: Tensor | null, types: Tensor | null, n: number): void;
  /**
   * Rows 0 .. n-1 of out := row ids[t] - first of `table`, or zeros where that row is not in the table: a
   * vocabulary-parallel rank's share of the embedding lookup (its slice of the vocabulary starts at `first`), which
   * an allReduce over the ranks completes. Reference: src/backends/cpu/embedding.ts.
   */
  embedSlice(out: Tensor, ids: Tensor, table: Tensor, first: number, n: number): void;
  layerNorm(out: Tensor, x: Tensor, gamma: Tensor, beta: Tensor, eps: number, n: number): void;
  /** sum = x + bias + residual; norm = LayerNorm(sum). `sum` may be `residual` and may be `norm`. */
  addBiasResidualLayerNorm(sum: Tensor, norm: Tensor, x: Tensor, bias: Tensor | null, residual: Tensor,
    gamma: Tensor, beta: Tensor, eps: number, n: number): void;
  /** out[n, N] = act(x[n, K] w[N, K]^T + bias[N]) */
  linear(out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, act: Activation, n: number): void;
  /** out = act(norm(x) w^T + bias): a pre-norm block's LayerNorm or RMSNorm fused into the GEMM (scratch [n, K] may hold the norm). */
  normLinear(out: Tensor, x: Tensor, norm: Norm, w: Tensor, bias: Tensor | null, act: Activation, n: number, scratch: Tensor): void;
  /** out[t, i] = act(x[t, i]) * x[t, F + i] for i < F, x [n, 2F] = gate | up (SwiGLU and the other GLUs). */
  gatedActivation(out: Tensor, x: Tensor, act: Activation, n: number): void;
  /**
   * Rotary position embedding of the q and k parts of qkv rows, in place, row t at positions[t]; with `norms`,
   * each q and k head is first RMS-normalized. `lengths` (per row; the keys the pass brings its sequence to)
   * is read by dynamic NTK scaling only.
   */
  rotary(qkv: Tensor, positions: Tensor, lengths: Tensor, rot: Rotary, shape: AttentionShape, norms: HeadNorms | null, n: number): void;
  /** residual += x w^T + bias: a projection added into the residual stream (scratch [n, N] may hold the product). */
  linearResidual(residual: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, n: number, scratch: Tensor): void;
  /**
   * residual += gatedActivation(x) w^T + bias, x [n, 2F] = gate | up: a gated MLP's down projection with the
   * activation fused in front (scratch: `gated` [n, F] may hold the gated rows, `product` [n, N] the product).
   */
  gatedLinearResidual(residual: Tensor, x: Tensor, act: Activation, w: Tensor, bias: Tensor | null, n: number, gated: Tensor, product: Tensor): void;
  /**
   * Stores the K and V parts of qkv [n, q + 2 * width] (the last 2 * width values of a row) for row t at
   * position positions[t] of sequence slots[t] in the paged caches [blocks, blockSize, width]: block
   * blockTables[slots[t], position / blockSize], row position % blockSize.
   */
  writeKV(qkv: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor, slots: Tensor, positions: Tensor, n: number): void;
  /**
   * out[t] = attention of the Q part of qkv[t] over keys 0 .. keyLens[t]-1 of sequence slots[t], read through
   * its block table, for prompt tokens grouped in segments (the decode step has decodeAttention).
   */
  attend(out: Tensor, qkv: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor, slots: Tensor, keyLens: Tensor,
    shape: AttentionShape, n: number, segments: Segments): void;
  /**
   * An encoder's self-attention, whose rows see only their own segment's rows (each segment a whole sequence from
   * position 0, nothing cached before or kept after): writeKV then attend, except that the caches are scratch whose
   * contents afterwards are unspecified, so a backend may read each key and value straight from its row of qkv.
   */
  attendEncoder(out: Tensor, qkv: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor, slots: Tensor, positions: Tensor,
    keyLens: Tensor, shape: AttentionShape, n: number, segments: Segments): void;
  /**
   * The decode step's attention: each row's k and v go into the caches at position keyLens[t] - 1 of
   * sequence slots[t] (as writeKV would), then the row attends over keys 0 .. keyLens[t]-1 (as attend would).
   */
  decodeAttention(out: Tensor, qkv: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor, slots: Tensor, keyLens: Tensor,
    shape: AttentionShape, n: number): void;
  /**
   * Cross-attention: out[t] = attention of q[t] ([n, heads * headDim]) over keys 0 .. lengths[slots[t]] - 1 of
   * the read-only memory cache of sequence slots[t] (an encoder's keys and values, written once per request
   * with writeKV), read through its block table; `lengths` is per slot.
   */
  crossAttention(out: Tensor, q: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor, slots: Tensor, lengths: Tensor,
    shape: AttentionShape, n: number): void;
  /**
   * Rows 0 .. n-1 of x := their sum over the ranks of the tensor-parallel group (`parallel`), the same bits on every
   * rank; every rank calls it at the same point of the same pass.
   */
  allReduce(x: Tensor, n: number): void;
  /**
   * Rows 0 .. n-1 of out [rows, size * cols] := every rank's rows of x [rows, cols] side by side, rank 0's first (a
   * vocabulary-parallel LM head's logits, each rank's slice of the vocabulary); every rank calls it at the same point.
   */
  allGather(out: Tensor, x: Tensor, n: number): void;
  /**
   * Rows 0 .. n-1 of x [rows, cols] to pipeline stage `stage`'s rank of this rank's tensor-parallel slice, which takes
   * them with recvRows, in the order sent (a stage's output to the next, the last stage's logits to the others).
   */
  sendRows(x: Tensor, n: number, stage: number): void;
  /** Rows 0 .. n-1 of x := the next rows pipeline stage `stage`'s rank of this rank's slice sent this one (sendRows). */
  recvRows(x: Tensor, n: number, stage: number): void;
  /**
   * For i < count: block pairs[i, 1] = block pairs[i, 0] in every plane of the cache pool
   * [planes, blocks, blockSize, width] (copy-on-write of shared blocks).
   */
  copyBlocks(pool: Tensor, pairs: Tensor, count: number): void;
  /** out[dstRows[i]] = x[srcRows[i]] for i < n (rows of width x.shape[1]). */
  gatherRows(out: Tensor, x: Tensor, srcRows: Tensor, dstRows: Tensor, n: number): void;
  /** out[s] = mean of x over rows starts[s] .. starts[s] + lengths[s] - 1, for s < n. */
  meanPool(out: Tensor, x: Tensor, starts: Tensor, lengths: Tensor, n: number): void;

  // ---- logits to tokens; row r belongs to sequence rows.slots[r] (its request: ops/requests.ts) ----
  /**
   * scores[r] = the logits processors of row r's request over logits[r] (repetition, presence and
   * frequency penalties over its history, bad words, min-new-tokens); beam rows get the processors over
   * the log-softmax, as Hugging Face's beam search applies them.
   */
  processLogits(scores: Tensor, logits: Tensor, rows: SampleRows, seqs: SequenceTables, n: number): void;
  /**
   * The best k candidates of scores[r] (k from the request: beams, top-k, or 1 for greedy), by value then lowest
   * id; and status[r] ([rows] i32) = 1 when scores[r] holds a NaN or +Infinity (broken weights or an overflow:
   * no token can be drawn from it), else 0, for every row but padding rows (MODE.NONE), whatever its k. The
   * status is how a pass reports non-finite logits without a read of its own (it goes back with the ids).
   */
  selectCandidates(out: Candidates, scores: Tensor, rows: SampleRows, seqs: SequenceTables, n: number, status: Tensor): void;
  /**
   * ids[r] = the token drawn for each SAMPLE row from scores[r] (and its candidates), appended to the
   * sequence's history at rows.lengths[r]; updates the runtime top-p. Other rows are left alone.
   */
  sample(ids: Tensor, scores: Tensor, candidates: Candidates, rows: SampleRows, seqs: SequenceTables, n: number): void;
  /**
   * out[r] (LOGPROB_STRIDE int32, f32 bits for log-probs) = log-softmax of the raw logits[r] at ids[r], then
   * the request's K most likely tokens and their log-probs, for rows that asked (scratch: candidates).
   */
  logprobs(out: Tensor, logits: Tensor, ids: Tensor, rows: SampleRows, seqs: SequenceTables, n: number, scratch: Candidates): void;
  /** positions[r] += 1 and keyLens[r] += 1 for rows whose sequence samples on the device (MODE.SAMPLE). */
  advance(positions: Tensor, keyLens: Tensor, rows: SampleRows, seqs: SequenceTables, n: number): void;

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

/**
 * The byte regions of `blocks` of a cache pool [planes, blocks, blockSize, width] of `elementBytes`-byte
 * values, as [pool offset, host offset, bytes]: the host copy is [planes, blocks.length, blockSize * width],
 * and runs of consecutive blocks are one region.
 */
export function blockRegions(shape: readonly number[], blocks: readonly number[], elementBytes: number): [number, number, number][] {
  const [planes, total, blockSize, width] = shape;
  const bytes = blockSize * width * elementBytes;
  const out: [number, number, number][] = [];
  for (let p = 0; p < planes; p++) {
    for (let i = 0; i < blocks.length; i++) {
      const last = out[out.length - 1];
      const src = (p * total + blocks[i]) * bytes, dst = (p * blocks.length + i) * bytes;
      if (i > 0 && blocks[i] === blocks[i - 1] + 1) last[2] += bytes;
      else out.push([src, dst, bytes]);
    }
  }
  return out;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Bytes per element of a dtype that has elements of their own (not the quantized ones: see byteSize). */
export function dtypeBytes(dtype: DType): number {
  if (isQuant(dtype)) throw new Error(`internal: ${dtype} has no bytes per element`);
  return dtype === 'f16' || dtype === 'bf16' ? 2 : 4;
}

/** Bytes of a tensor of `shape` in `dtype` (blocks of the last dimension for quantized weights). */
export function byteSize(shape: readonly number[], dtype: DType): number {
  if (!isQuant(dtype)) return numel(shape) * dtypeBytes(dtype);
  const columns = shape[shape.length - 1];
  return quantBytes(quantType(dtype), numel(shape) / columns, columns);
}
