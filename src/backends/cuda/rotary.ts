// Launcher for kernels/rotary.cu: rotary position embedding (and Qwen3's per-head RMSNorm) in place on qkv rows.
import type { AttentionShape, HeadNorms, Rotary, Tensor } from '../../ops/backend.js';
import type { CudaContext } from './context.js';
import { ptr, sfx } from './tensor.js';

const THREADS = 128;

export function rotary(c: CudaContext, qkv: Tensor, positions: Tensor, lengths: Tensor, rot: Rotary, shape: AttentionShape,
  norms: HeadNorms | null, n: number): void {
  if (n === 0) return;
  const { heads, kvHeads, headDim: D } = shape;
  const d = rot.dynamic;
  c.kernels.get('rotary', 'rotary', `_${sfx(qkv.dtype)}`)
    .launch(c.stream, n, Math.ceil((heads + kvHeads) / (THREADS / 32)), 1, THREADS, (rot.dims / 2) * 4, ptr(qkv), ptr(positions), ptr(lengths), ptr(rot.invFreq), heads, kvHeads, D,
      rot.dims, rot.scale, d?.base ?? 0, d?.factor ?? 0, d?.original ?? 0, ptr(norms?.q ?? null), ptr(norms?.k ?? null), norms?.eps ?? 0);
}
