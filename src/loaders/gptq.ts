// GPTQ (Frantar et al., 2023, "Accurate Post-Training Quantization for Generative Pre-trained Transformers"): int4
// weights chosen against a layer's inputs. H = sum over calibration tokens of x x^T ([K, K], the Hessian of the
// layer's squared output error up to a factor). The inputs are quantized one at a time, in order of decreasing
// H[k, k] with act-order. Each weight's rounding error is spread over the inputs not yet quantized, through the
// rows of the upper Cholesky factor U of H^-1 (H^-1 = U^T U):
//   err = (w[i] - dequant(q[i])) / U[i, i],   w[j] -= err * U[i, j] for j > i.
// Each output row is quantized on its own; only H and the input order are shared. A group's scale and zero
// (loaders/quantize.ts's int4Group: asymmetric, f16 scale) are set from the row's updated weights when the walk
// reaches the group's first input, as AutoGPTQ does without static groups. The groups are runs of g inputs in
// quantization order, so with act-order g_idx names each input's group (the checkpoint's g_idx). The result is
// written in the layout of GPTQ checkpoints (checkpoint_format "gptq_v2": zeros as they are), which
// loaders/int4.ts's fromGptq reads.
import { int4Code, int4Group } from './quantize.js';

/** rows of W quantized together (each on its own: they share reads of U) */
const ROWS = 8;

export interface GptqSettings {
  /** inputs per group (32, 64 or 128) */
  group: number;
  /** quantize inputs in order of decreasing H[k, k] (GPTQ's desc_act) */
  actOrder: boolean;
  /** dampening added to H's diagonal, as a fraction of its mean (GPTQ's percdamp, 0.01) */
  damp: number;
}

export interface GptqLayer {
  /** codes 0..15, [N, K], inputs in the layer's order */
  q: Uint8Array;
  /** f16 bits and zero of each group t (in quantization order) and output j, at [t * N + j] */
  scales: Uint16Array;
  zeros: Uint8Array;
  /** the group of each input */
  gIdx: Int32Array;
  /** the weights the quantized layer computes with, [N, K]: scale * (q - zero) in f32 */
  dequantized: Float32Array;
  /** the dampening the Cholesky factorizations needed, as a fraction of H's mean diagonal (settings.damp, or more) */
  damp: number;
}

/** The lower Cholesky factor of a symmetric [n, n] matrix, in place (the upper triangle zeroed); false where it is not positive definite. */
function cholesky(a: Float64Array, n: number): boolean {
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    let d = a[rj + j];
    for (let k = 0; k < j; k++) d -= a[rj + k] * a[rj + k];
    if (!(d > 0)) return false;
    d = Math.sqrt(d);
    a[rj + j] = d;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let s = a[ri + j];
      for (let k = 0; k < j; k++) s -= a[ri + k] * a[rj + k];
      a[ri + j] = s / d;
    }
    a.fill(0, rj + j + 1, rj + n);
  }
  return true;
}

/** The inverse of a lower-triangular [n, n] matrix, transposed (an upper-triangular matrix). */
function invertLowerTransposed(l: Float64Array, n: number): Float64Array {
  // column c of L^-1 by forward substitution, stored as row c of the result
  const t = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    const rc = c * n;
    t[rc + c] = 1 / l[rc + c];
    for (let i = c + 1; i < n; i++) {
      const ri = i * n;
      let s = 0;
      for (let k = c; k < i; k++) s += l[ri + k] * t[rc + k];
      t[rc + i] = -s / l[ri + i];
    }
  }
  return t;
}

/**
 * U with H^-1 = U^T U (upper triangular), H [K, K] damped by `damp` times its mean diagonal; null where H is not
 * positive definite even so. With J the reversal of the K indices, J H J = B B^T (Cholesky, B lower), so
 * H = V V^T with V = J B J upper, and U = V^-1 = J B^-1 J: one factorization and one triangular inverse.
 */
