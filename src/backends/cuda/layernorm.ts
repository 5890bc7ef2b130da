// Launchers for kernels/layernorm.cu (LayerNorm and RMSNorm): one block of 256 threads per row.
import type { Tensor } from '../../ops/backend.js';
import type { CudaContext } from './backend.js';
import { ptr, sfx } from './tensor.js';

const THREADS = 256;

export function layerNorm(c: CudaContext, out: Tensor, x: Tensor, gamma: Tensor, beta: Tensor | null, eps: number, n: number, rms = false): void {
  if (n === 0) return;
  c.kernels.get('layernorm', `layernorm_${sfx(out.dtype)}`, 'ppppfii')
    .launch(c.stream, n, 1, 1, THREADS, 0, ptr(out), ptr(x), ptr(gamma), ptr(beta), eps, gamma.shape[0], rms ? 1 : 0);
}

export function addBiasResidualLayerNorm(c: CudaContext, sum: Tensor, norm: Tensor, x: Tensor, bias: Tensor | null, residual: Tensor,
  gamma: Tensor, beta: Tensor, eps: number, n: number): void {
  if (n === 0) return;
  c.kernels.get('layernorm', `add_bias_residual_layernorm_${sfx(sum.dtype)}`, 'pppppppfi')
    .launch(c.stream, n, 1, 1, THREADS, 0, ptr(sum), ptr(norm), ptr(x), ptr(bias), ptr(residual), ptr(gamma), ptr(beta), eps, gamma.shape[0]);
}
