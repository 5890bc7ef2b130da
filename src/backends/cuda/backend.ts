// The CUDA backend: device memory, host transfers, CUDA graphs, and the op set dispatched to the kernel
// launchers (one file per kernel family beside this one) and cuBLASLt.
import { fail } from '../../errors.js';
import { toFloat32, unquantized, type HostWeight, type StorageDType } from '../../loaders/dtypes.js';
import { int4InOrder, int4Layout, isInt4Type } from '../../loaders/int4.js';
import { isStoredQuant, type StoredQuant } from '../../loaders/quant.js';
import { blockRegions, byteSize, dtypeBytes, numel, quantDType, type Activation, type AttentionShape, type Backend, type Candidates, type DType, type HeadNorms, type QuantDType, type Norm,
  type Rotary, type SampleRows, type Segments, type SequenceTables, type Tensor } from '../../ops/backend.js';
import { gatedActivation } from './activation.js';
import { attendCross, attendDecode, attendFromRows, attendPrompt, copyBlocks, decodeSplitScratch, flashTakes, writeKV } from './attention.js';
import { Blas } from './blas.js';
import type { CudaContext, QuantScratch } from './context.js';
import { uploadWeight } from './convert.js';
import { CU, Driver, fmt, koffi, memoryError, type Handle } from './driver.js';
import { embed, embedSlice } from './embedding.js';
import { KernelSet } from './kernels.js';
import { addBiasResidualLayerNorm, layerNorm } from './layernorm.js';
import { gatedLinearResidual, linear, linearResidual, normLinear } from './linear.js';
import { q8_0FromBlocks, qmmaAccBytes, quantizeOnDevice, quantScratchBytes } from './qlinear.js';
import { rotary } from './rotary.js';
import { gatherRows, meanPool, scatterInt } from './rows.js';
import { advance, logprobs, processLogits, sample, selectCandidates } from './sampling.js';
import { CudaTensor, ptr } from './tensor.js';

const POOL_CHUNK = 256 * 2 ** 20;
/** pinned host memory that uploads go through (copied asynchronously, in stream order) */
const STAGING = 4 * 2 ** 20;
const WORKSPACE = 32 * 2 ** 20;

export interface DeviceInfo {
  name: string;
  computeCapability: string;
  multiprocessors: number;
  totalMemory: number;
  driverVersion: number;
}


export class CudaBackend implements Backend {
  readonly name = 'cuda';
  /** tensor parallelism on GPUs needs NCCL, which Peregrine does not drive yet (the load refuses it by name) */
  readonly parallel = null;
  /** nor pipeline parallelism, for the same reason */
  readonly pipeline = null;
  readonly ctx: CudaContext;
  readonly device: DeviceInfo;
  private readonly driver: Driver;
  private readonly deviceIndex = 0;
  private readonly pool: { ptr: number; size: number; used: number }[] = [];
  /** quantized scratch buffers outgrown by a later weight: kept, since a captured graph may still use them */
  private readonly retiredScratch: number[] = [];
  private readonly graphs = new Map<string, { graph: Handle; exec: Handle } | null>();
  private host = new ArrayBuffer(1 << 16);
  private readonly pinned: { ptr: unknown; view: ArrayBuffer };
  /** uploads since the stream last synchronised sit in `used` bytes of this pinned buffer */
  private readonly staging: { ptr: unknown; address: number; view: ArrayBuffer; used: number };
  private readonly useGraphs = process.env.PEREGRINE_CUDA_GRAPHS !== '0';
  private disposed = false;

