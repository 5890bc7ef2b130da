// Linear layers over quantized weights: ggml blocks (a GGUF file's, kept as they are on the GPU; Q8_0 rearranged) and
// the grouped int4 of AWQ/GPTQ checkpoints (src/loaders/int4.ts). An int4 weight whose inputs are stored in another
// order (GPTQ's act-order) takes x gathered into that order: as it is quantized to int8, or into the scratch for the
// float GEMV; its dequantized rows are scattered back. Paths by row count:
// - up to 8 rows (decode) with 16-bit activations: kernels/mmvq.cu, the rows quantized to int8 per 32 values (a
//   pre-norm layer's RMSNorm/LayerNorm in the same kernel) and dotted with the packed weights by dp4a (llama.cpp's MMVQ);
// - up to 8 rows with f32 activations: kernels/quant.cu, the weights dequantized in registers against float x (no
//   rounding of x, so fp32 runs stay within the fp32 tolerance);
// - SmoothQuant's W8A8: x times the inputs' multipliers quantized to int8 per token (kernels/mmvq.cu quantize_tokens),
//   then up to 8 rows (batch-invariant mode: every row, 64 at a time) the integer GEMV over the int8 rows; more rows
//   cuBLASLt's int8 GEMM into int32 sums, scaled by x's and the weight's scales with the bias, activation and
//   residual after it (w8a8_epilogue), a pass of up to w8a8Scratch's rows at a time;
// - FP8 (E4M3) weights: one row (or outputs not a multiple of 16) the float GEMV (kernels/quant.cu) against x as it
//   is; more rows quantized to E4M3 per token and multiplied by cuBLASLt's FP8 GEMM into f32, the scales, bias, activation and residual applied
//   after it (kernels/fp8.cu), a pass of up to fp8Rows rows at a time;
// - 9 to 64 rows (decode at batch 16 to 64) with 16-bit activations: kernels/qmma.cu, the weight read once as it is
//   stored and dequantized in registers into shared memory for the tensor cores (mma.sync), split over K where its
//   column tiles alone would not fill the GPU;
// - more rows (prompts) or f32 activations: the weight dequantized a chunk of rows at a time (kernels/dequant.cu) into
//   a scratch buffer, each chunk multiplied by cuBLASLt into its columns of out. This moves a 16-bit weight's bytes
//   twice more than a 16-bit model does (written, then read), which a prompt's many rows amortize.
// Batch-invariant mode keeps every row count on the GEMV paths, 64 rows at a time, so a row's sums never depend on
// the rows beside it. The scratch (x as int8, its scales, the dequantized chunk) is reserved as weights load, so a
// captured graph never sees it move.
import { fail } from '../../errors.js';
import { fp8Layout } from '../../loaders/fp8.js';
import { w8a8Layout } from '../../loaders/w8a8.js';
import { dtypeBytes, type Activation, type DType, type Norm, type QuantDType, type Tensor } from '../../ops/backend.js';
import type { CudaContext } from './context.js';
import { layerNorm } from './layernorm.js';
import { EPILOGUE } from './blas.js';
import { ACT_CODE, activateAfter } from './activation.js';
import { epilogueFor, warpsPerRow } from './linear.js';
import { CudaTensor, ptr, sfx } from './tensor.js';

/** rows the GEMV paths take per launch (the int8 copy of x holds this many) */
const GEMV_ROWS = 8;
const QUANTIZED_ROWS = 64;
/**
 * The dequantized chunk. Keeping it in L2 does not pay: the launches and short GEMMs per chunk cost more (H100, Llama
 * 1B Q4_K batch 64, ms/step by chunk: 4 MiB 7.00, 16 MiB 4.14, 48 MiB 3.78, 128 MiB 3.75, whole matrices 3.69).
 */
const CHUNK_BYTES = Number(process.env.PEREGRINE_DEQUANT_CHUNK_MB ?? 64) * 2 ** 20;
const ALIGN = 256;

const align = (n: number): number => Math.ceil(n / ALIGN) * ALIGN;

/** Rows of a [N, K] weight dequantized per chunk: a multiple of 128 (aligned column offsets for cuBLASLt), at least 128. */
function chunkRows(N: number, K: number, eltBytes: number): number {
  return Math.min(N, Math.max(128, Math.floor(CHUNK_BYTES / (K * eltBytes) / 128) * 128));
}

