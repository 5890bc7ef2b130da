// Launchers for kernels/attention.cu over the paged KV cache (caches [blocks, blockSize, kvHeads * headDim], block tables
// [slots, maxBlocks]): KV-cache writes, decode-step attention, prompt attention by segment (both with T5's relative
// position bias where the shape has one), cross-attention over an encoder memory, and block copies.
import { fail } from '../../errors.js';
import { dtypeBytes, type AttentionShape, type Segments, type Tensor } from '../../ops/backend.js';
import type { CudaContext } from './context.js';
import type { Kernel } from './kernels.js';
import { ptr, sfx } from './tensor.js';

/** kernels/attention.cu: DECODE_WARPS */
const DECODE_THREADS = 4 * 32;
/** the largest head size a decode-style kernel takes (checkDecodeHead: 32 lanes of 8 halves) */
const DECODE_MAX_HEAD = 256;
/** kernels/attention.cu's MAX_SPLITS: at most this many splits of a row's keys (and no fewer than SPLIT_MIN_KEYS keys a split) */
const MAX_SPLITS = 32;

/** States for 8 blocks an SM: the split aims at 4 (decodeSplits), with room for a grid a little above that. */
export function decodeSplitScratch(sms: number): { slots: number; partialBytes: number; counterBytes: number } {
  const slots = 8 * sms;
  return { slots, partialBytes: slots * (DECODE_MAX_HEAD + 2) * 4, counterBytes: slots * 4 };
}

/**
 * Splits of each row's keys for a decode step of `rows` rows whose rows take `blocksPerRow` blocks each
 * (flash-decoding): enough (blocks, row, split) blocks for about 4 an SM when the unsplit blocks are fewer, within
 * the scratch's states (one a query head), none in batch-invariant mode (a row's result then depends on its keys
 * only). Depends on the batch's shape, not on its lengths, so a captured decode graph stays right as the sequences
 * grow; the kernel uses fewer splits for rows with few keys.
 */
export function decodeSplits(c: CudaContext, rows: number, heads: number, blocksPerRow: number): number {
  const blocks = rows * blocksPerRow;
  if (c.batchInvariant || blocks >= 2 * c.sms) return 1;
  return Math.max(1, Math.min(MAX_SPLITS, Math.floor((4 * c.sms) / blocks), Math.floor(c.decodeSplit.slots / (rows * heads))));
}

/**
 * Query heads a decode block takes (the G of kernels/attention.cu's attend_decode<G>): all of a KV head's group up to
 * 4, so that they share each key and value the block loads; 3 runs as 4 with one head idle, 5 to 8 as two blocks.
 */
export function decodeHeadsPerBlock(heads: number, kvHeads: number): 1 | 2 | 4 {
  const group = heads / kvHeads;
  return group >= 3 ? 4 : group === 2 ? 2 : 1;
}
const PREFILL_ROWS = 32, PREFILL_KEYS = 32;
const COPY_THREADS = 256, MAX_GRID_Y = 65535;