function inverseFactor(h: Float64Array, K: number, damp: number): Float64Array | null {
  let mean = 0;
  for (let k = 0; k < K; k++) mean += h[k * K + k] / K;
  const b = new Float64Array(K * K);
  for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) b[i * K + j] = h[(K - 1 - i) * K + (K - 1 - j)];
  for (let k = 0; k < K; k++) b[k * K + k] += damp * mean;
  if (!cholesky(b, K)) return null;
  // t = (B^-1)^T, so U[i, j] = B^-1[K - 1 - i, K - 1 - j] = t[K - 1 - j, K - 1 - i]
  const t = invertLowerTransposed(b, K);
  const u = new Float64Array(K * K);
  for (let i = 0; i < K; i++) for (let j = i; j < K; j++) u[i * K + j] = t[(K - 1 - j) * K + (K - 1 - i)];
  return u;
}

/**
 * GPTQ of a [N, K] weight (rows are outputs) against H [K, K] (sum of x x^T over the calibration tokens; it is not
 * changed). An input no token moved (H[k, k] = 0) gets weight 0. Where H is not positive definite at
 * `settings.damp`, the dampening grows tenfold up to 1 (the returned `damp` says which); past that it throws.
 */
export function gptqQuantize(w: Float32Array, N: number, K: number, hessian: Float64Array, settings: GptqSettings): GptqLayer {
  const g = settings.group;
  if (K % g !== 0) throw new Error(`internal: ${K} inputs are not groups of ${g}`);
  const dead = Array.from({ length: K }, (_, k) => !(hessian[k * K + k] > 0));
  // the quantization order: by decreasing H[k, k] (stable) with act-order
  const order = Int32Array.from({ length: K }, (_, k) => k);
  if (settings.actOrder) order.sort((a, b) => hessian[b * K + b] - hessian[a * K + a] || a - b);
  const h = new Float64Array(K * K);
  for (let i = 0; i < K; i++) {
    for (let j = 0; j < K; j++) h[i * K + j] = hessian[order[i] * K + order[j]];
    if (dead[order[i]]) h[i * K + i] = 1;
  }
  let damp = settings.damp, u = inverseFactor(h, K, damp);
  while (!u && damp < 1) u = inverseFactor(h, K, (damp = Math.min(1, damp * 10)));
  if (!u) throw new Error('the calibration inputs make a Hessian that is not positive definite even with dampening 1; give a longer calibration text');
  const G = K / g;
  const q = new Uint8Array(N * K), dequantized = new Float32Array(N * K);
  const scales = new Uint16Array(G * N), zeros = new Uint8Array(G * N);
  // ROWS rows at a time, each on its own as above, so that a row of U is read once for all of them
  const rows = new Float64Array(ROWS * K), groups = Array.from({ length: ROWS }, () => int4Group(0, 0)), errs = new Float64Array(ROWS);
  for (let r0 = 0; r0 < N; r0 += ROWS) {
    const R = Math.min(ROWS, N - r0);
    for (let b = 0; b < R; b++) for (let i = 0; i < K; i++) rows[b * K + i] = dead[order[i]] ? 0 : w[(r0 + b) * K + order[i]];
    for (let i = 0; i < K; i++) {
      const ui = i * K, d = u[ui + i];
      for (let b = 0; b < R; b++) {
        const row = b * K, r = r0 + b;
        if (i % g === 0) {
          let lo = 0, hi = 0;
          for (let e = row + i; e < row + i + g; e++) {
            if (rows[e] < lo) lo = rows[e];
            if (rows[e] > hi) hi = rows[e];
          }
          const p = (groups[b] = int4Group(lo, hi));
          scales[(i / g) * N + r] = p.bits;
          zeros[(i / g) * N + r] = p.zero;
        }
        const p = groups[b], code = int4Code(rows[row + i], p), value = Math.fround(p.scale * (code - p.zero));
        q[r * K + order[i]] = code;
        dequantized[r * K + order[i]] = value;
        errs[b] = (rows[row + i] - value) / d;
      }
      for (let b = 0; b < R; b++) {
        const row = b * K, err = errs[b];
        for (let j = i + 1; j < K; j++) rows[row + j] -= err * u[ui + j];
      }
    }
  }
  const gIdx = new Int32Array(K);
  for (let i = 0; i < K; i++) gIdx[order[i]] = Math.floor(i / g);
  return { q, scales, zeros, gIdx, dequantized, damp };
}