/** Where the parts of the scratch lie for a layer of K inputs: int8 x, its (d, sum) pairs, the dequantized chunk. */
function layout(N: number, K: number, eltBytes: number): { xq: number; xd: number; chunk: number; bytes: number } {
  const xd = align(QUANTIZED_ROWS * K);
  const chunk = xd + align(QUANTIZED_ROWS * (K / 32) * 8);
  return { xq: 0, xd, chunk, bytes: chunk + chunkRows(N, K, eltBytes) * K * eltBytes };
}

/** Rows of x per pass of the FP8 and W8A8 GEMMs: their 4-byte product [rows, N] within 32 MiB, a multiple of 16, 16 to 1024. */
function fp8Rows(N: number): number {
  return Math.min(1024, Math.max(16, Math.floor(2 ** 25 / (4 * N) / 16) * 16));
}

/**
 * Where a GEMM over x quantized per token (FP8, W8A8) keeps its parts in the scratch, for passes of `rows` rows: x's
 * bytes (one a value), x's scales (`scaleBytes` a row: FP8's one f32, W8A8's quantize_tokens pair per 32 inputs), the
 * 4-byte product.
 */
function tokenGemmScratch(N: number, K: number, scaleBytes: number): { rows: number; xq: number; sx: number; acc: number; bytes: number } {
  const rows = fp8Rows(N), sx = align(rows * K), acc = sx + align(scaleBytes * rows);
  return { rows, xq: 0, sx, acc, bytes: acc + 4 * rows * N };
}
const fp8Scratch = (N: number, K: number) => tokenGemmScratch(N, K, 4);
const w8a8Scratch = (N: number, K: number) => tokenGemmScratch(N, K, (K / 32) * 8);

/** Scratch bytes a quantized [N, K] weight of `wtype` needs under activations of `dtype`. */
export function quantScratchBytes(N: number, K: number, dtype: DType, wtype: QuantDType): number {
  const gemv = layout(N, K, dtypeBytes(dtype)).bytes;
  return wtype === 'fp8' ? fp8Scratch(N, K).bytes : wtype === 'w8a8' ? Math.max(gemv, w8a8Scratch(N, K).bytes) : gemv;
}


/** The variant of a quantized GEMV kernel (qgemv / mmvq + this): rows a group, weight format, x's dtype, f32 output. */
function variantOf(m: number, w: Tensor, x: Tensor, out: Tensor): string {
  // a 16-bit model's quantized LM head writes f32 logits: the kernel reads x as x's dtype and writes out's
  if (out.dtype !== x.dtype && out.dtype !== 'f32') fail('bad-argument', `a quantized linear layer writes ${x.dtype} or f32, not ${out.dtype}`);
  return `${m}_${w.dtype as QuantDType}_${sfx(x.dtype)}${out.dtype === x.dtype ? '' : '_f32out'}`;
}

/** The device address of an int4 weight's input order where it is not the layer's (act-order), else 0. */
const permOf = (w: Tensor): number => (w as CudaTensor).perm;

/**
 * Whether x's step before the int8 GEMV (a pre-norm, a gated activation) can run inside its quantization: not for a
 * weight that takes x gathered into its own input order, nor for SmoothQuant's per-token quantization.
 */
const fusesPrep = (w: Tensor): boolean => !permOf(w) && w.dtype !== 'w8a8';

/** kernels/quant.cu over rows [0, n) in groups of 8 (f32 activations, or a 16-bit bias under f32 out). */
function floatGemv(c: CudaContext, out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, act: number, n: number, accumulate: boolean): void {
  inInputOrder(c, out, x, w, n, (xp, op, rows) => floatGemvRows(c, out, x, w, bias, act, rows, accumulate, xp, op));
}

/**
 * Runs `pass` over x's rows in the weight's input order, with the address of its rows of x and of out: an act-order
 * int4 weight takes x gathered by its permutation into the scratch's chunk, as many rows a pass as the chunk holds;
 * any other weight takes x as it is, all n rows in one pass.
 */
