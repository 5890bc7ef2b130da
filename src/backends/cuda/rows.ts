// Launchers for kernels/rows.cu: gathering rows, mean pooling, gated activations, converting checkpoint weights, and the
// profiler's gate.
import type { HostWeight, StorageDType } from '../../loaders/dtypes.js';
import type { Activation, Tensor } from '../../ops/backend.js';
import type { CudaContext } from './context.js';
import { ACT_CODE } from './linear.js';
import { ptr, sfx, type CudaTensor } from './tensor.js';

export function gatherRows(c: CudaContext, out: Tensor, x: Tensor, srcRows: Tensor, dstRows: Tensor, n: number): void {
  if (n === 0) return;
  c.kernels.get('rows', 'gather_rows', `_${sfx(out.dtype)}`)
    .launch(c.stream, n, 1, 1, 256, 0, ptr(out), ptr(x), ptr(srcRows), ptr(dstRows), x.shape[1]);
}

/** dst[pairs[2i]] = pairs[2i + 1] for i < count (kernels/rows.cu scatter_i32). */
export function scatterInt(c: CudaContext, dst: Tensor, pairs: Tensor, count: number): void {
  if (count === 0) return;
  c.kernels.get('rows', 'scatter_i32').launch(c.stream, Math.ceil(count / 256), 1, 1, 256, 0, ptr(dst), ptr(pairs), count);
}

export function meanPool(c: CudaContext, out: Tensor, x: Tensor, starts: Tensor, lengths: Tensor, n: number): void {
  if (n === 0) return;
  c.kernels.get('rows', 'mean_pool', `_${sfx(out.dtype)}`)
    .launch(c.stream, n, 1, 1, 256, 0, ptr(out), ptr(x), ptr(starts), ptr(lengths), x.shape[1]);
}

/** out[t, i] = act(x[t, i]) * x[t, F + i] (SwiGLU), x [n, 2F]. */
export function gatedActivation(c: CudaContext, out: Tensor, x: Tensor, act: Activation, n: number): void {
  if (n === 0) return;
  const F = out.shape[1], total = n * F;
  c.kernels.get('rows', 'gated_act', `_${sfx(out.dtype)}`)
    .launch(c.stream, Math.min(4096, Math.ceil(total / 256)), 1, 1, 256, 0, ptr(out), ptr(x), ACT_CODE[act], F, total);
}

const STORED = { F32: 'f32', F16: 'f16', BF16: 'bf16' } as const;

/** Copies checkpoint bytes to `dst`, converting dtype and transposing ([in, out] -> [out, in]) on the device. */
export function uploadWeight(c: CudaContext, dst: CudaTensor, src: HostWeight & { dtype: StorageDType }, shape: number[], transpose: boolean,
  alloc: (bytes: number) => number): void {
  const from = STORED[src.dtype];
  if (from === dst.dtype && !transpose) {
    c.driver.call('cuMemcpyHtoD', dst.ptr, src.bytes, src.bytes.length);
    return;
  }
  const staging = alloc(src.bytes.length);
  try {
    c.driver.call('cuMemcpyHtoD', staging, src.bytes, src.bytes.length);
    const rows = shape[0], cols = shape.length > 1 ? shape.slice(1).reduce((a, d) => a * d, 1) : 1;
    c.kernels.get('rows', 'convert', `_${from}_to_${sfx(dst.dtype)}`)
      .launch(c.stream, Math.min(8192, Math.ceil((rows * cols) / 256)), 1, 1, 256, 0, dst.ptr, staging, rows, cols, transpose ? 1 : 0);
    c.driver.call('cuStreamSynchronize', c.stream);
  } finally {
    c.driver.call('cuMemFree', staging);
  }
}

/** Holds the stream until the host writes `value` (or more) at `flag`, pinned host memory, or `timeoutNs` pass
 * (kernels/rows.cu profile_gate; CudaBackend's per-op profile). */
export function profileGate(c: CudaContext, flag: number, value: number, timeoutNs: number): void {
  c.kernels.get('rows', 'profile_gate').launch(c.stream, 1, 1, 1, 1, 0, flag, value, timeoutNs);
}
