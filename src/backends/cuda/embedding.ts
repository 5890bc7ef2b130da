// Launcher for kernels/embedding.cu.
import type { Tensor } from '../../ops/backend.js';
import type { CudaContext } from './context.js';
import { ptr, sfx } from './tensor.js';

export function embed(c: CudaContext, out: Tensor, ids: Tensor, positions: Tensor, tok: Tensor, pos: Tensor | null,
  typeIds: Tensor | null, types: Tensor | null, n: number): void {
  if (n === 0) return;
  const H = tok.shape[1];
  c.kernels.get('embedding', 'embed', `_${sfx(out.dtype)}`)
    .launch(c.stream, n, 1, 1, Math.min(256, roundWarp(H)), 0, ptr(out), ptr(ids), ptr(positions), ptr(tok), ptr(pos), ptr(typeIds), ptr(types), H);
}

/** A vocabulary-parallel rank's share of the lookup (Backend.embedSlice). */
export function embedSlice(c: CudaContext, out: Tensor, ids: Tensor, table: Tensor, first: number, n: number): void {
  if (n === 0) return;
  const [rows, H] = table.shape;
  c.kernels.get('embedding', 'embed_slice', `_${sfx(out.dtype)}`)
    .launch(c.stream, n, 1, 1, Math.min(256, roundWarp(H)), 0, ptr(out), ptr(ids), ptr(table), first, rows, H);
}

export function roundWarp(n: number): number {
  return Math.max(32, Math.ceil(n / 32) * 32);
}