function inInputOrder(c: CudaContext, out: Tensor, x: Tensor, w: Tensor, n: number, pass: (xp: number, op: number, rows: number) => void): void {
  const perm = permOf(w);
  if (!perm) return pass(ptr(x), ptr(out), n);
  const [N, K] = w.shape, xb = dtypeBytes(x.dtype), ob = dtypeBytes(out.dtype), at = layout(N, K, xb);
  const chunk = c.quantScratch.ptr + at.chunk, most = Math.floor((at.bytes - at.chunk) / (K * xb));
  for (let r0 = 0; r0 < n; r0 += most) {
    const rows = Math.min(most, n - r0);
    c.kernels.get('rows', 'gather_cols', `_${sfx(x.dtype)}`).launch(c.stream, Math.min(4096, Math.ceil((rows * K) / 256)), 1, 1, 256, 0,
      chunk, ptr(x) + r0 * K * xb, perm, K, rows * K);
    pass(chunk, ptr(out) + r0 * N * ob, rows);
  }
}

/** The float GEMV over n rows of x's dtype at address xp into out's dtype at address op (one pass of inInputOrder). */
function floatGemvRows(c: CudaContext, out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, act: number, n: number, accumulate: boolean,
  xp: number, op: number): void {
  const [N, K] = w.shape;
  const m = n === 1 ? 1 : GEMV_ROWS;
  const groups = Math.ceil(n / m);
  if (groups > 65535) fail('bad-argument', `quantized linear layers take at most ${65535 * m} rows per pass, got ${n}; lower --prefill-chunk`);
  const wpr = warpsPerRow(c, N, K / 32);
  c.kernels.get('quant', 'qgemv', variantOf(m, w, x, out)).launch(c.stream, Math.ceil(N / (8 / wpr)), groups, 1, 256, 0,
    op, xp, ptr(w), ptr(bias), act, N, K, wpr, n, accumulate ? 1 : 0);
}

/** the largest row norm_quantize_q8 takes (256 threads x 4 x 8 values) */
const NORM_QUANTIZE_MAX = 8192;

/** What becomes of x's rows on their way to int8: nothing, a pre-norm (RMSNorm/LayerNorm), or a gated activation
 * (x [n, 2K] = gate | up). */
type Prep = { kind: 'plain' } | { kind: 'norm'; norm: Norm } | { kind: 'gated'; act: number };

/**
 * Weight rows each warp of the integer GEMV takes (kernels/quant-blocks.cuh quant_gemv): 4 for large int4 layers,
 * where a row of 2 KiB is too short to keep a warp's loads in flight, else 1. Measured on an H100 (npm run bench --
 * qgemv; Llama-3-8B's matrices, us per layer at 1 row, 1 weight row per warp -> 4): q|k|v [6144, 4096] 11.5 -> 12.1,
 * o [4096, 4096] 8.6 -> 10.4, gate|up [28672, 4096] 41.7 -> 29.7, down [4096, 14336] 21.9 -> 18.8; at 4 rows only
 * gate|up gains (69.6 -> 56.1). 2 or 4 rows per warp gained nothing consistent for Q8_0 and W8A8.
 */
function mmvqRows(w: Tensor, rows: number): number {
  const [N, K] = w.shape;
  if (!w.dtype.startsWith('q4_g') || N * K < 2 ** 25) return 1;
  return rows === 1 || N >= 16384 ? 4 : 1;
}

