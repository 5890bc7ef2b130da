// SmoothQuant W8A8 weights (`peregrine quantize --method smoothquant`, engine/smoothquant.ts): a [N, K] layer's
// weight W multiplied by a smoothing scale s per input (W' = W diag(s), moving activation outliers into the weights),
// quantized to int8 per output channel (ws[n] = max_k |W'[n, k]| / 127); its input x divided by s and quantized to
// int8 per token as it runs (a = max_k |x[k] / s[k]| / 127). Then y[n] = a ws[n] sum_k q_x[k] q_w[n, k].
// Stored in a checkpoint as x.weight (I8 [N, K]), x.weight_scale (F32 [N]) and x.smooth_scale (F32 [K]); held by
// the backends in one layout: int8 [N, K], then ws (f32 [N]), then m = 1 / s (f32 [K]).
// quantizeTokens and w8a8Linear are the reference the kernels are checked against.
import { roundAway } from './dtypes.js';

const f = Math.fround;

export function w8a8Layout(N: number, K: number): { scales: number; multipliers: number; bytes: number } {
  const scales = Math.ceil((N * K) / 16) * 16;
  return { scales, multipliers: scales + 4 * N, bytes: scales + 4 * N + 4 * K };
}


/** Weight rows [N, K] (smoothed: W diag(s)) as int8 per output channel: the quants and each row's scale. */
export function quantizeRows(w: Float32Array, N: number, K: number): { q: Int8Array; scales: Float32Array } {
  const q = new Int8Array(N * K), scales = new Float32Array(N);
  for (let n = 0; n < N; n++) {
    let amax = 0;
    for (let k = 0; k < K; k++) amax = Math.max(amax, Math.abs(w[n * K + k]));
    const d = f(amax / 127), id = d ? f(1 / d) : 0;
    scales[n] = d;
    for (let k = 0; k < K; k++) q[n * K + k] = Math.max(-127, Math.min(127, roundAway(f(w[n * K + k] * id))));
  }
  return { q, scales };
}

/** The layout from int8 quants [N, K], row scales [N] and input multipliers [K] (1 / s: multipliersOf). */
export function w8a8Bytes(q: Int8Array, scales: Float32Array, multipliers: Float32Array): Uint8Array {
  const N = scales.length, K = multipliers.length, at = w8a8Layout(N, K);
  const out = new Uint8Array(at.bytes);
  out.set(new Uint8Array(q.buffer, q.byteOffset, N * K));
  new Float32Array(out.buffer, at.scales, N).set(scales);
  new Float32Array(out.buffer, at.multipliers, K).set(multipliers);
  return out;
}

/** The input multipliers of smoothing scales s: 1 / s in f32. */
export function multipliersOf(smooth: Float32Array): Float32Array {
  return smooth.map((s) => f(1 / s));
}

/** The parts of a layout: quants, row scales, input multipliers (1 / s); views where `bytes` is 4-byte aligned. */
export function w8a8Parts(bytes: Uint8Array, N: number, K: number): { q: Int8Array; scales: Float32Array; multipliers: Float32Array } {
  const at = w8a8Layout(N, K), b = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice(), o = b.byteOffset;
  return { q: new Int8Array(b.buffer, o, N * K), scales: new Float32Array(b.buffer, o + at.scales, N), multipliers: new Float32Array(b.buffer, o + at.multipliers, K) };
}

/** The weight the layout stands for, [N, K]: q ws[n] / s[k]. */
export function dequantizeW8A8(bytes: Uint8Array, N: number, K: number): Float32Array {
  const { q, scales, multipliers } = w8a8Parts(bytes, N, K);
  return Float32Array.from({ length: N * K }, (_, i) => f(f(q[i] * scales[Math.floor(i / K)]) * multipliers[i % K]));
}

/**
 * Rows of x [M, K] divided by s (times m = 1 / s) and quantized to int8 per row: xq and each row's scale
 * (a = max |x m| / 127; q = round(x m / a), halves away from zero).
 */
export function quantizeTokens(x: Float32Array, M: number, K: number, multipliers: Float32Array): { q: Int8Array; scales: Float32Array } {
  const q = new Int8Array(M * K), scales = new Float32Array(M), row = new Float32Array(K);
  for (let m = 0; m < M; m++) {
    let amax = 0;
    for (let k = 0; k < K; k++) {
      row[k] = f(x[m * K + k] * multipliers[k]);
      amax = Math.max(amax, Math.abs(row[k]));
    }
    const a = f(amax / 127), ia = a ? f(1 / a) : 0;
    scales[m] = a;
    for (let k = 0; k < K; k++) q[m * K + k] = roundAway(f(row[k] * ia));
  }
  return { q, scales };
}

/** out [M, N] = (a_m ws_n) sum_k q_x[m, k] q_w[n, k]: the integer sums exact, then one f32 product. */
export function w8a8Linear(out: Float32Array, x: Float32Array, bytes: Uint8Array, M: number, N: number, K: number): void {
  const { q, scales, multipliers } = w8a8Parts(bytes, N, K);
  const xq = quantizeTokens(x, M, K, multipliers);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += xq.q[m * K + k] * q[n * K + k];
      out[m * N + n] = f(f(acc) * f(xq.scales[m] * scales[n]));
    }
  }
}

/** Layers of one input stacked along N (fused QKV, gate and up), or null where their smoothing scales differ. */
export function concatW8A8(parts: { bytes: Uint8Array; rows: number }[], K: number): Uint8Array | null {
  const all = parts.map((p) => w8a8Parts(p.bytes, p.rows, K));
  if (all.some((p) => p.multipliers.some((m, k) => m !== all[0].multipliers[k]))) return null;
  const N = parts.reduce((a, p) => a + p.rows, 0);
  const q = new Int8Array(N * K), scales = new Float32Array(N);
  let row = 0;
  for (const p of all) {
    q.set(p.q, row * K);
    scales.set(p.scales, row);
    row += p.scales.length;
  }
  return w8a8Bytes(q, scales, all[0].multipliers);
}