/**
 * Adds x x^T of `n` input rows x [n, K] into the lower triangle of h [K, K] (symmetrize with `mirrorLower` before
 * use): four rows a sweep over h, added one after another as one row a sweep would (the same sums), so that h, as
 * large as K^2 doubles, is read a quarter as often.
 */
export function accumulateHessian(h: Float64Array, x: Float32Array, n: number, K: number): void {
  let t = 0;
  for (; t + 4 <= n; t += 4) {
    const x0 = t * K, x1 = x0 + K, x2 = x1 + K, x3 = x2 + K;
    for (let i = 0; i < K; i++) {
      const a0 = x[x0 + i], a1 = x[x1 + i], a2 = x[x2 + i], a3 = x[x3 + i], ri = i * K;
      for (let j = 0; j <= i; j++) h[ri + j] = h[ri + j] + a0 * x[x0 + j] + a1 * x[x1 + j] + a2 * x[x2 + j] + a3 * x[x3 + j];
    }
  }
  for (; t < n; t++) {
    const xt = t * K;
    for (let i = 0; i < K; i++) {
      const a = x[xt + i], ri = i * K;
      for (let j = 0; j <= i; j++) h[ri + j] += a * x[xt + j];
    }
  }
}

/** Copies the lower triangle of h [K, K] onto the upper. */
export function mirrorLower(h: Float64Array, K: number): void {
  for (let i = 0; i < K; i++) for (let j = 0; j < i; j++) h[j * K + i] = h[i * K + j];
}

/** Rows r0 .. r0 + n - 1 of a GPTQ layer as a GPTQ checkpoint stores them (gptq_v2: zeros as they are). */
export function gptqTensors(layer: GptqLayer, N: number, K: number, g: number, r0: number, n: number): { qweight: Int32Array; qzeros: Int32Array; scales: Uint16Array; gIdx: Int32Array } {
  const G = K / g;
  // qweight [K / 8, n]: nibble i of word (r, j) is input 8r + i of output j
  const qweight = new Int32Array((K / 8) * n);
  for (let j = 0; j < n; j++) {
    const src = (r0 + j) * K;
    for (let r = 0; r < K / 8; r++) {
      let word = 0;
      for (let i = 0; i < 8; i++) word |= layer.q[src + 8 * r + i] << (4 * i);
      qweight[r * n + j] = word;
    }
  }
  // qzeros [G, n / 8]: nibble i of word (t, c) is the zero of output 8c + i in group t
  const qzeros = new Int32Array(G * (n / 8)), scales = new Uint16Array(G * n);
  for (let t = 0; t < G; t++) {
    for (let j = 0; j < n; j++) {
      qzeros[t * (n / 8) + (j >> 3)] |= layer.zeros[t * N + r0 + j] << (4 * (j & 7));
      scales[t * n + j] = layer.scales[t * N + r0 + j];
    }
  }
  return { qweight, qzeros, scales, gIdx: layer.gIdx };
}

/**
 * The squared output error of weights `wq` against `w` ([N, K]) over inputs whose x x^T sum to H, per output row:
 * trace((W - Wq) H (W - Wq)^T) / rows, over rows 0, step, 2 step, ...
 */
export function outputError(w: Float32Array, wq: Float32Array, N: number, K: number, h: Float64Array, step = 1): number {
  let sum = 0, rows = 0;
  const d = new Float64Array(K);
  for (let r = 0; r < N; r += step, rows++) {
    for (let k = 0; k < K; k++) d[k] = w[r * K + k] - wq[r * K + k];
    for (let i = 0; i < K; i++) {
      let s = 0;
      for (let j = 0; j < K; j++) s += h[i * K + j] * d[j];
      sum += d[i] * s;
    }
  }
  return sum / rows;
}
