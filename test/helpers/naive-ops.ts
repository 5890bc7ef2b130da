// Textbook float64 pieces of the naive reference forwards (naive-gpt2.ts, naive-bert.ts): written from the
// Hugging Face definitions, sharing no code with the op set they check.

/** erf by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), not the CPU backend's fit. */
function erf(x: number): number {
  const s = Math.sign(x), z = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * z);
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-z * z);
  return s * y;
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const tanhGelu = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

/** ACT2FN of transformers/activations.py, by name. */
export const HF_ACT: Record<string, (x: number) => number> = {
  gelu: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  gelu_python: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  gelu_new: tanhGelu,
  gelu_pytorch_tanh: tanhGelu,
  gelu_accurate: tanhGelu,
  gelu_fast: (x) => 0.5 * x * (1 + Math.tanh(x * 0.7978845608 * (1 + 0.044715 * x * x))),
  quick_gelu: (x) => x * sigmoid(1.702 * x),
  relu: (x) => Math.max(x, 0),
  silu: (x) => x * sigmoid(x),
  swish: (x) => x * sigmoid(x),
  tanh: Math.tanh,
  linear: (x) => x,
};

export function layerNorm(x: ArrayLike<number>, g: Float32Array, b: Float32Array, eps: number): Float64Array {
  const n = x.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += x[i] / n;
  let variance = 0;
  for (let i = 0; i < n; i++) variance += (x[i] - mean) ** 2 / n;
  return Float64Array.from({ length: n }, (_, i) => ((x[i] - mean) / Math.sqrt(variance + eps)) * g[i] + b[i]);
}

/** x w + b with w stored [in, out] (GPT-2's Conv1D). */
export function conv1d(x: ArrayLike<number>, w: Float32Array, b: Float32Array): Float64Array {
  const n = x.length, m = b.length;
  const out = Float64Array.from(b);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) out[j] += x[i] * w[i * m + j];
  return out;
}

/** x w^T + b with w stored [out, in] (torch.nn.Linear). */
export function dense(x: ArrayLike<number>, w: Float32Array, b: Float32Array): Float64Array {
  const n = x.length, m = b.length;
  const out = Float64Array.from(b);
  for (let j = 0; j < m; j++) for (let i = 0; i < n; i++) out[j] += x[i] * w[j * n + i];
  return out;
}

/**
 * Multi-head attention of each query row over key rows (q, k, v: [rows][hidden]); query t sees keys
 * 0 .. keys(t) - 1.
 */
export function attention(q: Float64Array[], k: Float64Array[], v: Float64Array[], heads: number, scale: number, keys: (t: number) => number): Float64Array[] {
  const H = q[0].length, D = H / heads;
  return q.map((qt, t) => {
    const out = new Float64Array(H);
    for (let h = 0; h < heads; h++) {
      const n = keys(t);
      const s = Array.from({ length: n }, (_, j) => {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += qt[h * D + d] * k[j][h * D + d];
        return dot * scale;
      });
      const max = Math.max(...s);
      const e = s.map((x) => Math.exp(x - max));
      const sum = e.reduce((a, x) => a + x, 0);
      for (let j = 0; j < n; j++) for (let d = 0; d < D; d++) out[h * D + d] += (e[j] / sum) * v[j][h * D + d];
    }
    return out;
  });
}

export function add(a: Float64Array, b: ArrayLike<number>): Float64Array {
  return a.map((x, i) => x + b[i]);
}
