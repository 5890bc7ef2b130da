// The CPU backend: the reference implementation of every op, in plain TypeScript over Float32Array.
import { fail } from '../../errors.js';
import { toFloat32, transpose2d, unquantized, type HostWeight, type StorageDType } from '../../loaders/dtypes.js';
import { isStoredQuant, type StoredQuant } from '../../loaders/quant.js';
import { quantizeWeight } from '../../loaders/quantize.js';
import { blockRegions, isQuant, numel, quantDType, quantType, type Activation, type AttentionShape, type Backend, type Candidates, type DType, type HeadNorms, type Norm, type ParallelRank, type PipelineStage,
  type Rotary, type SampleRows, type SequenceTables, type Tensor } from '../../ops/backend.js';
import { gatedActivation } from './activations.js';
import { attend, copyBlocks, writeKV, type Paged } from './attention.js';
import { embed, embedSlice } from './embedding.js';
import { addBiasResidualLayerNorm, layerNorm, rmsNorm } from './layernorm.js';
import { linear, quantLinear, quantLinearScratch } from './linear.js';
import { rotary } from './rotary.js';
import { gatherRows, meanPool } from './rows.js';
import { advance, CpuSampler, logprobs, processLogits, selectCandidates, type SeqArrays } from './sampling.js';
import type { RankGroup } from './thread-group.js';

export class CpuTensor implements Tensor {
  /** f32 values, i32 values, or a quantized weight's ggml blocks */
  constructor(readonly shape: readonly number[], readonly dtype: DType, readonly data: Float32Array | Int32Array | Uint8Array) {}
}

function f32(t: Tensor): Float32Array {
  const d = (t as CpuTensor).data;
  if (!(d instanceof Float32Array)) throw new Error(`internal: expected an f32 CPU tensor, got ${t.dtype}`);
  return d;
}

function i32(t: Tensor): Int32Array {
  const d = (t as CpuTensor).data;
  if (!(d instanceof Int32Array)) throw new Error(`internal: expected an i32 CPU tensor, got ${t.dtype}`);
  return d;
}

function opt(t: Tensor | null): Float32Array | null {
  return t ? f32(t) : null;
}

function paged(k: Tensor, v: Tensor, tables: Tensor): Paged {
  return { k: f32(k), v: f32(v), tables: i32(tables), maxBlocks: tables.shape[1], blockSize: k.shape[1], width: k.shape[2] };
}

/** The sequence tables as arrays, made once per tables (the ops of every step would otherwise build them again). */
const arrays = new WeakMap<Tensor, SeqArrays>();
function seqArrays(t: SequenceTables): SeqArrays {
  let a = arrays.get(t.requests);
  if (!a || a.history !== (t.history as CpuTensor).data || a.topP !== (t.topP as CpuTensor).data) {
    const requests = i32(t.requests);
    a = {
      requests, requestsF: new Float32Array(requests.buffer, requests.byteOffset, requests.length),
      history: i32(t.history), maxSeq: t.history.shape[1], topP: f32(t.topP),
    };
    arrays.set(t.requests, a);
  }
  return a;
}

/** A fresh array of n values; an allocation JavaScript cannot make is an ordinary out-of-memory error. */
function allocate(n: number, dtype: DType, shape: readonly number[]): Float32Array | Int32Array {
  try {
    return dtype === 'i32' ? new Int32Array(n) : new Float32Array(n);
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    return fail('out-of-memory', `the CPU cannot allocate a buffer of [${shape.join(', ')}] ${dtype} (${(n * 4 / 2 ** 30).toFixed(1)} GiB: ${err.message}); lower --max-batch, --max-seq-len or --kv-blocks`);
  }
}

function checkDtype(dtype: DType): void {
  if (dtype !== 'f32' && dtype !== 'i32') fail('bad-argument', `the CPU backend computes in fp32; dtype ${dtype} is for --device cuda`);
}

export class CpuBackend implements Backend {
  readonly name = 'cpu';
  readonly activationDtype = 'f32';
  /** a row's sums never depend on the other rows of a pass */
  readonly batchInvariant = true;
  readonly parallel: ParallelRank | null;
  readonly pipeline: PipelineStage | null;

  /** `group`: this backend's rank of a tensor- and/or pipeline-parallel group (of threads of this process, or of processes) */
  constructor(private readonly group: RankGroup | null = null) {
    this.parallel = group && group.size > 1 ? { rank: group.tensorRank, size: group.size } : null;
    this.pipeline = group && group.stages > 1 ? { stage: group.stage, stages: group.stages } : null;
  }

