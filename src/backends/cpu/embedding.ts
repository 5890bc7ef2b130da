// Token (+ position) (+ token type) embedding lookup into packed rows, and a vocabulary-parallel rank's share of it.
// Kernels: kernels/embedding.cu (embed, embed_slice).

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

/** out row t := table row ids[t] - first, or zeros where that is not a row of the table's `rows`. */
export function embedSlice(out: Float32Array, ids: Int32Array, table: Float32Array, first: number, rows: number, n: number, H: number): void {
  for (let t = 0; t < n; t++) {
    const r = ids[t] - first, o = out.subarray(t * H, (t + 1) * H);
    if (r >= 0 && r < rows) o.set(table.subarray(r * H, (r + 1) * H));
    else o.fill(0);
  }
}
