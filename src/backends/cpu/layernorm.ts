// LayerNorm and RMSNorm over rows of width H, and the fused add-bias + residual + LayerNorm of the transformer block.

/** out[r] = (x[r] - mean) / sqrt(var + eps) * gamma + beta, for rows r < n. */
export function layerNorm(out: Float32Array, x: Float32Array, gamma: Float32Array, beta: Float32Array | null, eps: number, n: number, H: number): void {
  for (let r = 0; r < n; r++) normRow(out, x, r * H, gamma, beta, eps, H);
}

/** sum = x + bias + residual, then norm = LayerNorm(sum); sum may alias residual or norm. */
export function addBiasResidualLayerNorm(
  sum: Float32Array, norm: Float32Array, x: Float32Array, bias: Float32Array | null, residual: Float32Array,
  gamma: Float32Array, beta: Float32Array, eps: number, n: number, H: number,
): void {
  for (let r = 0; r < n; r++) {
    const o = r * H;
    if (bias) for (let i = 0; i < H; i++) sum[o + i] = x[o + i] + bias[i] + residual[o + i];
    else for (let i = 0; i < H; i++) sum[o + i] = x[o + i] + residual[o + i];
    normRow(norm, sum, o, gamma, beta, eps, H);
  }
}

/** out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * gamma (+ beta), for rows r < n. */
export function rmsNorm(out: Float32Array, x: Float32Array, gamma: Float32Array, beta: Float32Array | null, eps: number, n: number, H: number): void {
  for (let r = 0; r < n; r++) rmsRow(out, x, r * H, gamma, beta, eps, H);
}

/** RMSNorm of H values of x at o into out at o (also each head of q and k, Qwen3). */
export function rmsRow(out: Float32Array, x: Float32Array, o: number, gamma: Float32Array, beta: Float32Array | null, eps: number, H: number): void {
  let ss = 0;
  for (let i = 0; i < H; i++) ss += x[o + i] * x[o + i];
  const inv = 1 / Math.sqrt(ss / H + eps);
  for (let i = 0; i < H; i++) out[o + i] = x[o + i] * inv * gamma[i] + (beta ? beta[i] : 0);
}

function normRow(out: Float32Array, x: Float32Array, o: number, gamma: Float32Array, beta: Float32Array | null, eps: number, H: number): void {
  let mean = 0;
  for (let i = 0; i < H; i++) mean += x[o + i];
  mean /= H;
  let variance = 0;
  for (let i = 0; i < H; i++) {
    const d = x[o + i] - mean;
    variance += d * d;
  }
  const inv = 1 / Math.sqrt(variance / H + eps);
  for (let i = 0; i < H; i++) out[o + i] = (x[o + i] - mean) * inv * gamma[i] + (beta ? beta[i] : 0);
}
