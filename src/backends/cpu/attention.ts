// Attention over a KV cache laid out [slots, maxSeq, hidden]: the reference for the prompt (context)
// and decode-step kernels. Queries come from packed qkv rows [tokens, 3 * hidden] (q | k | v).

/** Copies the k and v parts of each token's qkv row into its slot and position of the caches. */
export function writeKV(
  qkv: Float32Array, kCache: Float32Array, vCache: Float32Array, slots: Int32Array, positions: Int32Array,
  n: number, H: number, maxSeq: number,
): void {
  for (let t = 0; t < n; t++) {
    const src = t * 3 * H;
    const dst = (slots[t] * maxSeq + positions[t]) * H;
    for (let i = 0; i < H; i++) {
      kCache[dst + i] = qkv[src + H + i];
      vCache[dst + i] = qkv[src + 2 * H + i];
    }
  }
}

/** out[t, head] = softmax(q . k_j * scale) . v_j over keys j < keyLens[t] of slot slots[t]. */
export function attend(
  out: Float32Array, qkv: Float32Array, kCache: Float32Array, vCache: Float32Array, slots: Int32Array, keyLens: Int32Array,
  heads: number, headDim: number, scale: number, n: number, maxSeq: number, scores: Float32Array,
): void {
  const H = heads * headDim;
  for (let t = 0; t < n; t++) {
    const L = keyLens[t];
    const base = slots[t] * maxSeq * H;
    for (let h = 0; h < heads; h++) {
      const q = t * 3 * H + h * headDim;
      let max = -Infinity;
      for (let j = 0; j < L; j++) {
        const k = base + j * H + h * headDim;
        let s = 0;
        for (let i = 0; i < headDim; i++) s += qkv[q + i] * kCache[k + i];
        s *= scale;
        scores[j] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let j = 0; j < L; j++) {
        const e = Math.exp(scores[j] - max);
        scores[j] = e;
        sum += e;
      }
      const o = t * H + h * headDim;
      for (let i = 0; i < headDim; i++) out[o + i] = 0;
      for (let j = 0; j < L; j++) {
        const p = scores[j] / sum;
        const v = base + j * H + h * headDim;
        for (let i = 0; i < headDim; i++) out[o + i] += p * vCache[v + i];
      }
    }
  }
}
