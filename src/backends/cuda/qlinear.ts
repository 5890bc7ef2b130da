// Linear layers over quantized weights: ggml blocks (a GGUF file's, kept as they are on the GPU; Q8_0 rearranged) and
// the grouped int4 of AWQ/GPTQ checkpoints (src/loaders/int4.ts). An int4 weight whose inputs are stored in another
// order (GPTQ's act-order) takes x gathered into that order: as it is quantized to int8, or into the scratch for the
// float GEMV; its dequantized rows are scattered back. Paths by row count:
// - up to 8 rows (decode) with 16-bit activations: kernels/mmvq.cu, the rows quantized to int8 per 32 values (a
//   pre-norm layer's RMSNorm/LayerNorm in the same kernel) and dotted with the packed weights by dp4a (llama.cpp's MMVQ);
// - up to 8 rows with f32 activations: kernels/quant.cu, the weights dequantized in registers against float x (no
//   rounding of x, so fp32 runs stay within the fp32 tolerance);
// - SmoothQuant's W8A8, every row count for now: x times the inputs' multipliers quantized to int8 per token
//   (kernels/mmvq.cu quantize_tokens), then the integer GEMV over the int8 rows, 64 rows of x at a time;
// - more rows (prompts, large batches): the weight dequantized a chunk of rows at a time (kernels/dequant.cu) into a
//   scratch buffer, each chunk multiplied by cuBLASLt into its columns of out. This costs a bf16 weight's bytes
//   twice more than the bf16 model reads (written, then read), so at batch 64 it is slower than bf16; a tiled
//   kernel reading the blocks into shared memory for tensor cores (llama.cpp's MMQ) is what beats it.
// Batch-invariant mode keeps every row count on the GEMV paths, 64 rows at a time, so a row's sums never depend on
// the rows beside it. The scratch (x as int8, its scales, the dequantized chunk) is reserved as weights load, so a
// captured graph never sees it move.
import { fail } from '../../errors.js';
import { w8a8Layout } from '../../loaders/w8a8.js';
import { dtypeBytes, type Activation, type DType, type Norm, type QuantDType, type Tensor } from '../../ops/backend.js';
import type { CudaContext } from './backend.js';
import { layerNorm } from './layernorm.js';
import { ACT_CODE, activateAfter, epilogueFor, warpsPerRow } from './linear.js';
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

export interface QuantScratch {
  ptr: number;
  bytes: number;
}

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

/** Scratch bytes a quantized [N, K] weight needs under activations of `dtype`. */
export function quantScratchBytes(N: number, K: number, dtype: DType): number {
  return layout(N, K, dtypeBytes(dtype)).bytes;
}


function kernelName(prefix: string, m: number, w: Tensor, x: Tensor, out: Tensor): string {
  // a 16-bit model's quantized LM head writes f32 logits: the kernel reads x as x's dtype and writes out's
  if (out.dtype !== x.dtype && out.dtype !== 'f32') fail('bad-argument', `a quantized linear layer writes ${x.dtype} or f32, not ${out.dtype}`);
  return `${prefix}${m}_${w.dtype as QuantDType}_${sfx(x.dtype)}${out.dtype === x.dtype ? '' : '_f32out'}`;
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
  const [N, K] = w.shape;
  const perm = permOf(w);
  if (perm) {
    // x gathered into the weight's input order in the scratch's chunk, as many rows at a time as it holds
    const xb = dtypeBytes(x.dtype), ob = dtypeBytes(out.dtype), at = layout(N, K, xb);
    const chunk = c.quantScratch.ptr + at.chunk, most = Math.floor((at.bytes - at.chunk) / (K * xb));
    for (let r0 = 0; r0 < n; r0 += most) {
      const rows = Math.min(most, n - r0);
      c.kernels.get('rows', `gather_cols_${sfx(x.dtype)}`, 'pppiu').launch(c.stream, Math.min(4096, Math.ceil((rows * K) / 256)), 1, 1, 256, 0,
        chunk, ptr(x) + r0 * K * xb, perm, K, rows * K);
      const piece = (t: Tensor, p: number, cols: number) => new CudaTensor([rows, cols], t.dtype, p, false);
      floatGemvRows(c, piece(out, ptr(out) + r0 * N * ob, N), piece(x, chunk, K), w, bias, act, rows, accumulate);
    }
    return;
  }
  floatGemvRows(c, out, x, w, bias, act, n, accumulate);
}

