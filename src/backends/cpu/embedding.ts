// Token (+ position) (+ token type) embedding lookup into packed rows.

export function embed(
  out: Float32Array, ids: Int32Array, positions: Int32Array, tok: Float32Array, pos: Float32Array | null,
  typeIds: Int32Array | null, types: Float32Array | null, n: number, H: number,
): void {
  for (let t = 0; t < n; t++) {
    const o = t * H, a = ids[t] * H, b = positions[t] * H;
    if (!pos) {
      for (let i = 0; i < H; i++) out[o + i] = tok[a + i];
    } else if (types && typeIds) {
      const c = typeIds[t] * H;
      for (let i = 0; i < H; i++) out[o + i] = tok[a + i] + pos[b + i] + types[c + i];
    } else {
      for (let i = 0; i < H; i++) out[o + i] = tok[a + i] + pos[b + i];
    }
  }
}