  constructor(readonly activationDtype: DType = 'f16', readonly batchInvariant = false) {
    if (activationDtype === 'i32') fail('bad-argument', 'dtype must be f32, f16 or bf16');
    const driver = new Driver();
    this.driver = driver;
    try {
      driver.call('cuInit', 0);
    } catch (err) {
      fail('device', `the NVIDIA driver could not start CUDA (${(err as Error).message}); check the driver, or use --device cpu`);
    }
    if (driver.int('cuDeviceGetCount') === 0) fail('device', 'no CUDA device found; use --device cpu');
    const dev = driver.int('cuDeviceGet', this.deviceIndex);
    const nameBuf = Buffer.alloc(256);
    driver.call('cuDeviceGetName', nameBuf, 256, dev);
    const attr = (a: number) => driver.int('cuDeviceGetAttribute', a, dev);
    const context = driver.handle('cuDevicePrimaryCtxRetain', dev);
    driver.call('cuCtxSetCurrent', context);
    const stream = driver.handle('cuStreamCreate', CU.STREAM_DEFAULT);
    const mem = [0], total = [0];
    driver.call('cuMemGetInfo', mem, total);
    this.device = {
      name: nameBuf.toString('utf8').replace(/\0.*$/s, ''),
      computeCapability: `${attr(CU.DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)}.${attr(CU.DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)}`,
      multiprocessors: attr(CU.DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
      totalMemory: total[0],
      driverVersion: driver.int('cuDriverGetVersion'),
    };
    const kernels = new KernelSet(driver);
    const ws = this.alloc(WORKSPACE, 'the cuBLASLt workspace');
    const split = decodeSplitScratch(this.device.multiprocessors);
    const decodeSplit = { ...split, partials: this.alloc(split.partialBytes, 'the split decode attention\'s states'),
      counters: this.alloc(split.counterBytes, 'the split decode attention\'s counters') };
    driver.call('cuMemsetD8Async', decodeSplit.counters, 0, split.counterBytes, stream);
    this.ctx = { driver, batchInvariant, sms: this.device.multiprocessors, kernels, stream, blas: new Blas(driver, stream, { ptr: ws, bytes: WORKSPACE }, this.device.name),
      quantScratch: { ptr: 0, bytes: 0 }, qmmaAcc: { ptr: 0, bytes: 0 }, decodeSplit };
    const p = driver.handle('cuMemAllocHost', 1 << 16);
    this.pinned = { ptr: p, view: koffi.view(p, 1 << 16) };
    const sp = driver.handle('cuMemAllocHost', STAGING);
    this.staging = { ptr: sp, address: Number(koffi.address(sp)), view: koffi.view(sp, STAGING), used: 0 };
  }

  /** Free device memory, in bytes. */
  freeMemory(): number {
    const free = [0], total = [0];
    this.driver.call('cuMemGetInfo', free, total);
    return free[0];
  }

  private alloc(bytes: number, what: string): number {
    const out = [0];
    try {
      this.driver.call('cuMemAlloc', out, Math.max(bytes, 256));
    } catch (err) {
      throw memoryError(err, what, bytes, this.freeMemory());
    }
    return out[0];
  }

  // ---- memory ----

  weight(src: HostWeight, shape: number[], transpose = false, quantized = false): Tensor {
    if (src.dtype === 'FP8') this.checkFp8(shape);
    if (src.dtype === 'W8A8' && shape[1] % 32 !== 0) {
      fail('unsupported-config', `a SmoothQuant W8A8 layer of ${shape[1]} inputs: on the GPU its inputs must be a multiple of 32 (its integer GEMV reads 32 at a time); run it with --device cpu`);
    }
    if (isStoredQuant(src.dtype) && quantized && shape.length === 2 && !transpose) {
      // ggml blocks as they are, read by the quantized GEMV (kernels/quant-blocks.cuh); Q8_0 rearranged on the way;
      // grouped int4 in its own layout (loaders/int4.ts)
      const at = this.poolAlloc(src.bytes.length);
      const perm = isInt4Type(src.dtype) && !int4InOrder(src.dtype, src.bytes, shape[0], shape[1]) ? at + int4Layout(src.dtype, shape[0], shape[1]).perm : 0;
      const t = new CudaTensor(shape, quantDType(src.dtype), at, false, perm);
      if (t.bytes !== src.bytes.length) throw new Error(`internal: ${src.bytes.length} bytes of ${src.dtype} for shape [${shape}]`);
      if (t.dtype === 'q8_0') this.uploadQ8_0(t, src.bytes);
      else this.driver.call('cuMemcpyHtoD', t.ptr, src.bytes, src.bytes.length);
      this.reserveQuantScratch(t);
      return t;
    }
    const host = unquantized(src, shape);
    const bytes = numel(shape) * dtypeBytes(this.activationDtype);
    const t = new CudaTensor(shape, this.activationDtype, this.poolAlloc(bytes), false);
    uploadWeight(this.ctx, t, host, shape, transpose, (n: number) => this.alloc(n, 'weight staging'));
    return t;
  }

  quantizedWeight(src: HostWeight & { dtype: StorageDType }, shape: number[], transpose: boolean, type: StoredQuant): Tensor {
    if (type === 'FP8') this.checkFp8(shape);
    const t = new CudaTensor(shape, quantDType(type), this.poolAlloc(byteSize(shape, quantDType(type))), false);
    // the weight as f32 [out, in] (transposed on the device), then quantized from it: the values the CPU quantizes
    const f32 = new CudaTensor(shape, 'f32', this.alloc(numel(shape) * 4, 'a weight being quantized'), true);
    try {
      uploadWeight(this.ctx, f32, src, shape, transpose, (n: number) => this.alloc(n, 'weight staging'));
      quantizeOnDevice(this.ctx, t, f32);
      this.driver.call('cuStreamSynchronize', this.ctx.stream);
    } finally {
      this.driver.call('cuMemFree', f32.ptr);
    }
    this.reserveQuantScratch(t);
    return t;
  }

  /** FP8 weights need FP8 tensor cores (compute capability 8.9: Ada, Hopper) and rows of whole units of 32. */
  private checkFp8(shape: number[]): void {
    const [major, minor] = this.device.computeCapability.split('.').map(Number);
    if (major * 10 + minor < 89) {
      fail('unsupported-config', `fp8 weights need an Ada or Hopper GPU (compute capability 8.9 or later); this ${this.device.name} is ${this.device.computeCapability}; use --quantize int8 or int4, or --device cpu`);
    }
    if (shape.length !== 2 || shape[1] % 32 !== 0) fail('unsupported-config', `an fp8 layer of ${shape[shape.length - 1]} inputs: on the GPU its inputs must be a multiple of 32; run it with --device cpu`);
  }

  /** Q8_0 blocks through a staging buffer into the GPU's Q8_0 layout. */
  private uploadQ8_0(t: CudaTensor, blocks: Uint8Array): void {
    const staging = this.alloc(blocks.length, 'weight staging');
    try {
      this.driver.call('cuMemcpyHtoD', staging, blocks, blocks.length);
      q8_0FromBlocks(this.ctx, t, staging);
      this.driver.call('cuStreamSynchronize', this.ctx.stream);
    } finally {
      this.driver.call('cuMemFree', staging);
    }
  }

  /** The scratch a quantized weight's layer needs: grown (never moved while a graph may use it: the old one is kept). */
  private reserveQuantScratch(w: Tensor): void {
    const [N, K] = w.shape;
    const grow = (s: QuantScratch, bytes: number, what: string): boolean => {
      if (bytes <= s.bytes) return false;
      if (s.ptr) this.retiredScratch.push(s.ptr);
      s.ptr = this.alloc(bytes, what);
      s.bytes = bytes;
      return true;
    };
    grow(this.ctx.quantScratch, quantScratchBytes(N, K, this.activationDtype, w.dtype as QuantDType), 'the quantized layers\' scratch');
    const acc = this.ctx.qmmaAcc;
    if (grow(acc, qmmaAccBytes(this.ctx, N, K, this.activationDtype, w.dtype as QuantDType), 'the quantized GEMM\'s split-K sums')) {
      this.driver.call('cuMemsetD8Async', acc.ptr, 0, acc.bytes, this.ctx.stream);
    }
  }

  /** Weights share a few large allocations (bump-allocated, 256-byte aligned). */
  private poolAlloc(bytes: number): number {
    const size = Math.ceil(bytes / 256) * 256;
    let chunk = this.pool.find((c) => c.size - c.used >= size);
    if (!chunk) {
      const chunkSize = Math.max(POOL_CHUNK, size);
      chunk = { ptr: this.alloc(chunkSize, `weights (${fmt(chunkSize)} more)`), size: chunkSize, used: 0 };
      this.pool.push(chunk);
    }
    const p = chunk.ptr + chunk.used;
    chunk.used += size;
    return p;
  }

  arena(bytes: number): Tensor {
    return new CudaTensor([Math.ceil(bytes / 4)], 'f32', this.alloc(bytes, 'the activation arena'), true);
  }

  view(arena: Tensor, offset: number, shape: number[], dtype: DType): Tensor {
    return new CudaTensor(shape, dtype, ptr(arena) + offset, false);
  }

  buffer(shape: number[], dtype: DType): Tensor {
    const t = new CudaTensor(shape, dtype, 0, true);
    const p = this.alloc(t.bytes, `a [${shape.join(', ')}] ${dtype} buffer (the KV cache)`);
    this.driver.call('cuMemsetD8Async', p, 0, t.bytes, this.ctx.stream);
    return new CudaTensor(shape, dtype, p, true);
  }

  free(t: Tensor): void {
    const c = t as CudaTensor;
    if (!c.owned || this.disposed) return;
    this.driver.call('cuStreamSynchronize', this.ctx.stream);
    this.driver.call('cuMemFree', c.ptr);
  }

  // ---- transfers ----

  /**
   * Uploads go through pinned staging memory as asynchronous copies on the stream (a synchronous copy from
   * pageable memory costs tens of microseconds); the staging bytes are reused once the stream has synchronised.
   */
  writeInt(dst: Tensor, src: Int32Array, count: number): void {
    if (count === 0) return;
    const bytes = count * 4, s = this.staging;
    if (bytes > STAGING) {
      this.driver.call('cuMemcpyHtoD', ptr(dst), src.subarray(0, count), bytes);
      return;
    }
    if (s.used + bytes > STAGING) this.synchronize();
    new Int32Array(s.view, s.used, count).set(src.length === count ? src : src.subarray(0, count));
    this.driver.call('cuMemcpyHtoDAsync', ptr(dst), s.address + s.used, bytes, this.ctx.stream);
    s.used += (bytes + 15) & ~15;
  }

  scatterInt(dst: Tensor, pairs: Tensor, count: number): void {
    scatterInt(this.ctx, dst, pairs, count);
  }

  private read(src: Tensor, bytes: number): ArrayBuffer {
    if (bytes <= this.pinned.view.byteLength) {
      this.driver.call('cuMemcpyDtoHAsync', this.pinned.ptr, ptr(src), bytes, this.ctx.stream);
      this.synchronize();
      return this.pinned.view;
    }
    if (this.host.byteLength < bytes) this.host = new ArrayBuffer(bytes);
    this.driver.call('cuMemcpyDtoH', new Uint8Array(this.host, 0, bytes), ptr(src), bytes);
    return this.host;
  }

  readFloat(src: Tensor, count: number): Float32Array {
    if (src.dtype === 'f32') return new Float32Array(this.read(src, count * 4), 0, count);
    if (src.dtype === 'i32') throw new Error('internal: readFloat of an i32 tensor');
    return toFloat32(new Uint8Array(this.read(src, count * 2), 0, count * 2).slice(), src.dtype === 'f16' ? 'F16' : 'BF16');
  }

  readInt(src: Tensor, count: number): Int32Array {
    return new Int32Array(this.read(src, count * 4), 0, count);
  }

  // synchronous copies on the legacy stream, which waits for ours (created blocking)
  readBlocks(pool: Tensor, blocks: readonly number[]): Uint8Array {
    const e = dtypeBytes(pool.dtype);
    const out = new Uint8Array(pool.shape[0] * blocks.length * pool.shape[2] * pool.shape[3] * e);
    for (const [at, to, n] of blockRegions(pool.shape, blocks, e)) this.driver.call('cuMemcpyDtoH', out.subarray(to, to + n), ptr(pool) + at, n);
    return out;
  }

  writeBlocks(pool: Tensor, blocks: readonly number[], data: Uint8Array): void {
    for (const [at, from, n] of blockRegions(pool.shape, blocks, dtypeBytes(pool.dtype))) {
      this.driver.call('cuMemcpyHtoD', ptr(pool) + at, data.subarray(from, from + n), n);
    }
  }

  synchronize(): void {
    this.driver.call('cuStreamSynchronize', this.ctx.stream);
    this.staging.used = 0;
  }

  /** GPU milliseconds of the work `body` enqueues, timed with CUDA events. */
  timeMs(body: () => void): number {
    const [a, b] = [this.driver.handle('cuEventCreate', 0), this.driver.handle('cuEventCreate', 0)];
    try {
      this.driver.call('cuEventRecord', a, this.ctx.stream);
      body();
      this.driver.call('cuEventRecord', b, this.ctx.stream);
      this.driver.call('cuEventSynchronize', b);
      const ms = [0];
      this.driver.call('cuEventElapsedTime', ms, a, b);
      return ms[0];
    } finally {
      this.driver.call('cuEventDestroy', a);
      this.driver.call('cuEventDestroy', b);
    }
  }

  /** Device-to-device copy of `bytes` (benchmarks measure the copy bandwidth with it). */
  copy(dst: Tensor, src: Tensor, bytes: number): void {
    this.driver.call('cuMemcpyDtoDAsync', ptr(dst), ptr(src), bytes, this.ctx.stream);
  }

  // ---- graphs: the first run of a key is eager (it also tunes GEMMs), the second is captured, then replays ----

  graph(key: string, body: () => void): void {
    // with an op hook (a per-op profile), ops run one by one so that each is seen (a replay is one launch)
    if (this.opHook) return body();
    const g = this.graphs.get(key);
    if (!this.useGraphs || g === undefined) {
      body();
      this.graphs.set(key, null);
      return;
    }
    if (g) {
      this.driver.call('cuGraphLaunch', g.exec, this.ctx.stream);
      return;
    }
    const stream = this.ctx.stream;
    this.driver.call('cuStreamBeginCapture', stream, CU.STREAM_CAPTURE_MODE_RELAXED);
    const out: Handle[] = [null];
    try {
      body();
    } catch (err) {
      // leave capture mode whatever happened, so the stream stays usable
      this.driver.raw('cuStreamEndCapture')(stream, out);
      if (out[0]) this.driver.call('cuGraphDestroy', out[0]);
      throw err;
    }
    this.driver.call('cuStreamEndCapture', stream, out);
    const graph = out[0];
    const exec = this.driver.handle('cuGraphInstantiate', graph, 0);
    this.graphs.set(key, { graph, exec });
    this.driver.call('cuGraphLaunch', exec, stream);
  }

  /** Kernel nodes in the graph captured for `key` (for tests and reports). */
  graphNodes(key: string): number {
    const g = this.graphs.get(key);
    if (!g) return 0;
    const count = [0];
    this.driver.call('cuGraphGetNodes', g.graph, null, count);
    return count[0];
  }

  invalidateGraphs(): void {
    for (const g of this.graphs.values()) {
      if (!g) continue;
      this.driver.call('cuGraphExecDestroy', g.exec);
      this.driver.call('cuGraphDestroy', g.graph);
    }
    this.graphs.clear();
  }

  // ---- a hook around every op: bench/cuda-timing.ts's OpProfiler times each op with it ----

  private opHook: ((name: string, launch: () => void) => void) | null = null;

  /** Runs every op through `hook`, which must call `launch` once, and no graph (a replay is one launch); null: directly again. */
  setOpHook(hook: ((name: string, launch: () => void) => void) | null): void {
    this.opHook = hook;
  }

  private op(name: string, launch: () => void): void {
    if (this.opHook) this.opHook(name, launch);
    else launch();
  }

  // ---- ops ----

  embed(out: Tensor, ids: Tensor, positions: Tensor, tok: Tensor, pos: Tensor | null, typeIds: Tensor | null, types: Tensor | null, n: number): void {
    this.op('embed', () => embed(this.ctx, out, ids, positions, tok, pos, typeIds, types, n));
  }

  embedSlice(out: Tensor, ids: Tensor, table: Tensor, first: number, n: number): void {
    this.op('embedSlice', () => embedSlice(this.ctx, out, ids, table, first, n));
  }

  layerNorm(out: Tensor, x: Tensor, gamma: Tensor, beta: Tensor, eps: number, n: number): void {
    this.op('layerNorm', () => layerNorm(this.ctx, out, x, gamma, beta, eps, n));
  }

  addBiasResidualLayerNorm(sum: Tensor, norm: Tensor, x: Tensor, bias: Tensor | null, residual: Tensor,
    gamma: Tensor, beta: Tensor, eps: number, n: number): void {
    this.op('addBiasResidualLayerNorm', () => addBiasResidualLayerNorm(this.ctx, sum, norm, x, bias, residual, gamma, beta, eps, n));
  }

  linear(out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, act: Activation, n: number): void {
    this.op(this.opHook ? `linear ${n}x${w.shape[1]} -> ${w.shape[0]}` : 'linear', () => linear(this.ctx, out, x, w, bias, act, n));
  }

  normLinear(out: Tensor, x: Tensor, norm: Norm, w: Tensor, bias: Tensor | null, act: Activation, n: number, scratch: Tensor): void {
    this.op(this.opHook ? `normLinear ${n}x${w.shape[1]} -> ${w.shape[0]}` : 'normLinear', () => normLinear(this.ctx, out, x, norm, w, bias, act, n, scratch));
  }

  gatedActivation(out: Tensor, x: Tensor, act: Activation, n: number): void {
    this.op('gatedActivation', () => gatedActivation(this.ctx, out, x, act, n));
  }

  rotary(qkv: Tensor, positions: Tensor, lengths: Tensor, rot: Rotary, shape: AttentionShape, norms: HeadNorms | null, n: number): void {
    this.op('rotary', () => rotary(this.ctx, qkv, positions, lengths, rot, shape, norms, n));
  }

  linearResidual(residual: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, n: number, scratch: Tensor): void {
    this.op(this.opHook ? `linearResidual ${n}x${w.shape[1]} -> ${w.shape[0]}` : 'linearResidual', () => linearResidual(this.ctx, residual, x, w, bias, n, scratch));
  }

  gatedLinearResidual(residual: Tensor, x: Tensor, act: Activation, w: Tensor, bias: Tensor | null, n: number, gated: Tensor, product: Tensor): void {
    this.op(this.opHook ? `gatedLinearResidual ${n}x${w.shape[1]} -> ${w.shape[0]}` : 'gatedLinearResidual',
      () => gatedLinearResidual(this.ctx, residual, x, act, w, bias, n, gated, product));
  }

  writeKV(qkv: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor, slots: Tensor, positions: Tensor, n: number): void {
    this.op('writeKV', () => writeKV(this.ctx, qkv, kCache, vCache, blockTables, slots, positions, n));
  }

  attend(out: Tensor, qkv: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor, slots: Tensor, keyLens: Tensor,
    shape: AttentionShape, n: number, segments: Segments): void {
    // batch-invariant: prompt rows through the decode kernel, as the CPU backend does, so that a row has the same bits
    // whichever pass computes it (a prefix-cache hit or a chunk boundary can leave a prompt's last row to a decode step,
    // and a recomputed request's generated rows go through a prompt pass). writeKV has stored the rows' keys already;
    // the kernel's own store of each row's k and v at keyLens - 1 (its position) writes the same values again.
    if (this.batchInvariant) return this.op('attend', () => attendDecode(this.ctx, out, qkv, kCache, vCache, blockTables, slots, keyLens, shape, n));
    this.op('attend', () => attendPrompt(this.ctx, out, qkv, kCache, vCache, blockTables, slots, keyLens, shape, n, segments));
  }

  attendEncoder(out: Tensor, qkv: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor, slots: Tensor, positions: Tensor,
    keyLens: Tensor, shape: AttentionShape, n: number, segments: Segments): void {
    // the tensor-core kernel reads keys and values from the rows themselves: no cache write
    if (flashTakes(out, qkv, qkv, qkv, shape)) return this.op('attend', () => attendFromRows(this.ctx, out, qkv, keyLens, shape, n, segments));
    this.writeKV(qkv, kCache, vCache, blockTables, slots, positions, n);
    // bidirectional: every row's keys are its whole segment, so the decode kernel's store at keyLens - 1 would be wrong
    this.op('attend', () => attendPrompt(this.ctx, out, qkv, kCache, vCache, blockTables, slots, keyLens, shape, n, segments));
  }

  decodeAttention(out: Tensor, qkv: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor, slots: Tensor, keyLens: Tensor,
    shape: AttentionShape, n: number): void {
    this.op('decodeAttention', () => attendDecode(this.ctx, out, qkv, kCache, vCache, blockTables, slots, keyLens, shape, n));
  }

  crossAttention(out: Tensor, q: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor, slots: Tensor, lengths: Tensor,
    shape: AttentionShape, n: number): void {
    this.op('crossAttention', () => attendCross(this.ctx, out, q, kCache, vCache, blockTables, slots, lengths, shape, n));
  }

  allReduce(): void {
    throw new Error('internal: an all-reduce on a CUDA backend, which has no tensor-parallel group');
  }

  allGather(): void {
    throw new Error('internal: an all-gather on a CUDA backend, which has no tensor-parallel group');
  }

  sendRows(): void {
    throw new Error('internal: sendRows on a CUDA backend, which is no pipeline stage');
  }

  recvRows(): void {
    throw new Error('internal: recvRows on a CUDA backend, which is no pipeline stage');
  }

  copyBlocks(pool: Tensor, pairs: Tensor, count: number): void {
    this.op('copyBlocks', () => copyBlocks(this.ctx, pool, pairs, count));
  }

  gatherRows(out: Tensor, x: Tensor, srcRows: Tensor, dstRows: Tensor, n: number): void {
    this.op('gatherRows', () => gatherRows(this.ctx, out, x, srcRows, dstRows, n));
  }

  meanPool(out: Tensor, x: Tensor, starts: Tensor, lengths: Tensor, n: number): void {
    this.op('meanPool', () => meanPool(this.ctx, out, x, starts, lengths, n));
  }

  processLogits(scores: Tensor, logits: Tensor, rows: SampleRows, seqs: SequenceTables, n: number): void {
    this.op('processLogits', () => processLogits(this.ctx, scores, logits, rows, seqs, n));
  }

  selectCandidates(out: Candidates, scores: Tensor, rows: SampleRows, seqs: SequenceTables, n: number, status: Tensor): void {
    this.op('selectCandidates', () => selectCandidates(this.ctx, out, scores, rows, seqs, n, status));
  }

  sample(ids: Tensor, scores: Tensor, candidates: Candidates, rows: SampleRows, seqs: SequenceTables, n: number): void {
    this.op('sample', () => sample(this.ctx, ids, scores, candidates, rows, seqs, n));
  }

  logprobs(out: Tensor, logits: Tensor, ids: Tensor, rows: SampleRows, seqs: SequenceTables, n: number, scratch: Candidates): void {
    this.op('logprobs', () => logprobs(this.ctx, out, logits, ids, rows, seqs, n, scratch));
  }

  advance(positions: Tensor, keyLens: Tensor, rows: SampleRows, seqs: SequenceTables, n: number): void {
    this.op('advance', () => advance(this.ctx, positions, keyLens, rows, seqs, n));
  }

  dispose(): void {
    if (this.disposed) return;
    this.invalidateGraphs();
    this.driver.call('cuStreamSynchronize', this.ctx.stream);
    for (const c of this.pool) this.driver.call('cuMemFree', c.ptr);
    const { partials, counters } = this.ctx.decodeSplit;
    for (const p of [...this.retiredScratch, this.ctx.quantScratch.ptr, this.ctx.qmmaAcc.ptr, partials, counters]) if (p) this.driver.call('cuMemFree', p);
    this.ctx.blas.dispose();
    this.ctx.kernels.dispose();
    this.driver.call('cuMemFreeHost', this.pinned.ptr);
    this.driver.call('cuMemFreeHost', this.staging.ptr);
    this.disposed = true;
  }
}