function floatGemvRows(c: CudaContext, out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, act: number, n: number, accumulate: boolean): void {
  const [N, K] = w.shape;
  const m = n === 1 ? 1 : GEMV_ROWS;
  const groups = Math.ceil(n / m);
  if (groups > 65535) fail('bad-argument', `quantized linear layers take at most ${65535 * m} rows per pass, got ${n}; lower --prefill-chunk`);
  const wpr = warpsPerRow(c, N, K / 32);
  c.kernels.get('quant', kernelName('qgemv', m, w, x, out), 'ppppiiiiii').launch(c.stream, Math.ceil(N / (8 / wpr)), groups, 1, 256, 0,
    ptr(out), ptr(x), ptr(w), ptr(bias), act, N, K, wpr, n, accumulate ? 1 : 0);
}

/** the largest row norm_quantize_q8 takes (256 threads x 4 x 8 values) */
const NORM_QUANTIZE_MAX = 8192;

/** What becomes of x's rows on their way to int8: nothing, a pre-norm (RMSNorm/LayerNorm), or a gated activation
 * (x [n, 2K] = gate | up). */
type Prep = { kind: 'plain' } | { kind: 'norm'; norm: Norm } | { kind: 'gated'; act: number };

/** kernels/mmvq.cu: x quantized to int8 64 rows at a time (its `prep` in the same kernel), then the dp4a GEMV over them. */
function mmvq(c: CudaContext, out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, act: number, n: number, accumulate: boolean,
  prep: Prep = { kind: 'plain' }): void {
  const [N, K] = w.shape;
  const at = layout(N, K, dtypeBytes(x.dtype)), base = c.quantScratch.ptr;
  if (at.bytes > c.quantScratch.bytes) throw new Error(`internal: quantized scratch of ${c.quantScratch.bytes} bytes, a [${N}, ${K}] layer needs ${at.bytes}`);
  const wpr = warpsPerRow(c, N, K / 32), xb = dtypeBytes(x.dtype), ob = dtypeBytes(out.dtype);
  const s = sfx(x.dtype), xq = base + at.xq, xd = base + at.xd;
  if (prep.kind !== 'plain' && !fusesPrep(w)) throw new Error(`internal: a ${w.dtype} weight takes x without a ${prep.kind} step fused`);
  for (let r0 = 0; r0 < n; r0 += QUANTIZED_ROWS) {
    const rows = Math.min(QUANTIZED_ROWS, n - r0), groups = (rows * K) / 32;
    if (w.dtype === 'w8a8') {
      // SmoothQuant: x times the inputs' multipliers, quantized per token (src/loaders/w8a8.ts)
      c.kernels.get('mmvq', `quantize_tokens_${sfx(x.dtype)}`, 'ppppi').launch(c.stream, rows, 1, 1, 256, 0, xq, xd, ptr(x) + r0 * K * xb,
        ptr(w) + w8a8Layout(N, K).multipliers, K);
    } else if (prep.kind === 'norm') {
      const { gamma, beta, eps, kind } = prep.norm;
      c.kernels.get('mmvq', `norm_quantize_q8_${s}`, 'pppppfii').launch(c.stream, rows, 1, 1, 256, 0, xq, xd, ptr(x) + r0 * K * xb, ptr(gamma), ptr(beta),
        eps, K, kind === 'rms' ? 1 : 0);
    } else if (prep.kind === 'gated') {
      c.kernels.get('mmvq', `gated_quantize_q8_${s}`, 'pppiii').launch(c.stream, Math.ceil(groups / 8), 1, 1, 256, 0, xq, xd, ptr(x) + r0 * 2 * K * xb,
        prep.act, K, groups);
    } else if (permOf(w)) {
      c.kernels.get('mmvq', `quantize_q8_perm_${s}`, 'ppppii').launch(c.stream, Math.ceil(groups / 8), 1, 1, 256, 0, xq, xd, ptr(x) + r0 * K * xb,
        permOf(w), K, groups);
    } else {
      c.kernels.get('mmvq', `quantize_q8_${s}`, 'pppi').launch(c.stream, Math.ceil(groups / 8), 1, 1, 256, 0, xq, xd, ptr(x) + r0 * K * xb, groups);
    }
    const m = rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : GEMV_ROWS;
    c.kernels.get('mmvq', kernelName('mmvq', m, w, x, out), 'pppppiiiiii').launch(c.stream, Math.ceil(N / (8 / wpr)), Math.ceil(rows / m), 1,
      256, 0, ptr(out) + r0 * N * ob, base + at.xq, base + at.xd, ptr(w), ptr(bias), act, N, K, wpr, rows, accumulate ? 1 : 0);
  }
}

