// Launchers for kernels/attention.cu over the paged KV cache (caches [blocks, blockSize, kvHeads * headDim], block tables
// [slots, maxBlocks]): KV-cache writes, decode-step attention, prompt attention by segment (both with T5's relative
// position bias where the shape has one), cross-attention over an encoder memory, and block copies.
import { fail } from '../../errors.js';
import { dtypeBytes, type AttentionShape, type Segments, type Tensor } from '../../ops/backend.js';
import type { CudaContext } from './backend.js';
import type { Kernel } from './kernels.js';
import { ptr, sfx } from './tensor.js';

/** kernels/attention.cu: DECODE_WARPS */
const DECODE_THREADS = 4 * 32;
const PREFILL_ROWS = 32, PREFILL_KEYS = 32;
const COPY_THREADS = 256, MAX_GRID_Y = 65535;

export function writeKV(c: CudaContext, qkv: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor, slots: Tensor,
  positions: Tensor, n: number): void {
  if (n === 0) return;
  const [, blockSize, W] = kCache.shape;
  c.kernels.get('attention', `write_kv_${sfx(kCache.dtype)}`, 'ppppppiiii')
    .launch(c.stream, n, 1, 1, 256, 0, ptr(qkv), ptr(kCache), ptr(vCache), ptr(blockTables), ptr(slots), ptr(positions),
      qkv.shape[1], W, blockSize, blockTables.shape[1]);
}

/** The bias arguments of the decode and prompt kernels (BIAS_PARAMS in kernels/attention.cu): T5's table, or none. */
function biasArgs(shape: AttentionShape, heads: number): number[] {
  const b = shape.bias;
  if (!b) return [0, 0, 0, 0, 0];
  if (b.table.shape[1] !== heads || b.table.shape[0] !== b.buckets) throw new Error(`internal: a position bias table [${b.table.shape}] for ${b.buckets} buckets of ${heads} heads`);
  return [ptr(b.table), ptr(b.positions), b.buckets, b.maxDistance, b.bidirectional ? 1 : 0];
}
const BIAS_SPEC = 'ppiii';

/** Shared memory of a decode-style kernel: the block ids, then each warp's softmax state for the merge (kernels/attention.cu). */
function decodeSharedMemory(k: Kernel, maxBlocks: number, D: number): number {
  const smem = (maxBlocks + (DECODE_THREADS / 32) * (D + 2)) * 4;
  k.allowSharedMemory(smem);
  return smem;
}

/** A lane holds at most one 16-byte vector of the head's dimensions, 32 lanes per key at most. */
function checkDecodeHead(D: number, dtype: Tensor['dtype'], what: string): void {
  const most = 32 * (16 / dtypeBytes(dtype));
  if (D > most) fail('bad-config', `attention head size ${D} is beyond the ${most} the CUDA ${what} kernel supports in ${dtype}`);
}

/**
 * Cross-attention, one block per (query head, row) as in the decode step, over lengths[slots[t]] keys of the slot's
 * memory cache (no mask, nothing written): the decoder's prompt rows and decode rows alike.
 */
export function attendCross(c: CudaContext, out: Tensor, q: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor,
  slots: Tensor, lengths: Tensor, shape: AttentionShape, n: number): void {
  if (shape.bias || shape.window > 0) throw new Error('internal: cross-attention takes no position bias or window');
  if (n === 0) return;
  const { heads, kvHeads, headDim: D, scale } = shape;
  checkDecodeHead(D, out.dtype, 'cross-attention');
  const blockSize = kCache.shape[1], maxBlocks = blockTables.shape[1];
  const k = c.kernels.get('attention', `attend_cross_${sfx(out.dtype)}`, 'pppppppiiifii');
  k.launch(c.stream, heads, n, 1, DECODE_THREADS, decodeSharedMemory(k, maxBlocks, D), ptr(out), ptr(q), ptr(kCache), ptr(vCache),
    ptr(blockTables), ptr(slots), ptr(lengths), heads, kvHeads, D, scale, blockSize, maxBlocks);
}

/** Prompt tokens by segment: up to 32 query rows of one sequence per block, key/value tiles in shared memory. */
export function attendPrompt(c: CudaContext, out: Tensor, qkv: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor,
  slots: Tensor, keyLens: Tensor, shape: AttentionShape, n: number, segments: Segments): void {
  if (n === 0) return;
  const { heads, kvHeads, headDim: D, scale, window } = shape;
  const dpt = [2, 4, 8, 16, 32].find((d) => d * 4 >= D);
  if (!dpt) fail('bad-config', `attention head size ${D} is beyond the 128 the CUDA prompt-attention kernel supports`);
  const k = c.kernels.get('attention', `attend_prefill${dpt}_${sfx(out.dtype)}`, 'ppppppppiiifiii' + BIAS_SPEC);
  k.launch(c.stream, Math.ceil(segments.longest / PREFILL_ROWS), segments.count, heads, 128, 2 * PREFILL_KEYS * D * 4,
    ptr(out), ptr(qkv), ptr(kCache), ptr(vCache), ptr(blockTables), ptr(slots), ptr(keyLens), ptr(segments.table),
    heads, kvHeads, D, scale, window, kCache.shape[1], blockTables.shape[1], ...biasArgs(shape, heads));
}

/** One query per row; the kernel first writes the row's k and v at position keyLens - 1. */
export function attendDecode(c: CudaContext, out: Tensor, qkv: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor,
  slots: Tensor, keyLens: Tensor, shape: AttentionShape, n: number): void {
  if (n === 0) return;
  const { heads, kvHeads, headDim: D, scale, window } = shape;
  checkDecodeHead(D, out.dtype, 'decode-attention');
  const blockSize = kCache.shape[1], maxBlocks = blockTables.shape[1];
  // T5's bias has a kernel of its own (the plain one keeps its registers)
  const biased = shape.bias ? ['_bias', BIAS_SPEC, biasArgs(shape, heads)] as const : ['', '', []] as const;
  const k = c.kernels.get('attention', `attend_decode${biased[0]}_${sfx(out.dtype)}`, 'pppppppiiifiii' + biased[1]);
  k.launch(c.stream, heads, n, 1, DECODE_THREADS, decodeSharedMemory(k, maxBlocks, D), ptr(out), ptr(qkv), ptr(kCache), ptr(vCache),
    ptr(blockTables), ptr(slots), ptr(keyLens), heads, kvHeads, D, scale, window, blockSize, maxBlocks, ...biased[2]);
}

/** Block pairs[i, 1] = block pairs[i, 0] for i < count in every plane of pool [planes, blocks, blockSize, width]. */
export function copyBlocks(c: CudaContext, pool: Tensor, pairs: Tensor, count: number): void {
  if (count === 0) return;
  const [planes, blocks, blockSize, width] = pool.shape;
  c.kernels.get('attention', `copy_blocks_${sfx(pool.dtype)}`, 'ppiii')
    .launch(c.stream, count, Math.min(planes, MAX_GRID_Y), 1, COPY_THREADS, 0, ptr(pool), ptr(pairs), planes, blocks,
      blockSize * width);
}