/** kernels/mmvq.cu: x quantized to int8 64 rows at a time (its `prep` in the same kernel), then the dp4a GEMV over them. */
function mmvq(c: CudaContext, out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, act: number, n: number, accumulate: boolean,
  prep: Prep = { kind: 'plain' }): void {
  const [N, K] = w.shape;
  const at = layout(N, K, dtypeBytes(x.dtype)), base = c.quantScratch.ptr;
  if (at.bytes > c.quantScratch.bytes) throw new Error(`internal: quantized scratch of ${c.quantScratch.bytes} bytes, a [${N}, ${K}] layer needs ${at.bytes}`);
  const R = mmvqRows(w, n);
  const wpr = warpsPerRow(c, Math.ceil(N / R), K / 32), xb = dtypeBytes(x.dtype), ob = dtypeBytes(out.dtype);
  const s = sfx(x.dtype), xq = base + at.xq, xd = base + at.xd;
  if (prep.kind !== 'plain' && !fusesPrep(w)) throw new Error(`internal: a ${w.dtype} weight takes x without a ${prep.kind} step fused`);
  for (let r0 = 0; r0 < n; r0 += QUANTIZED_ROWS) {
    const rows = Math.min(QUANTIZED_ROWS, n - r0), groups = (rows * K) / 32;
    if (w.dtype === 'w8a8') {
      // SmoothQuant: x times the inputs' multipliers, quantized per token (src/loaders/w8a8.ts)
      c.kernels.get('mmvq', 'quantize_tokens', `_${sfx(x.dtype)}`).launch(c.stream, rows, 1, 1, 256, 0, xq, xd, ptr(x) + r0 * K * xb,
        ptr(w) + w8a8Layout(N, K).multipliers, K);
    } else if (prep.kind === 'norm') {
      const { gamma, beta, eps, kind } = prep.norm;
      c.kernels.get('mmvq', 'norm_quantize_q8', `_${s}`).launch(c.stream, rows, 1, 1, 256, 0, xq, xd, ptr(x) + r0 * K * xb, ptr(gamma), ptr(beta),
        eps, K, kind === 'rms' ? 1 : 0);
    } else if (prep.kind === 'gated') {
      c.kernels.get('mmvq', 'gated_quantize_q8', `_${s}`).launch(c.stream, Math.ceil(groups / 8), 1, 1, 256, 0, xq, xd, ptr(x) + r0 * 2 * K * xb,
        prep.act, K, groups);
    } else if (permOf(w)) {
      c.kernels.get('mmvq', 'quantize_q8_perm', `_${s}`).launch(c.stream, Math.ceil(groups / 8), 1, 1, 256, 0, xq, xd, ptr(x) + r0 * K * xb,
        permOf(w), K, groups);
    } else {
      c.kernels.get('mmvq', 'quantize_q8', `_${s}`).launch(c.stream, Math.ceil(groups / 8), 1, 1, 256, 0, xq, xd, ptr(x) + r0 * K * xb, groups);
    }
    const m = rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : GEMV_ROWS;
    c.kernels.get('mmvq', 'mmvq', variantOf(m, w, x, out) + (R > 1 ? `_r${R}` : '')).launch(c.stream, Math.ceil(N / ((8 / wpr) * R)), Math.ceil(rows / m), 1,
      256, 0, ptr(out) + r0 * N * ob, base + at.xq, base + at.xd, ptr(w), ptr(bias), act, N, K, wpr, rows, accumulate ? 1 : 0);
  }
}

/** The weight dequantized a chunk of rows at a time, each chunk through cuBLASLt into its columns of out. */
function dequantMatmul(c: CudaContext, out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, act: Activation, n: number, accumulate: boolean): void {
  const [N, K] = w.shape;
  const eb = dtypeBytes(x.dtype), ob = dtypeBytes(out.dtype);
  const at = layout(N, K, eb), R = chunkRows(N, K, eb), chunk = c.quantScratch.ptr + at.chunk;
  if (at.bytes > c.quantScratch.bytes) throw new Error(`internal: quantized scratch of ${c.quantScratch.bytes} bytes, a [${N}, ${K}] layer needs ${at.bytes}`);
  const dequant = c.kernels.get('dequant', 'dequant', `_${w.dtype as QuantDType}_${sfx(x.dtype)}`);
  const epilogue = epilogueFor(act, bias !== null);
  for (let j0 = 0; j0 < N; j0 += R) {
    const rows = Math.min(R, N - j0);
    dequant.launch(c.stream, Math.ceil((rows * K) / 32 / 256), 1, 1, 256, 0, chunk, ptr(w), permOf(w), N, K, j0, rows);
    c.blas.matmul(ptr(out) + j0 * ob, out.dtype, ptr(x), chunk, bias ? ptr(bias) + j0 * eb : 0, epilogue, n, rows, K, x.dtype, accumulate, N);
  }
  activateAfter(c, out, act, n, N);
}

/**
 * More than one row over an FP8 weight: x quantized to E4M3 per token, cuBLASLt's FP8 GEMM into f32, the
 * scales, bias, activation and residual after it; FP8 rows of x per pass.
 */
