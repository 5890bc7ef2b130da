// Launchers for kernels/sampling.cu: one 1024-thread block per row of logits, and the decode-state advance.
import type { Tensor } from '../../ops/backend.js';
import type { CudaContext } from './backend.js';
import { ptr } from './tensor.js';

export function sample(c: CudaContext, ids: Tensor, logits: Tensor, params: Tensor, streams: Tensor, counters: Tensor, n: number): void {
  if (n === 0) return;
  c.kernels.get('sampling', 'sample_rows', 'pppppi')
    .launch(c.stream, n, 1, 1, 1024, 0, ptr(ids), ptr(logits), ptr(params), ptr(streams), ptr(counters), logits.shape[1]);
}

export function advance(c: CudaContext, positions: Tensor, keyLens: Tensor, n: number): void {
  if (n === 0) return;
  c.kernels.get('sampling', 'advance', 'ppi').launch(c.stream, Math.ceil(n / 256), 1, 1, 256, 0, ptr(positions), ptr(keyLens), n);
}