/** The weight dequantized a chunk of rows at a time, each chunk through cuBLASLt into its columns of out. */
function dequantMatmul(c: CudaContext, out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, act: Activation, n: number, accumulate: boolean): void {
  const [N, K] = w.shape;
  const eb = dtypeBytes(x.dtype), ob = dtypeBytes(out.dtype);
  const at = layout(N, K, eb), R = chunkRows(N, K, eb), chunk = c.quantScratch.ptr + at.chunk;
  if (at.bytes > c.quantScratch.bytes) throw new Error(`internal: quantized scratch of ${c.quantScratch.bytes} bytes, a [${N}, ${K}] layer needs ${at.bytes}`);
  const dequant = c.kernels.get('dequant', `dequant_${w.dtype as QuantDType}_${sfx(x.dtype)}`, 'pppiiii');
  const epilogue = epilogueFor(act, bias !== null);
  for (let j0 = 0; j0 < N; j0 += R) {
    const rows = Math.min(R, N - j0);
    dequant.launch(c.stream, Math.ceil((rows * K) / 32 / 256), 1, 1, 256, 0, chunk, ptr(w), permOf(w), N, K, j0, rows);
    c.blas.matmul(ptr(out) + j0 * ob, out.dtype, ptr(x), chunk, bias ? ptr(bias) + j0 * eb : 0, epilogue, n, rows, K, x.dtype, accumulate, N);
  }
  activateAfter(c, out, act, n, N);
}

type Path = 'dequant' | 'float' | 'mmvq';

function path(c: CudaContext, out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, n: number): Path {
  // SmoothQuant's activations are always quantized per token: the integer GEMV, every row count (for now)
  if (w.dtype === 'w8a8') return 'mmvq';
  // cuBLASLt reads an epilogue's bias as the output's type; the float GEMV reads it as x's
  const biasMismatch = bias !== null && out.dtype !== x.dtype;
  if (n > GEMV_ROWS && !c.batchInvariant && !biasMismatch) return 'dequant';
  return x.dtype === 'f32' || biasMismatch ? 'float' : 'mmvq';
}

/** out = act(x w^T + bias) (+ out when `accumulate`) over a quantized w, for any row count. */
export function quantLinear(c: CudaContext, out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, act: Activation, n: number, accumulate: boolean): void {
  const p = path(c, out, x, w, bias, n);
  if (p === 'dequant') return dequantMatmul(c, out, x, w, bias, act, n, accumulate);
  if (p === 'float') return floatGemv(c, out, x, w, bias, ACT_CODE[act], n, accumulate);
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
 * A float [N, K] weight (f32) quantized into `out` as it loads, in the GPU's Q8_0 layout or the int4 layout
 * (kernels/dequant.cu; src/loaders/quantize.ts).
 */
export function quantizeOnDevice(c: CudaContext, out: Tensor, x: Tensor): void {
  const [N, K] = out.shape;
  if (x.dtype === 'f32' && (out.dtype === 'q4_g32' || out.dtype === 'q4_g64' || out.dtype === 'q4_g128')) {
    const group = Number(out.dtype.slice(4));
    if (K % group !== 0) throw new Error(`internal: rows of ${K} are not groups of ${group} (quantizeTarget picks the group)`);
    const threads = Math.max((N * K) / group, K);
    c.kernels.get('dequant', `quantize_weight_${out.dtype}`, 'ppii').launch(c.stream, Math.ceil(threads / 256), 1, 1, 256, 0, ptr(out), ptr(x), N, K);
    return;
  }
  if (out.dtype !== 'q8_0' || x.dtype !== 'f32') throw new Error(`internal: no quantizer from ${x.dtype} to ${out.dtype}`);
  const blocks = (out.shape[0] * out.shape[1]) / 32;
  c.kernels.get('dequant', 'quantize_weight_q8_0', 'ppu').launch(c.stream, Math.ceil(blocks / 256), 1, 1, 256, 0, ptr(out), ptr(x), blocks);
}

/** Q8_0 blocks as a file holds them (`blocks`, on the device) rearranged into `out`, the GPU's Q8_0 layout (kernels/quant-blocks.cuh). */
export function q8_0FromBlocks(c: CudaContext, out: Tensor, blocks: number): void {
  const n = (out.shape[0] * out.shape[1]) / 32;
  c.kernels.get('dequant', 'q8_0_from_blocks', 'ppu').launch(c.stream, Math.ceil(n / 256), 1, 1, 256, 0, ptr(out), blocks, n);
}