function fp8Matmul(c: CudaContext, out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, act: number, n: number, accumulate: boolean): void {
  const [N, K] = w.shape, at = fp8Scratch(N, K), R = at.rows, base = c.quantScratch.ptr;
  if (at.bytes > c.quantScratch.bytes) throw new Error(`internal: quantized scratch of ${c.quantScratch.bytes} bytes, an FP8 [${N}, ${K}] layer needs ${at.bytes}`);
  const xb = dtypeBytes(x.dtype), ob = dtypeBytes(out.dtype), s = sfx(x.dtype);
  const sw = ptr(w) + fp8Layout(N, K).scales;
  const epilogue = c.kernels.get('fp8', 'fp8_epilogue', `_${s}${out.dtype === x.dtype ? '' : '_f32out'}`);
  for (let r0 = 0; r0 < n; r0 += R) {
    const rows = Math.min(R, n - r0);
    c.kernels.get('fp8', 'quantize_fp8_tokens', `_${s}`).launch(c.stream, rows, 1, 1, 256, 0, base + at.xq, base + at.sx, ptr(x) + r0 * K * xb, K);
    c.blas.matmul(base + at.acc, 'f32', base + at.xq, ptr(w), 0, EPILOGUE.DEFAULT, rows, N, K, 'e4m3');
    epilogue.launch(c.stream, Math.ceil((rows * N) / 256), 1, 1, 256, 0, ptr(out) + r0 * N * ob, base + at.acc, base + at.sx, sw, ptr(bias), act, N, rows,
      accumulate ? 1 : 0);
  }
}

/**
 * More rows than the GEMV takes over a SmoothQuant W8A8 weight: x quantized per token (quantize_tokens), cuBLASLt's
 * int8 GEMM into int32 sums, then x's and the weight's scales, bias, activation and residual (w8a8_epilogue).
 */
function w8a8Matmul(c: CudaContext, out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, act: number, n: number, accumulate: boolean): void {
  const [N, K] = w.shape, at = w8a8Scratch(N, K), R = at.rows, base = c.quantScratch.ptr;
  if (at.bytes > c.quantScratch.bytes) throw new Error(`internal: quantized scratch of ${c.quantScratch.bytes} bytes, a W8A8 [${N}, ${K}] layer needs ${at.bytes}`);
  const xb = dtypeBytes(x.dtype), ob = dtypeBytes(out.dtype), s = sfx(x.dtype), parts = w8a8Layout(N, K);
  for (let r0 = 0; r0 < n; r0 += R) {
    const rows = Math.min(R, n - r0);
    c.kernels.get('mmvq', 'quantize_tokens', `_${s}`).launch(c.stream, rows, 1, 1, 256, 0, base + at.xq, base + at.sx, ptr(x) + r0 * K * xb,
      ptr(w) + parts.multipliers, K);
    c.blas.matmul(base + at.acc, 'i32', base + at.xq, ptr(w), 0, EPILOGUE.DEFAULT, rows, N, K, 'i8');
    c.kernels.get('mmvq', 'w8a8_epilogue', `_${s}`).launch(c.stream, Math.ceil((rows * N) / 256), 1, 1, 256, 0, ptr(out) + r0 * N * ob, base + at.acc,
      base + at.sx, ptr(w) + parts.scales, ptr(bias), act, N, K / 32, rows, accumulate ? 1 : 0);
  }
}

/** kernels/qmma.cu: rows of x per block (the most it takes), weight rows per block, inputs per step, shared bytes */
const QMMA = { rows: 64, cols: 128, step: 128, smem: 2 * (64 + 128) * (128 + 8) * 2 };

/**
 * How kernels/qmma.cu splits a [N, K] layer's steps: enough blocks for two per multiprocessor (the most its shared
 * memory allows), each split at least 4 steps long.
 */
function qmmaSplits(sms: number, N: number, K: number): { splits: number; stepsPerSplit: number } {
  const tiles = Math.ceil(N / QMMA.cols), steps = Math.ceil(K / QMMA.step);
  const want = Math.max(1, Math.min(Math.floor((2 * sms) / tiles), Math.ceil(steps / 4)));
  const stepsPerSplit = Math.ceil(steps / want);
  return { splits: Math.ceil(steps / stepsPerSplit), stepsPerSplit };
}

const QMMA_TYPES = new Set<DType>(['q8_0', 'q4_0', 'q4_k', 'q5_k', 'q6_k', 'q4_g32', 'q4_g64', 'q4_g128']);

