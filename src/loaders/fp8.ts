// FP8 (E4M3) weights, `--quantize fp8`: each output channel of a [N, K] layer scaled into E4M3's range
// (s[n] = max_k |W[n, k]| / 448) and rounded to E4M3 (round to nearest even, saturating at 448, as the GPU's
// cvt.rn.satfinite.e4m3 does). Held by the backends in one layout: E4M3 bytes [N, K], then s (f32 [N]) at a 16-byte
// boundary. On the GPU (src/backends/cuda/qlinear.ts) one row of x runs a GEMV that reads the E4M3 bytes against x
// as it is; more rows are quantized to E4M3 per token the same way (quantizeFp8Rows) and multiplied by cuBLASLt's
// FP8 tensor-core GEMM. The CPU reference dequantizes the weights and keeps x as it is.
const f = Math.fround;

/** E4M3's largest finite value */
export const E4M3_MAX = 448;

/** The value of each E4M3 byte (0x7f and 0xff: NaN). */
export const E4M3_VALUES: Float32Array = Float32Array.from({ length: 256 }, (_, b) => {
  const e = (b >> 3) & 15, m = b & 7, sign = b & 0x80 ? -1 : 1;
  if (e === 15 && m === 7) return NaN;
  return sign * (e === 0 ? m * 2 ** -9 : (8 + m) * 2 ** (e - 10));
});

function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** An f32 value as an E4M3 byte: round to nearest even, saturating at +-448; NaN as 0x7f. */
export function toE4M3(v: number): number {
  if (Number.isNaN(v)) return 0x7f;
  const sign = v < 0 || Object.is(v, -0) ? 0x80 : 0;
  const a = Math.abs(v);
  if (a >= E4M3_MAX) return sign | 0x7e;
  if (a === 0) return sign;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  // 3 mantissa bits: a quantum of 2^(e - 3) in [2^e, 2^(e + 1)); subnormals below 2^-6 share 2^-9
  const quantum = 2 ** (Math.max(e, -6) - 3);
  const r = roundHalfEven(a / quantum) * quantum;
  if (r === 0) return sign;
  if (r < 2 ** -6) return sign | (r / 2 ** -9);
  let re = Math.floor(Math.log2(r));
  if (2 ** re > r) re--;
  return sign | ((re + 7) << 3) | (r / 2 ** (re - 3) - 8);
}

export function fp8Layout(N: number, K: number): { scales: number; bytes: number } {
  const scales = Math.ceil((N * K) / 16) * 16;
  return { scales, bytes: scales + 4 * N };
}

/**
 * Rows [N, K] as E4M3 per row: s = max |row| / 448 (a NaN passed over, as fmaxf does), q = e4m3(x * (1 / s)).
 * The weights' quantizer (kernels/fp8.cu quantize_weight_fp8 bit for bit), and the per-token rounding of x on the GPU's
 * GEMM path (kernels/fp8.cu quantize_fp8_tokens).
 */
export function quantizeFp8Rows(x: Float32Array, N: number, K: number): { q: Uint8Array; scales: Float32Array } {
  const q = new Uint8Array(N * K), scales = new Float32Array(N);
  for (let n = 0; n < N; n++) {
    let amax = 0;
    for (let k = 0; k < K; k++) {
      const a = Math.abs(x[n * K + k]);
      if (a > amax) amax = a;
    }
    const s = f(amax / E4M3_MAX), is = s ? f(1 / s) : 0;
    scales[n] = s;
    for (let k = 0; k < K; k++) q[n * K + k] = toE4M3(f(x[n * K + k] * is));
  }
  return { q, scales };
}

/** A float [N, K] weight in the FP8 layout. */
export function quantizeFp8(w: Float32Array, N: number, K: number): Uint8Array {
  const { q, scales } = quantizeFp8Rows(w, N, K), at = fp8Layout(N, K);
  const out = new Uint8Array(at.bytes);
  out.set(q);
  new Float32Array(out.buffer, at.scales, N).set(scales);
  return out;
}

/** four little-endian bytes read as an f32 without a view per read (hosts Node runs on are little-endian, as the layout is) */
const scaleBits = new Uint8Array(4), scaleValue = new Float32Array(scaleBits.buffer);

/** Row j of a [N, K] FP8 weight as floats into out[at ..]: e4m3 value times the row's scale. */
export function dequantizeFp8Row(src: Uint8Array, N: number, K: number, j: number, out: Float32Array, at: number): void {
  const o = fp8Layout(N, K).scales + 4 * j;
  for (let i = 0; i < 4; i++) scaleBits[i] = src[o + i];
  const s = scaleValue[0];
  for (let k = 0; k < K; k++) out[at + k] = f(E4M3_VALUES[src[j * K + k]] * s);
}

export function dequantizeFp8(src: Uint8Array, N: number, K: number): Float32Array {
  const out = new Float32Array(N * K);
  for (let j = 0; j < N; j++) dequantizeFp8Row(src, N, K, j, out, j * K);
  return out;
}

/** x's rows as the GPU's FP8 GEMM takes them: each quantized to E4M3 per token, then back to floats. */
export function roundTokensToFp8(x: Float32Array, K: number): Float32Array {
  const rows = x.length / K, { q, scales } = quantizeFp8Rows(x, rows, K);
  return Float32Array.from(q, (b, i) => f(E4M3_VALUES[b] * scales[Math.floor(i / K)]));
}
