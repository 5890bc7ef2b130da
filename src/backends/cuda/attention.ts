// Launchers for kernels/attention.cu: KV-cache writes, decode-step attention, and prompt attention by segment.
import { fail } from '../../errors.js';
import type { AttentionShape, Segments, Tensor } from '../../ops/backend.js';
import type { CudaContext } from './backend.js';
import { ptr, sfx } from './tensor.js';

const DECODE_THREADS = 256;
const PREFILL_ROWS = 32, PREFILL_KEYS = 32;
const smemOptIn = new WeakSet<object>();

export function writeKV(c: CudaContext, qkv: Tensor, kCache: Tensor, vCache: Tensor, slots: Tensor, positions: Tensor, n: number): void {
  if (n === 0) return;
  const H = kCache.shape[2];
  c.kernels.get('attention', `write_kv_${sfx(kCache.dtype)}`, 'pppppii')
    .launch(c.stream, n, 1, 1, 256, 0, ptr(qkv), ptr(kCache), ptr(vCache), ptr(slots), ptr(positions), H, kCache.shape[1]);
}

/** Prompt tokens by segment: up to 32 query rows of one sequence per block, key/value tiles in shared memory. */
export function attendPrompt(c: CudaContext, out: Tensor, qkv: Tensor, kCache: Tensor, vCache: Tensor, slots: Tensor, keyLens: Tensor,
  shape: AttentionShape, n: number, segments: Segments): void {
  if (n === 0) return;
  const { heads, headDim: D, scale } = shape;
  const dpt = [2, 4, 8, 16, 32].find((d) => d * 4 >= D);
  if (!dpt) fail('bad-config', `attention head size ${D} is beyond the 128 the CUDA prompt-attention kernel supports`);
  const k = c.kernels.get('attention', `attend_prefill${dpt}_${sfx(out.dtype)}`, 'pppppppiifi');
  k.launch(c.stream, Math.ceil(segments.longest / PREFILL_ROWS), segments.count, heads, 128, 2 * PREFILL_KEYS * D * 4,
    ptr(out), ptr(qkv), ptr(kCache), ptr(vCache), ptr(slots), ptr(keyLens), ptr(segments.table), heads, D, scale, kCache.shape[1]);
}

/** One query per row; the kernel first writes the row's k and v at position keyLens - 1. */
export function attendDecode(c: CudaContext, out: Tensor, qkv: Tensor, kCache: Tensor, vCache: Tensor, slots: Tensor, keyLens: Tensor,
  shape: AttentionShape, n: number): void {
  if (n === 0) return;
  const { heads, headDim: D, scale } = shape;
  if (D > 128) fail('bad-config', `attention head size ${D} is beyond the 128 the CUDA decode-attention kernel supports`);
  const maxSeq = kCache.shape[1];
  const k = c.kernels.get('attention', `attend_decode_${sfx(out.dtype)}`, 'ppppppiifi');
  const smem = (D + maxSeq + DECODE_THREADS * 8) * 4;
  if (smem > 48 * 1024 && !smemOptIn.has(k)) {
    k.allowSharedMemory(smem);
    smemOptIn.add(k);
  }
  k.launch(c.stream, heads, n, 1, DECODE_THREADS, smem, ptr(out), ptr(qkv), ptr(kCache), ptr(vCache), ptr(slots), ptr(keyLens), heads, D, scale, maxSeq);
}