/** Bytes of split-K sums a quantized [N, K] layer takes on the tensor-core path (0 where it takes another path or one split). */
export function qmmaAccBytes(c: Pick<CudaContext, 'sms'>, N: number, K: number, dtype: DType, wtype: QuantDType): number {
  if (dtype === 'f32' || !QMMA_TYPES.has(wtype)) return 0;
  return qmmaSplits(c.sms, N, K).splits > 1 ? 4 * QMMA.rows * N : 0;
}

/**
 * 9 to 64 rows of 16-bit x on tensor cores (kernels/qmma.cu): the weight dequantized in registers, split over K into
 * the zeroed sums of ctx.qmmaAcc (then qmma_finish) where its column tiles are too few. An act-order int4 weight takes
 * x gathered into its input order in the scratch.
 */
function qmma(c: CudaContext, out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, act: number, n: number, accumulate: boolean): void {
  const [N, K] = w.shape;
  const { splits, stepsPerSplit } = qmmaSplits(c.sms, N, K);
  const s = sfx(x.dtype), os = out.dtype === x.dtype ? '' : '_f32out';
  if (splits > 1 && c.qmmaAcc.bytes < 4 * n * N) throw new Error(`internal: split-K sums of ${c.qmmaAcc.bytes} bytes, a [${N}, ${K}] layer needs ${4 * n * N}`);
  const k = c.kernels.get('qmma', 'qmma', `_${w.dtype as QuantDType}_${s}${os}`);
  k.allowSharedMemory(QMMA.smem);
  inInputOrder(c, out, x, w, n, (xp, o, rows) => {
    k.launch(c.stream, Math.ceil(N / QMMA.cols), Math.ceil(rows / QMMA.rows), splits, 256, QMMA.smem, o, c.qmmaAcc.ptr, xp, ptr(w), ptr(bias), act, N, K, rows,
      stepsPerSplit, accumulate ? 1 : 0);
    if (splits > 1) {
      c.kernels.get('qmma', 'qmma_finish', `_${s}${os}`).launch(c.stream, Math.ceil((rows * N) / 256), 1, 1, 256, 0, o, c.qmmaAcc.ptr, ptr(bias), act, N,
        rows, accumulate ? 1 : 0);
    }
  });
}

type Path = 'dequant' | 'float' | 'mmvq' | 'fp8' | 'qmma' | 'w8a8';

function path(c: CudaContext, out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, n: number): Path {
  // SmoothQuant's activations are always quantized per token: the integer GEMV up to 8 rows (batch-invariant mode:
  // every row, so that a row's sums never depend on the batch's size), past them cuBLASLt's int8 GEMM, for outputs
  // of a multiple of 16 into x's dtype (cuBLASLt's int8 GEMMs want aligned columns; a 16-bit model's f32 logits never
  // come from a W8A8 layer)
  if (w.dtype === 'w8a8') return n > GEMV_ROWS && !c.batchInvariant && w.shape[0] % 16 === 0 && out.dtype === x.dtype ? 'w8a8' : 'mmvq';
  // FP8: the float GEMV for one row (batch-invariant mode: every row), else the GEMM on tensor cores, which at 2 to 8
  // rows already beats the GEMV's 8-row kernel (H100, Llama-3-8B gate|up at 4 rows: GEMV 144 us, GEMM 45.5). cuBLASLt
  // has no FP8 GEMM for outputs of other than a multiple of 16 (CUBLAS_STATUS_NOT_SUPPORTED): those take the GEMV.
  if (w.dtype === 'fp8') return n > 1 && !c.batchInvariant && w.shape[0] % 16 === 0 ? 'fp8' : 'float';
  // cuBLASLt reads an epilogue's bias as the output's type; the float GEMV reads it as x's
  const biasMismatch = bias !== null && out.dtype !== x.dtype;
  if (n > GEMV_ROWS && !c.batchInvariant && !biasMismatch) return n <= QMMA.rows && x.dtype !== 'f32' && QMMA_TYPES.has(w.dtype) ? 'qmma' : 'dequant';
  return x.dtype === 'f32' || biasMismatch ? 'float' : 'mmvq';
}

