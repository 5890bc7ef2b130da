// LayerNorm kernels (kernels/layernorm.cu) and the gated activations (kernels/activation.cu): row-wise ops that read
// and write each element once, so bound by memory. Decode shapes (1 and 64 rows of GPT-2 1.5B and Llama-3-8B) show
// each launch's latency; the 8192-row shapes show bandwidth.
import { copiesFor, type KernelCase, type Tensors } from './harness.js';

const ROWS: [number, number][] = [[1, 1600], [64, 1600], [1, 4096], [64, 4096], [8192, 4096]];

export function* layernorm(t: Tensors): Generator<KernelCase> {
  const b = t.b;
  for (const [n, H] of ROWS) {
    const per = 2 * n * H * t.eb, copies = copiesFor(per);
    const gamma = t.random([H]), beta = t.random([H]);
    const xs = Array.from({ length: copies }, () => t.random([n, H])), outs = Array.from({ length: copies }, () => t.buffer([n, H]));
    yield { op: 'layerNorm', shape: `[${n}, ${H}]`, bytes: per + 2 * H * t.eb, copies, run: (i) => b.layerNorm(outs[i], xs[i], gamma, beta, 1e-5, n) };
  }
  for (const [n, H] of ROWS) {
    // x and the residual read, the sum (over the residual) and the norm written
    const per = 4 * n * H * t.eb, copies = copiesFor(per);
    const gamma = t.random([H]), beta = t.random([H]), bias = t.random([H]);
    const xs = Array.from({ length: copies }, () => t.random([n, H])), res = Array.from({ length: copies }, () => t.random([n, H]));
    const outs = Array.from({ length: copies }, () => t.buffer([n, H]));
    yield {
      op: 'addBiasResidualLayerNorm', shape: `[${n}, ${H}]`, bytes: per + 3 * H * t.eb, copies,
      run: (i) => b.addBiasResidualLayerNorm(res[i], outs[i], xs[i], bias, res[i], gamma, beta, 1e-5, n),
    };
  }
}

export function* activation(t: Tensors): Generator<KernelCase> {
  const b = t.b;
  // [rows, F]: Llama-3.2-1B's and Llama-3-8B's MLP widths
  for (const [n, F] of [[1, 8192], [64, 14336], [4096, 14336]]) {
    const per = 3 * n * F * t.eb, copies = copiesFor(per);
    const xs = Array.from({ length: copies }, () => t.random([n, 2 * F])), outs = Array.from({ length: copies }, () => t.buffer([n, F]));
    yield { op: 'gatedActivation silu', shape: `[${n}, 2 x ${F}]`, bytes: per, copies, run: (i) => b.gatedActivation(outs[i], xs[i], 'silu', n) };
  }
}
