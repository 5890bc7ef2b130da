// Rotary position embedding over the q and k parts of packed qkv rows: the reference for kernels/rotary.cu.
// A head's dimension i < dims / 2 pairs with i + dims / 2 (Hugging Face's rotate-half layout) and the pair
// turns by position * rate[i]; the angle is rounded to fp32 as torch computes it (fp32 rates times fp32
// positions), and so are the dynamic-NTK rates.
import type { AttentionShape, Rotary } from '../../ops/backend.js';
import { rmsRow } from './layernorm.js';

const f = Math.fround;

/** The rates of a sequence of `length` keys into `out` (invFreq unless dynamic scaling engages). */
export function rotaryRates(rot: Rotary, invFreq: Float32Array, length: number, out: Float32Array): Float32Array {
  const half = rot.dims / 2, d = rot.dynamic;
  if (!d || length <= d.original) return invFreq;
  const grow = f(f(f(f(d.factor * length) / d.original) - (d.factor - 1)) ** f(rot.dims / (rot.dims - 2)));
  const base = f(d.base * grow);
  for (let i = 0; i < half; i++) out[i] = f(1 / f(base ** f((2 * i) / rot.dims)));
  return out;
}

export function rotary(
  qkv: Float32Array, positions: Int32Array, lengths: Int32Array, rot: Rotary, invFreq: Float32Array, shape: AttentionShape,
  norms: { q: Float32Array; k: Float32Array; eps: number } | null, n: number,
): void {
  const { heads, kvHeads, headDim: D } = shape;
  const width = (heads + 2 * kvHeads) * D, half = rot.dims / 2;
  const scratch = new Float32Array(half);
  for (let t = 0; t < n; t++) {
    const rates = rotaryRates(rot, invFreq, lengths[t], scratch);
    const pos = positions[t];
    for (let h = 0; h < heads + kvHeads; h++) {
      const o = t * width + h * D;
      if (norms) rmsRow(qkv, qkv, o, h < heads ? norms.q : norms.k, null, norms.eps, D);
      for (let i = 0; i < half; i++) {
        const angle = f(pos * rates[i]);
        const c = f(Math.cos(angle)) * rot.scale, s = f(Math.sin(angle)) * rot.scale;
        const x1 = qkv[o + i], x2 = qkv[o + half + i];
        qkv[o + i] = x1 * c - x2 * s;
        qkv[o + half + i] = x2 * c + x1 * s;
      }
    }
  }
}
