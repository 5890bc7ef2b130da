// Launchers for kernels/layernorm.cu (LayerNorm and RMSNorm): one warp per row, four rows a block, where the row fits a
// warp's registers in 16-byte vectors and every tensor is 16-byte aligned; else one block of 256 threads per row.
import { dtypeBytes, type Tensor } from '../../ops/backend.js';
import type { CudaContext } from './context.js';
import { ptr, sfx } from './tensor.js';

const THREADS = 256;
/** LNW_ROWS and LNW_ITEMS of kernels/layernorm.cu */
const WARP_ROWS = 4, WARP_ITEMS = 8;

/** Whether rows of `H` elements of these tensors go one per warp (add_ln_warp). */
function warpRows(H: number, tensors: (Tensor | null)[]): boolean {
  const V = 16 / dtypeBytes(tensors[0]!.dtype);
  return H % V === 0 && H / V <= 32 * WARP_ITEMS && tensors.every((t) => t === null || ptr(t) % 16 === 0);
}

export function layerNorm(c: CudaContext, out: Tensor, x: Tensor, gamma: Tensor, beta: Tensor | null, eps: number, n: number, rms = false): void {
  if (n === 0) return;
  const H = gamma.shape[0], s = sfx(out.dtype);
  if (warpRows(H, [out, x, gamma, beta])) {
    c.kernels.get('layernorm', 'layernorm_warp', `_${s}`)
      .launch(c.stream, Math.ceil(n / WARP_ROWS), 1, 1, 32 * WARP_ROWS, 0, ptr(out), ptr(x), ptr(gamma), ptr(beta), eps, H, rms ? 1 : 0, n);
    return;
  }
  c.kernels.get('layernorm', 'layernorm', `_${s}`)
    .launch(c.stream, n, 1, 1, THREADS, 0, ptr(out), ptr(x), ptr(gamma), ptr(beta), eps, H, rms ? 1 : 0);
}

export function addBiasResidualLayerNorm(c: CudaContext, sum: Tensor, norm: Tensor, x: Tensor, bias: Tensor | null, residual: Tensor,
  gamma: Tensor, beta: Tensor, eps: number, n: number): void {
  if (n === 0) return;
  const H = gamma.shape[0], s = sfx(sum.dtype);
  const args = [ptr(sum), ptr(norm), ptr(x), ptr(bias), ptr(residual), ptr(gamma), ptr(beta), eps, H] as const;
  if (warpRows(H, [sum, norm, x, bias, residual, gamma, beta])) {
    c.kernels.get('layernorm', 'add_bias_residual_layernorm_warp', `_${s}`)
      .launch(c.stream, Math.ceil(n / WARP_ROWS), 1, 1, 32 * WARP_ROWS, 0, ...args, n);
    return;
  }
  c.kernels.get('layernorm', 'add_bias_residual_layernorm', `_${s}`).launch(c.stream, n, 1, 1, THREADS, 0, ...args);
}
