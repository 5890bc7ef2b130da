// Launchers for kernels/activation.cu: bias + activation after a GEMM whose epilogue could not apply them, and gated
// activations (SwiGLU). Reference: src/backends/cpu/activations.ts.
import { dtypeBytes, type Activation, type Tensor } from '../../ops/backend.js';
import type { CudaContext } from './context.js';
import { ptr, sfx } from './tensor.js';

/** activate() in kernels/common.cuh */
export const ACT_CODE: Record<Activation, number> = { none: 0, gelu: 1, gelu_tanh: 2, tanh: 3, relu: 4, silu: 5, quick_gelu: 6 };

/** out [n, N] (f32) += bias (of its own dtype) per column, then the activation: the bias cuBLASLt cannot read. */
export function biasActivate(c: CudaContext, out: Tensor, bias: Tensor, act: Activation, n: number, N: number): void {
  const total = n * N;
  c.kernels.get('activation', 'bias_act_f32out', `_${sfx(bias.dtype)}`)
    .launch(c.stream, Math.min(4096, Math.ceil(total / 256)), 1, 1, 256, 0, ptr(out), ptr(bias), ACT_CODE[act], N, total);
}

/** The activation of out [n, N] that cuBLASLt's epilogue could not apply (epilogueFor), as a kernel after the GEMM. */
export function activateAfter(c: CudaContext, out: Tensor, act: Activation, n: number, N: number): void {
  if (act === 'none' || act === 'gelu_tanh') return;
  const total = n * N, V = 16 / dtypeBytes(out.dtype);
  if (N % V === 0 && ptr(out) % 16 === 0 && total < 2 ** 32) {
    // 16-byte vectors (BERT's erf GELU over a [tokens, 3072] GEMM output is bandwidth-bound)
    const vecs = total / V;
    c.kernels.get('activation', 'bias_act_vec', `_${sfx(out.dtype)}`)
      .launch(c.stream, Math.min(16 * c.sms, Math.ceil(vecs / 256)), 1, 1, 256, 0, ptr(out), 0, ACT_CODE[act], N / V, vecs);
    return;
  }
  c.kernels.get('activation', 'bias_act', `_${sfx(out.dtype)}`)
    .launch(c.stream, Math.min(4096, Math.ceil(total / 256)), 1, 1, 256, 0, ptr(out), 0, ACT_CODE[act], N, total);
}

/** out[t, i] = act(x[t, i]) * x[t, F + i] (SwiGLU), x [n, 2F]. */
export function gatedActivation(c: CudaContext, out: Tensor, x: Tensor, act: Activation, n: number): void {
  if (n === 0) return;
  const F = out.shape[1], total = n * F;
  c.kernels.get('activation', 'gated_act', `_${sfx(out.dtype)}`)
    .launch(c.stream, Math.min(4096, Math.ceil(total / 256)), 1, 1, 256, 0, ptr(out), ptr(x), ACT_CODE[act], F, total);
}