/** out = act(x w^T + bias) (+ out when `accumulate`) over a quantized w, for any row count. */
export function quantLinear(c: CudaContext, out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, act: Activation, n: number, accumulate: boolean): void {
  const p = path(c, out, x, w, bias, n);
  if (p === 'dequant') return dequantMatmul(c, out, x, w, bias, act, n, accumulate);
  if (p === 'float') return floatGemv(c, out, x, w, bias, ACT_CODE[act], n, accumulate);
  if (p === 'fp8') return fp8Matmul(c, out, x, w, bias, ACT_CODE[act], n, accumulate);
  if (p === 'qmma') return qmma(c, out, x, w, bias, ACT_CODE[act], n, accumulate);
  if (p === 'w8a8') return w8a8Matmul(c, out, x, w, bias, ACT_CODE[act], n, accumulate);
  mmvq(c, out, x, w, bias, ACT_CODE[act], n, accumulate);
}

/** out = act(norm(x) w^T + bias) over a quantized w; on the int8 path the norm is part of x's quantization. */
export function quantNormLinear(c: CudaContext, out: Tensor, x: Tensor, norm: Norm, w: Tensor, bias: Tensor | null, act: Activation, n: number,
  scratch: Tensor): void {
  if (path(c, out, x, w, bias, n) === 'mmvq' && w.shape[1] <= NORM_QUANTIZE_MAX && fusesPrep(w)) return mmvq(c, out, x, w, bias, ACT_CODE[act], n, false, { kind: 'norm', norm });
  layerNorm(c, scratch, x, norm.gamma, norm.beta, norm.eps, n, norm.kind === 'rms');
  quantLinear(c, out, scratch, w, bias, act, n, false);
}

/**
 * residual += gatedActivation(x) w^T + bias on the int8 path, the gating done as x is quantized; false (nothing
 * done) where the layer takes another path, for the caller to gate x first.
 */
export function quantGatedLinearResidual(c: CudaContext, residual: Tensor, x: Tensor, act: Activation, w: Tensor, bias: Tensor | null, n: number): boolean {
  if (path(c, residual, x, w, bias, n) !== 'mmvq' || !fusesPrep(w)) return false;
  mmvq(c, residual, x, w, bias, 0, n, true, { kind: 'gated', act: ACT_CODE[act] });
  return true;
}

/**
 * A float [N, K] weight (f32) quantized into `out` as it loads, in the GPU's Q8_0 layout, the int4 layout
 * (kernels/dequant.cu) or the FP8 layout (kernels/fp8.cu); src/loaders/quantize.ts is the host's.
 */
export function quantizeOnDevice(c: CudaContext, out: Tensor, x: Tensor): void {
  const [N, K] = out.shape;
  if (x.dtype === 'f32' && (out.dtype === 'q4_g32' || out.dtype === 'q4_g64' || out.dtype === 'q4_g128')) {
    const group = Number(out.dtype.slice(4));
    if (K % group !== 0) throw new Error(`internal: rows of ${K} are not groups of ${group} (quantizeTarget picks the group)`);
    const threads = Math.max((N * K) / group, K);
    c.kernels.get('dequant', 'quantize_weight_q4_g', String(group)).launch(c.stream, Math.ceil(threads / 256), 1, 1, 256, 0, ptr(out), ptr(x), N, K);
    return;
  }
  if (out.dtype === 'fp8' && x.dtype === 'f32') {
    c.kernels.get('fp8', 'quantize_weight_fp8').launch(c.stream, N, 1, 1, 256, 0, ptr(out), ptr(x), N, K);
    return;
  }
  if (out.dtype !== 'q8_0' || x.dtype !== 'f32') throw new Error(`internal: no quantizer from ${x.dtype} to ${out.dtype}`);
  const blocks = (out.shape[0] * out.shape[1]) / 32;
  c.kernels.get('dequant', 'quantize_weight_q8_0').launch(c.stream, Math.ceil(blocks / 256), 1, 1, 256, 0, ptr(out), ptr(x), blocks);
}

/** Q8_0 blocks as a file holds them (`blocks`, on the device) rearranged into `out`, the GPU's Q8_0 layout (kernels/quant-blocks.cuh). */
export function q8_0FromBlocks(c: CudaContext, out: Tensor, blocks: number): void {
  const n = (out.shape[0] * out.shape[1]) / 32;
  c.kernels.get('dequant', 'q8_0_from_blocks').launch(c.stream, Math.ceil(n / 256), 1, 1, 256, 0, ptr(out), blocks, n);
}
