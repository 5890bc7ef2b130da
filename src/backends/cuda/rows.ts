// Launchers for kernels/rows.cu: gathering rows and scattered table entries, and mean pooling (qlinear.ts launches its
// gather_cols).
import type { Tensor } from '../../ops/backend.js';
import type { CudaContext } from './context.js';
import { ptr, sfx } from './tensor.js';

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