  private scores = new Float32Array(1024);
  private rowsOf = new Int32Array(1024);
  private headSums = new Float64Array(256);
  /** a block of a quantized weight's rows dequantized (linear.ts quantLinear) */
  private dequantized = new Float32Array(0);
  private readonly sampler = new CpuSampler();
  private decodePositions = new Int32Array(64);
  private seen = new Uint8Array(0);
  private topVals = new Float32Array(0);
  private topIds = new Int32Array(0);

  weight(src: HostWeight, shape: number[], transpose = false, quantized = false): Tensor {
    if (isStoredQuant(src.dtype) && quantized && shape.length === 2 && !transpose) {
      // ggml blocks or grouped int4 as they are: linear dequantizes a row at a time (cpu/linear.ts)
      return new CpuTensor(shape, quantDType(src.dtype), src.bytes);
    }
    const host = unquantized(src, shape);
    const data = toFloat32(host.bytes, host.dtype);
    if (data.length !== numel(shape)) throw new Error(`internal: weight of ${data.length} values for shape [${shape}]`);
    return new CpuTensor(shape, 'f32', transpose ? transpose2d(data, shape[1], shape[0]) : data);
  }

  quantizedWeight(src: HostWeight & { dtype: StorageDType }, shape: number[], transpose: boolean, type: StoredQuant): Tensor {
    return this.weight(quantizeWeight(src, shape, transpose, type), shape, false, true);
  }

  arena(bytes: number): Tensor {
    return new CpuTensor([bytes], 'f32', allocate(Math.ceil(bytes / 4), 'f32', [bytes]));
  }

  view(arena: Tensor, offset: number, shape: number[], dtype: DType): Tensor {
    checkDtype(dtype);
    const { buffer: buf, byteOffset } = (arena as CpuTensor).data;
    const at = byteOffset + offset;
    const data = dtype === 'i32' ? new Int32Array(buf, at, numel(shape)) : new Float32Array(buf, at, numel(shape));
    return new CpuTensor(shape, dtype, data);
  }

  buffer(shape: number[], dtype: DType): Tensor {
    checkDtype(dtype);
    return new CpuTensor(shape, dtype, allocate(numel(shape), dtype, shape));
  }

  free(): void {
    // garbage collected
  }

  writeInt(dst: Tensor, src: Int32Array, count: number): void {
    const d = i32(dst);
    for (let i = 0; i < count; i++) d[i] = src[i];
  }

  readFloat(src: Tensor, count: number): Float32Array {
    return f32(src).subarray(0, count);
  }

  readInt(src: Tensor, count: number): Int32Array {
    return i32(src).subarray(0, count);
  }

  readBlocks(pool: Tensor, blocks: readonly number[]): Uint8Array {
    const src = f32(pool), bytes = new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
    const out = new Uint8Array(pool.shape[0] * blocks.length * pool.shape[2] * pool.shape[3] * 4);
    for (const [at, to, n] of blockRegions(pool.shape, blocks, 4)) out.set(bytes.subarray(at, at + n), to);
    return out;
  }

