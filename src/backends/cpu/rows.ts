// Row movements over packed activations: gathering chosen rows, and mean pooling per sequence.

export function gatherRows(out: Float32Array, x: Float32Array, srcRows: Int32Array, dstRows: Int32Array, n: number, W: number): void {
  for (let i = 0; i < n; i++) {
    const a = srcRows[i] * W, b = dstRows[i] * W;
    for (let j = 0; j < W; j++) out[b + j] = x[a + j];
  }
}

export function meanPool(out: Float32Array, x: Float32Array, starts: Int32Array, lengths: Int32Array, n: number, W: number): void {
  for (let s = 0; s < n; s++) {
    const o = s * W;
    out.fill(0, o, o + W);
    for (let r = starts[s]; r < starts[s] + lengths[s]; r++) {
      const xr = r * W;
      for (let i = 0; i < W; i++) out[o + i] += x[xr + i];
    }
    const inv = 1 / lengths[s];
    for (let i = 0; i < W; i++) out[o + i] *= inv;
  }
}
