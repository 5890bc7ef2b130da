// out[m, j] = act(sum_k x[m, k] * w[j, k] + bias[j]): the reference GEMM, cache-blocked.
// Weights are [N, K] (torch.nn.Linear layout), so every output is a contiguous dot product. Register
// blocking: one row of x against eight weight rows, or two rows of x against four, so each loaded value
// feeds several multiply-adds (V8 keeps the accumulators in registers). A block of weight rows stays in
// cache while every row of x passes over it; a quantized weight's block is dequantized into f32 first.
import { dequantizeFp8Row } from '../../loaders/fp8.js';
import { dequantizeInt4Row, int4Perm, isInt4Type } from '../../loaders/int4.js';
import { dequantizeRow, rowBytes, type StoredQuant } from '../../loaders/quant.js';
import { w8a8Linear } from '../../loaders/w8a8.js';
import type { Activation } from '../../ops/backend.js';
import { applyActivation } from './activations.js';

const ROW_BLOCK_BYTES = 256 * 1024;

export function linear(
  out: Float32Array, x: Float32Array, w: Float32Array, bias: Float32Array | null,
  act: Activation, M: number, N: number, K: number,
): void {
  const nb = rowBlock(K);
  for (let j0 = 0; j0 < N; j0 += nb) block(out, x, w, 0, j0, Math.min(N, j0 + nb), M, N, K);
  biasAndActivation(out, bias, act, M, N);
}

/** Weight rows per cache block: 256 KiB of f32 rows, a multiple of 8 rows, at least 8. */
const rowBlock = (K: number): number => Math.max(8, Math.floor(ROW_BLOCK_BYTES / (4 * K) / 8) * 8);

/** out[:, j0 .. j1) for every row of x, weight row j at w[(j - wb) K ..]. */
function block(out: Float32Array, x: Float32Array, w: Float32Array, wb: number, j0: number, j1: number, M: number, N: number, K: number): void {
  let m = 0;
  for (; m + 2 <= M; m += 2) {
    let j = j0;
    for (; j + 4 <= j1; j += 4) dot2x4(out, x, w, m, j, (j - wb) * K, N, K);
    for (; j < j1; j++) {
      dot1x1(out, x, w, m, j, (j - wb) * K, N, K);
      dot1x1(out, x, w, m + 1, j, (j - wb) * K, N, K);
    }
  }
  if (m < M) {
    let j = j0;
    for (; j + 8 <= j1; j += 8) dot1x8(out, x, w, m, j, (j - wb) * K, N, K);
    for (; j < j1; j++) dot1x1(out, x, w, m, j, (j - wb) * K, N, K);
  }
}

function biasAndActivation(out: Float32Array, bias: Float32Array | null, act: Activation, M: number, N: number): void {
  if (!bias && act === 'none') return;
  for (let m = 0; m < M; m++) {
    const o = m * N;
    if (bias) for (let j = 0; j < N; j++) out[o + j] += bias[j];
    if (act !== 'none') applyActivation(out, o, N, act);
  }
}

// out[m, j ..] for weight rows from w[w0 ..]
function dot1x8(out: Float32Array, x: Float32Array, w: Float32Array, m: number, j: number, w0: number, N: number, K: number): void {
  const xm = m * K;
  const w1 = w0 + K, w2 = w1 + K, w3 = w2 + K, w4 = w3 + K, w5 = w4 + K, w6 = w5 + K, w7 = w6 + K;
  let a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
  for (let k = 0; k < K; k++) {
    const xk = x[xm + k];
    a0 += xk * w[w0 + k];
    a1 += xk * w[w1 + k];
    a2 += xk * w[w2 + k];
    a3 += xk * w[w3 + k];
    a4 += xk * w[w4 + k];
    a5 += xk * w[w5 + k];
    a6 += xk * w[w6 + k];
    a7 += xk * w[w7 + k];
  }
  const o = m * N + j;
  out[o] = a0; out[o + 1] = a1; out[o + 2] = a2; out[o + 3] = a3;
  out[o + 4] = a4; out[o + 5] = a5; out[o + 6] = a6; out[o + 7] = a7;
}

function dot2x4(out: Float32Array, x: Float32Array, w: Float32Array, m: number, j: number, w0: number, N: number, K: number): void {
  const x0 = m * K, x1 = x0 + K;
  const w1 = w0 + K, w2 = w1 + K, w3 = w2 + K;
  let a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
  for (let k = 0; k < K; k++) {
    const p = x[x0 + k], q = x[x1 + k];
    const c0 = w[w0 + k], c1 = w[w1 + k], c2 = w[w2 + k], c3 = w[w3 + k];
    a0 += p * c0; a1 += p * c1; a2 += p * c2; a3 += p * c3;
    b0 += q * c0; b1 += q * c1; b2 += q * c2; b3 += q * c3;
  }
  const o = m * N + j, o2 = o + N;
  out[o] = a0; out[o + 1] = a1; out[o + 2] = a2; out[o + 3] = a3;
  out[o2] = b0; out[o2 + 1] = b1; out[o2 + 2] = b2; out[o2 + 3] = b3;
}

function dot1x1(out: Float32Array, x: Float32Array, w: Float32Array, m: number, j: number, wj: number, N: number, K: number): void {
  const xm = m * K;
  let a = 0;
  for (let k = 0; k < K; k++) a += x[xm + k] * w[wj + k];
  out[m * N + j] = a;
}

/** A block of weight rows at a time dequantized into `rows` (at least rowBlock(K) rows of K), then as linear() does. */
function dequantizedLinear(out: Float32Array, x: Float32Array, type: Exclude<StoredQuant, 'W8A8'>, w: Uint8Array, M: number, N: number, K: number, rows: Float32Array): void {
  // an int4 weight's input order, null where it is the identity (read once)
  const order = isInt4Type(type) ? int4Perm(type, w, N, K) : null, nb = rowBlock(K);
  const perm = order && !order.every((p, k) => p === k) ? order : null;
  for (let j0 = 0; j0 < N; j0 += nb) {
    const j1 = Math.min(N, j0 + nb);
    for (let j = j0; j < j1; j++) {
      const o = (j - j0) * K;
      if (isInt4Type(type)) dequantizeInt4Row(type, w, N, K, j, rows, o, perm);
      else if (type === 'FP8') dequantizeFp8Row(w, N, K, j, rows, o);
      else dequantizeRow(type, w, j * rowBytes(type, K), rows, o, K);
    }
    block(out, x, rows, j0, j0, j1, M, N, K);
  }
}

/** The f32 scratch quantLinear needs for a weight of K inputs. */
export const quantLinearScratch = (K: number): number => rowBlock(K) * K;

/**
 * linear() over a quantized weight w [N, K] (ggml blocks, loaders/quant.ts; grouped int4, loaders/int4.ts; E4M3, loaders/fp8.ts): each
 * weight row is dequantized once into fp32 (`rows`, quantLinearScratch(K) values), a block of rows at a time that
 * every row of x passes over, as linear() does. The reference for kernels/quant.cu and
 * kernels/mmvq.cu. SmoothQuant's W8A8 quantizes x per token and sums integers (loaders/w8a8.ts).
 */
export function quantLinear(
  out: Float32Array, x: Float32Array, type: StoredQuant, w: Uint8Array, bias: Float32Array | null,
  act: Activation, M: number, N: number, K: number, rows: Float32Array,
): void {
  if (type === 'W8A8') w8a8Linear(out, x, w, M, N, K);
  else dequantizedLinear(out, x, type, w, M, N, K, rows);
  biasAndActivation(out, bias, act, M, N);
}