  writeBlocks(pool: Tensor, blocks: readonly number[], data: Uint8Array): void {
    const dst = f32(pool), bytes = new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength);
    for (const [at, from, n] of blockRegions(pool.shape, blocks, 4)) bytes.set(data.subarray(from, from + n), at);
  }

  graph(_key: string, body: () => void): void {
    body();
  }

  invalidateGraphs(): void {
    // nothing captured
  }

  embed(out: Tensor, ids: Tensor, positions: Tensor, tok: Tensor, pos: Tensor | null, typeIds: Tensor | null, types: Tensor | null, n: number): void {
    embed(f32(out), i32(ids), i32(positions), f32(tok), opt(pos), typeIds ? i32(typeIds) : null, opt(types), n, tok.shape[1]);
  }

  embedSlice(out: Tensor, ids: Tensor, table: Tensor, first: number, n: number): void {
    embedSlice(f32(out), i32(ids), f32(table), first, table.shape[0], n, table.shape[1]);
  }

  layerNorm(out: Tensor, x: Tensor, gamma: Tensor, beta: Tensor, eps: number, n: number): void {
    layerNorm(f32(out), f32(x), f32(gamma), f32(beta), eps, n, gamma.shape[0]);
  }

  addBiasResidualLayerNorm(sum: Tensor, norm: Tensor, x: Tensor, bias: Tensor | null, residual: Tensor,
    gamma: Tensor, beta: Tensor, eps: number, n: number): void {
    addBiasResidualLayerNorm(f32(sum), f32(norm), f32(x), opt(bias), f32(residual), f32(gamma), f32(beta), eps, n, gamma.shape[0]);
  }

  linear(out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, act: Activation, n: number): void {
    if (isQuant(w.dtype)) {
      const [N, K] = w.shape;
      if (this.dequantized.length < quantLinearScratch(K)) this.dequantized = new Float32Array(quantLinearScratch(K));
      return quantLinear(f32(out), f32(x), quantType(w.dtype), (w as CpuTensor).data as Uint8Array, opt(bias), act, n, N, K, this.dequantized);
    }
    linear(f32(out), f32(x), f32(w), opt(bias), act, n, w.shape[0], w.shape[1]);
  }

  normLinear(out: Tensor, x: Tensor, norm: Norm, w: Tensor, bias: Tensor | null, act: Activation, n: number, scratch: Tensor): void {
    const apply = norm.kind === 'rms' ? rmsNorm : layerNorm;
    apply(f32(scratch), f32(x), f32(norm.gamma), opt(norm.beta), norm.eps, n, norm.gamma.shape[0]);
    this.linear(out, scratch, w, bias, act, n);
  }

  gatedActivation(out: Tensor, x: Tensor, act: Activation, n: number): void {
    gatedActivation(f32(out), f32(x), act, n, out.shape[1]);
  }

  rotary(qkv: Tensor, positions: Tensor, lengths: Tensor, rot: Rotary, shape: AttentionShape, norms: HeadNorms | null, n: number): void {
    const headNorms = norms ? { q: f32(norms.q), k: f32(norms.k), eps: norms.eps } : null;
    rotary(f32(qkv), i32(positions), i32(lengths), rot, f32(rot.invFreq), shape, headNorms, n);
  }

  linearResidual(residual: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, n: number, scratch: Tensor): void {
    this.linear(scratch, x, w, bias, 'none', n);
    const r = f32(residual), s = f32(scratch);
    for (let i = 0; i < n * w.shape[0]; i++) r[i] += s[i];
  }

  gatedLinearResidual(residual: Tensor, x: Tensor, act: Activation, w: Tensor, bias: Tensor | null, n: number, gated: Tensor, product: Tensor): void {
    this.gatedActivation(gated, x, act, n);
    this.linearResidual(residual, gated, w, bias, n, product);
  }

  writeKV(qkv: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor, slots: Tensor, positions: Tensor, n: number): void {
    writeKV(paged(kCache, vCache, blockTables), f32(qkv), qkv.shape[1], i32(slots), i32(positions), n);
  }

  attend(out: Tensor, qkv: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor, slots: Tensor, keyLens: Tensor,
    shape: AttentionShape, n: number): void {
    this.attendRows(out, qkv, kCache, vCache, blockTables, slots, keyLens, false, shape, n);
  }

  attendEncoder(out: Tensor, qkv: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor, slots: Tensor, positions: Tensor,
    keyLens: Tensor, shape: AttentionShape, n: number): void {
    this.writeKV(qkv, kCache, vCache, blockTables, slots, positions, n);
    this.attend(out, qkv, kCache, vCache, blockTables, slots, keyLens, shape, n);
  }

  crossAttention(out: Tensor, q: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor, slots: Tensor, lengths: Tensor,
    shape: AttentionShape, n: number): void {
    this.attendRows(out, q, kCache, vCache, blockTables, slots, lengths, true, shape, n);
  }

  private attendRows(out: Tensor, q: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor, slots: Tensor, keyLens: Tensor, bySlot: boolean,
    shape: AttentionShape, n: number): void {
    const c = paged(kCache, vCache, blockTables);
    const longest = c.maxBlocks * c.blockSize;
    if (this.scores.length < longest) {
      this.scores = new Float32Array(longest);
      this.rowsOf = new Int32Array(longest);
    }
    if (this.headSums.length < shape.headDim) this.headSums = new Float64Array(shape.headDim);
    const b = shape.bias;
    const bias = b ? { table: f32(b.table), positions: i32(b.positions), buckets: b.buckets, maxDistance: b.maxDistance, bidirectional: b.bidirectional } : null;
    attend(c, f32(out), f32(q), { rowWidth: q.shape[1], slots: i32(slots), keyLens: i32(keyLens), bySlot, bias }, shape, n, this.scores, this.rowsOf, this.headSums);
  }

  decodeAttention(out: Tensor, qkv: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor, slots: Tensor, keyLens: Tensor,
    shape: AttentionShape, n: number): void {
    const positions = this.decodePositions.length >= n ? this.decodePositions : (this.decodePositions = new Int32Array(n));
    const k = i32(keyLens);
    for (let i = 0; i < n; i++) positions[i] = k[i] - 1;
    writeKV(paged(kCache, vCache, blockTables), f32(qkv), qkv.shape[1], i32(slots), positions, n);
    this.attend(out, qkv, kCache, vCache, blockTables, slots, keyLens, shape, n);
  }

  allReduce(x: Tensor, n: number): void {
    if (!this.group || n === 0) return;
    this.group.allReduce(f32(x).subarray(0, n * x.shape[1]));
  }

  allGather(out: Tensor, x: Tensor, n: number): void {
    const cols = x.shape[1], rows = f32(x).subarray(0, n * cols);
    if (!this.group) f32(out).set(rows);
    else if (n > 0) this.group.allGather(rows, f32(out), cols);
  }

  sendRows(x: Tensor, n: number, stage: number): void {
    if (!this.pipeline) throw new Error('internal: sendRows on a backend that is no pipeline stage');
    this.group!.send(f32(x).subarray(0, n * x.shape[1]), stage);
  }

  recvRows(x: Tensor, n: number, stage: number): void {
    if (!this.pipeline) throw new Error('internal: recvRows on a backend that is no pipeline stage');
    this.group!.recv(f32(x).subarray(0, n * x.shape[1]), stage);
  }

  copyBlocks(pool: Tensor, pairs: Tensor, count: number): void {
    const [planes, blocks, blockSize, width] = pool.shape;
    copyBlocks(f32(pool), planes, blocks, blockSize * width, i32(pairs), count);
  }

  scatterInt(dst: Tensor, pairs: Tensor, count: number): void {
    // any 32-bit table (topP is f32): the bits as they are
    const data = (dst as CpuTensor).data, d = new Int32Array(data.buffer, data.byteOffset, data.byteLength / 4), p = i32(pairs);
    for (let i = 0; i < count; i++) d[p[2 * i]] = p[2 * i + 1];
  }

  gatherRows(out: Tensor, x: Tensor, srcRows: Tensor, dstRows: Tensor, n: number): void {
    gatherRows(f32(out), f32(x), i32(srcRows), i32(dstRows), n, x.shape[1]);
  }

  meanPool(out: Tensor, x: Tensor, starts: Tensor, lengths: Tensor, n: number): void {
    meanPool(f32(out), f32(x), i32(starts), i32(lengths), n, x.shape[1]);
  }

  processLogits(scores: Tensor, logits: Tensor, rows: SampleRows, seqs: SequenceTables, n: number): void {
    const V = logits.shape[1];
    if (this.seen.length < V) this.seen = new Uint8Array(V);
    processLogits(f32(scores), f32(logits), V, i32(rows.slots), i32(rows.lengths), seqArrays(seqs), n, this.seen);
  }

  selectCandidates(out: Candidates, scores: Tensor, rows: SampleRows, seqs: SequenceTables, n: number, status: Tensor): void {
    selectCandidates(f32(out.values), i32(out.ids), f32(scores), scores.shape[1], i32(rows.slots), seqArrays(seqs), n, i32(status));
  }

  sample(ids: Tensor, scores: Tensor, candidates: Candidates, rows: SampleRows, seqs: SequenceTables, n: number): void {
    this.sampler.sample(i32(ids), f32(scores), scores.shape[1], f32(candidates.values), i32(candidates.ids), i32(rows.slots), i32(rows.lengths), seqArrays(seqs), n);
  }

  logprobs(out: Tensor, logits: Tensor, ids: Tensor, rows: SampleRows, seqs: SequenceTables, n: number): void {
    const V = logits.shape[1];
    if (this.topVals.length < V) {
      this.topVals = new Float32Array(V);
      this.topIds = new Int32Array(V);
    }
    logprobs(i32(out), f32(logits), V, i32(ids), i32(rows.slots), seqArrays(seqs), n, this.topVals, this.topIds);
  }

  advance(positions: Tensor, keyLens: Tensor, rows: SampleRows, seqs: SequenceTables, n: number): void {
    advance(i32(positions), i32(keyLens), i32(rows.slots), i32(seqs.requests), n);
  }

  dispose(): void {
    // nothing held outside the garbage-collected heap but a group's channel
    this.group?.close?.();
  }
}
