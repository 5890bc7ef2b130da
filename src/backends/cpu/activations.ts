// Elementwise activations, applied in place to x[offset .. offset + n); the reference for activate() in
// kernels/common.cuh. NaN stays NaN through every one (as in torch), so broken weights stay visible.
import type { Activation } from '../../ops/backend.js';

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const INV_SQRT2 = Math.SQRT1_2;

/** erf with absolute error below 1.2e-7 (Numerical Recipes' Chebyshev fit of erfc). */
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - r : r - 1;
}

/** BERT's gelu: x * Phi(x). */
export function gelu(x: number): number {
  return 0.5 * x * (1 + erf(x * INV_SQRT2));
}

/** GPT-2's gelu_new: the tanh approximation. */
export function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
}

/** max(x, 0), NaN kept. */
export function relu(x: number): number {
  return x < 0 ? 0 : x;
}

/** SiLU (swish): x sigmoid(x). */
export function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

/** Hugging Face's quick_gelu: x sigmoid(1.702 x). */
export function quickGelu(x: number): number {
  return x / (1 + Math.exp(-1.702 * x));
}

export function applyActivation(x: Float32Array, offset: number, n: number, act: Activation): void {
  const end = offset + n;
  switch (act) {
    case 'none':
      return;
    case 'gelu':
      for (let i = offset; i < end; i++) x[i] = gelu(x[i]);
      return;
    case 'gelu_tanh':
      for (let i = offset; i < end; i++) x[i] = geluTanh(x[i]);
      return;
    case 'tanh':
      for (let i = offset; i < end; i++) x[i] = Math.tanh(x[i]);
      return;
    case 'relu':
      for (let i = offset; i < end; i++) x[i] = relu(x[i]);
      return;
    case 'silu':
      for (let i = offset; i < end; i++) x[i] = silu(x[i]);
      return;
    case 'quick_gelu':
      for (let i = offset; i < end; i++) x[i] = quickGelu(x[i]);
      return;
  }
}

/** out[t, i] = act(x[t, i]) * x[t, F + i] for rows t < n, x [n, 2F] = gate | up: the reference for gated_act in kernels/activation.cu. */
export function gatedActivation(out: Float32Array, x: Float32Array, act: Activation, n: number, F: number): void {
  for (let t = 0; t < n; t++) {
    const o = t * F, g = 2 * t * F;
    for (let i = 0; i < F; i++) out[o + i] = x[g + i];
    applyActivation(out, o, F, act);
    for (let i = 0; i < F; i++) out[o + i] *= x[g + F + i];
  }
}