export function writeKV(c: CudaContext, qkv: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor, slots: Tensor,
  positions: Tensor, n: number): void {
  if (n === 0) return;
  const [, blockSize, W] = kCache.shape;
  c.kernels.get('attention', 'write_kv', `_${sfx(kCache.dtype)}`)
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

/**
 * Shared memory of a decode-style kernel of G query heads a block: the block ids, then each warp's softmax state per
 * head for the merge (kernels/attention.cu).
 */
function decodeSharedMemory(k: Kernel, maxBlocks: number, D: number, G = 1): number {
  const smem = (maxBlocks + (DECODE_THREADS / 32) * G * (D + 2)) * 4;
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
  const k = c.kernels.get('attention', 'attend_cross', `_${sfx(out.dtype)}`);
  k.launch(c.stream, heads, n, 1, DECODE_THREADS, decodeSharedMemory(k, maxBlocks, D), ptr(out), ptr(q), ptr(kCache), ptr(vCache),
    ptr(blockTables), ptr(slots), ptr(lengths), heads, kvHeads, D, scale, blockSize, maxBlocks);
}

/**
 * kernels/flash.cu's tilings by head size: `mt` m16 tiles of query rows per warp (64 mt rows a block of 4 warps), `bn`
 * keys per tile; the kernel's FLASH_ALL list builds the same.
 */
export const FLASH_TILES: Record<number, { mt: number; bn: number }> = {
  32: { mt: 2, bn: 64 }, 64: { mt: 2, bn: 64 }, 80: { mt: 2, bn: 32 }, 96: { mt: 2, bn: 32 }, 128: { mt: 2, bn: 32 }, 256: { mt: 1, bn: 32 },
};

/** Whether the tensor-core kernel takes this prompt: 16-bit, a head size it builds, no position bias, 16-byte rows. */
export function flashTakes(out: Tensor, qkv: Tensor, kCache: Tensor, vCache: Tensor, shape: AttentionShape): boolean {
  return out.dtype !== 'f32' && !shape.bias && FLASH_TILES[shape.headDim] !== undefined
    && [qkv, kCache, vCache].every((t) => ptr(t) % 16 === 0) && ptr(out) % 4 === 0;
}

/** Where the tensor-core kernel finds keys and values: paged caches through block tables, or the segments' own qkv rows. */
type KeySource = { kCache: Tensor; vCache: Tensor; blockTables: Tensor; slots: Tensor } | 'rows';

/**
 * The tensor-core prompt kernel `name` (flash_prefill<D>_<dtype>, or a tuning variant of bench/kernels/flash.ts) with
 * tiles of `tiles`: grid (query tiles of the longest segment, segments, heads), 128 threads.
 */
export function launchFlash(c: CudaContext, name: string, tiles: { mt: number; bn: number }, out: Tensor, qkv: Tensor, keys: KeySource,
  keyLens: Tensor, shape: AttentionShape, segments: Segments): void {
  const { heads, kvHeads, headDim: D, scale, window } = shape;
  const rows = 64 * tiles.mt;
  const smem = (rows + 4 * tiles.bn) * (D + 8) * 2;
  if (!name.startsWith('flash_prefill')) throw new Error(`internal: ${name} is not a kernel of kernels/flash.cu`);
  const k = c.kernels.get('flash', 'flash_prefill', name.slice('flash_prefill'.length));
  k.allowSharedMemory(smem);
  // from rows: k and v are at q's width and q + k's width into each row; a null block table says so to the kernel
  const bytes = dtypeBytes(qkv.dtype), H = heads * D, W = kvHeads * D;
  const [kc, vc, tables, slots, blockSize, maxBlocks] = keys === 'rows'
    ? [ptr(qkv) + H * bytes, ptr(qkv) + (H + W) * bytes, 0, 0, 0, 0]
    : [ptr(keys.kCache), ptr(keys.vCache), ptr(keys.blockTables), ptr(keys.slots), keys.kCache.shape[1], keys.blockTables.shape[1]];
  k.launch(c.stream, Math.ceil(segments.longest / rows), segments.count, heads, 128, smem, ptr(out), ptr(qkv), kc, vc, tables, slots,
    ptr(keyLens), ptr(segments.table), heads, kvHeads, scale * Math.LOG2E, window, blockSize, maxBlocks);
}

/**
 * An encoder's attention on tensor cores (Backend.attendEncoder), keys and values read from the segments' own qkv rows:
 * key j of a segment is its row j. The caller checks flashTakes.
 */
export function attendFromRows(c: CudaContext, out: Tensor, qkv: Tensor, keyLens: Tensor, shape: AttentionShape, n: number, segments: Segments): void {
  if (n === 0) return;
  const D = shape.headDim;
  launchFlash(c, `flash_prefill${D}_${sfx(out.dtype)}`, FLASH_TILES[D], out, qkv, 'rows', keyLens, shape, segments);
}

/**
 * Prompt tokens by segment: on tensor cores (kernels/flash.cu) where flashTakes says so, else on CUDA cores, up to 32
 * query rows of one sequence per block, key/value tiles in shared memory (kernels/attention.cu).
 */
export function attendPrompt(c: CudaContext, out: Tensor, qkv: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor,
  slots: Tensor, keyLens: Tensor, shape: AttentionShape, n: number, segments: Segments): void {
  if (n === 0) return;
  if (flashTakes(out, qkv, kCache, vCache, shape)) {
    const D = shape.headDim;
    launchFlash(c, `flash_prefill${D}_${sfx(out.dtype)}`, FLASH_TILES[D], out, qkv, { kCache, vCache, blockTables, slots }, keyLens, shape, segments);
  } else {
    attendPromptCores(c, out, qkv, kCache, vCache, blockTables, slots, keyLens, shape, segments);
  }
}

/** The CUDA-core prompt kernel (attend_prefill of kernels/attention.cu), for any dtype and head sizes up to 128. */
export function attendPromptCores(c: CudaContext, out: Tensor, qkv: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor,
  slots: Tensor, keyLens: Tensor, shape: AttentionShape, segments: Segments): void {
  const { heads, kvHeads, headDim: D, scale, window } = shape;
  const dpt = [2, 4, 8, 16, 32].find((d) => d * 4 >= D);
  if (!dpt) fail('bad-config', `attention head size ${D} is beyond the 128 the CUDA prompt-attention kernel supports`);
  const k = c.kernels.get('attention', 'attend_prefill', `${dpt}_${sfx(out.dtype)}`);
  k.launch(c.stream, Math.ceil(segments.longest / PREFILL_ROWS), segments.count, heads, 128, 2 * PREFILL_KEYS * D * 4,
    ptr(out), ptr(qkv), ptr(kCache), ptr(vCache), ptr(blockTables), ptr(slots), ptr(keyLens), ptr(segments.table),
    heads, kvHeads, D, scale, window, kCache.shape[1], blockTables.shape[1], ...biasArgs(shape, heads));
}

/**
 * One query per row, the query heads of a KV head together (decodeHeadsPerBlock), split over the keys when there are
 * few rows (decodeSplits); the kernel first writes the row's k and v at position keyLens - 1.
 */
export function attendDecode(c: CudaContext, out: Tensor, qkv: Tensor, kCache: Tensor, vCache: Tensor, blockTables: Tensor,
  slots: Tensor, keyLens: Tensor, shape: AttentionShape, n: number): void {
  if (n === 0) return;
  const { heads, kvHeads, headDim: D, scale, window } = shape;
  checkDecodeHead(D, out.dtype, 'decode-attention');
  const blockSize = kCache.shape[1], maxBlocks = blockTables.shape[1];
  // T5's bias (per query head, no grouped KV) has a kernel of its own, which keeps the plain one's registers
  const G = shape.bias ? 1 : decodeHeadsPerBlock(heads, kvHeads);
  const k = shape.bias ? c.kernels.get('attention', 'attend_decode_bias', `_${sfx(out.dtype)}`) : c.kernels.get('attention', 'attend_decode', `${G}_${sfx(out.dtype)}`);
  const blocksPerRow = kvHeads * Math.ceil(heads / kvHeads / G);
  const splits = decodeSplits(c, n, heads, blocksPerRow);
  k.launch(c.stream, blocksPerRow, n, splits, DECODE_THREADS, decodeSharedMemory(k, maxBlocks, D, G), ptr(out), ptr(qkv), ptr(kCache), ptr(vCache),
    ptr(blockTables), ptr(slots), ptr(keyLens), heads, kvHeads, D, scale, window, blockSize, maxBlocks,
    splits, c.decodeSplit.partials, c.decodeSplit.counters, ...(shape.bias ? biasArgs(shape, heads) : []));
}

/** Block pairs[i, 1] = block pairs[i, 0] for i < count in every plane of pool [planes, blocks, blockSize, width]. */
export function copyBlocks(c: CudaContext, pool: Tensor, pairs: Tensor, count: number): void {
  if (count === 0) return;
  const [planes, blocks, blockSize, width] = pool.shape;
  c.kernels.get('attention', 'copy_blocks', `_${sfx(pool.dtype)}`)
    .launch(c.stream, count, Math.min(planes, MAX_GRID_Y), 1, COPY_THREADS, 0, ptr(pool), ptr(pairs), planes, blocks,
      blockSize * width);
}
