// GPU test helpers: a CUDA backend when the machine has one (tests skip with a message otherwise), and
// moving float data between the host, the CPU reference backend and the GPU.
import assert from 'node:assert/strict';
import { after, describe } from 'node:test';
import { CpuBackend } from '../../src/backends/cpu/backend.js';
import { CudaBackend } from '../../src/backends/cuda/backend.js';
import { f32ToBf16Bits, f32ToF16Bits, toFloat32 } from '../../src/loaders/dtypes.js';
import { PeregrineError } from '../../src/errors.js';
import type { DType, Tensor } from '../../src/ops/backend.js';
import { seededRandom } from '../../src/ops/rng.js';

let probed: string | null = null;

/** null when a GPU is usable, else why not (for t.skip). */
export function noGpu(): string | null {
  if (probed !== null) return probed || null;
  try {
    new CudaBackend('f32').dispose();
    probed = '';
  } catch (err) {
    if (!(err instanceof PeregrineError)) throw err;
    probed = `no usable GPU here: ${err.message}`;
    process.stderr.write(`# skipping GPU tests: ${probed}\n`);
  }
  return probed || null;
}

export const cpu = new CpuBackend();

/** A describe block per compute dtype (f32, f16, bf16), skipped without a GPU; `body` gets the dtype, its tolerance
 *  and `r`, which rounds host values to what the dtype stores. */
export function perDtype(what: string, body: (dtype: DType, tol: number, r: (x: Float32Array) => Float32Array) => void): void {
  const skip = noGpu();
  for (const dtype of ['f32', 'f16', 'bf16'] as DType[]) {
    describe(`${what} in ${dtype}`, { skip: skip ?? false }, () => body(dtype, TOL[dtype], (x) => rounded(x, dtype)));
  }
}

/** One CUDA backend per dtype and mode (batch-invariant or not), made when a test first asks, shared by a file's
 *  tests and disposed after them. */
export function kernelBackends(): (dtype: DType, batchInvariant?: boolean) => CudaBackend {
  const made = new Map<string, CudaBackend>();
  after(() => { for (const b of made.values()) b.dispose(); });
  return (dtype, batchInvariant = false) => {
    const key = `${dtype}${batchInvariant ? ' invariant' : ''}`;
    let b = made.get(key);
    if (!b) made.set(key, (b = new CudaBackend(dtype, batchInvariant)));
    return b;
  };
}

const rand = seededRandom(1234);
export function randn(n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
}

/** The values as the dtype stores them (what the GPU sees), widened back to fp32. */
export function rounded(x: Float32Array, dtype: DType): Float32Array {
  if (dtype === 'f32') return x;
  const bits = Uint16Array.from(x, dtype === 'f16' ? f32ToF16Bits : f32ToBf16Bits);
  return toFloat32(new Uint8Array(bits.buffer), dtype === 'f16' ? 'F16' : 'BF16');
}

/** A tensor on `b` holding fp32 values `x` (converted to the backend's dtype on the GPU). */
export function put(b: CpuBackend | CudaBackend, x: Float32Array, shape: number[]): Tensor {
  return b.weight({ bytes: new Uint8Array(x.buffer.slice(x.byteOffset, x.byteOffset + x.byteLength)), dtype: 'F32' }, shape);
}

export function putInt(b: CpuBackend | CudaBackend, x: Int32Array): Tensor {
  const t = b.buffer([x.length], 'i32');
  b.writeInt(t, x, x.length);
  return t;
}

export function get(b: CpuBackend | CudaBackend, t: Tensor): Float32Array {
  return b.readFloat(t, t.shape.reduce((a, d) => a * d, 1)).slice();
}

/** Relative tolerance per compute dtype for one op (fp32 math; rounding of the output dominates). */
export const TOL: Record<string, number> = { f32: 2e-5, f16: 4e-3, bf16: 3e-2 };

/** An i32 tensor of `shape` (block tables and block pairs are matrices: the ops read their widths). */
export function putTable(b: typeof cpu | CudaBackend, x: Int32Array, shape: number[]): Tensor {
  const t = b.buffer(shape, 'i32');
  b.writeInt(t, x, x.length);
  return t;
}

/**
 * Block tables [slots, maxBlocks] for sequences of `lengths` positions in a pool whose block 0 is left to
 * padding (a slot of length 0 keeps an all-zero row): every sequence takes its blocks from a shuffled free
 * list, so they lie scattered and out of order, except that shares [slot, from, blocks] gives `slot` the
 * first `blocks` blocks of `from` (a shared prefix; from < slot). Three blocks stay unused.
 */
export function pagedTables(lengths: number[], blockSize: number, maxBlocks: number, shares: [number, number, number][], seed: number):
  { table: Int32Array; blocks: number } {
  const need = lengths.map((l) => Math.ceil(l / blockSize));
  const sharedWith = new Map(shares.map(([slot, from, count]) => [slot, { from, count }]));
  const own = need.reduce((a, k, s) => a + k - (sharedWith.get(s)?.count ?? 0), 0);
  const blocks = 1 + own + 3;
  const free = Array.from({ length: blocks - 1 }, (_, i) => i + 1);
  const rand = seededRandom(seed);
  for (let i = free.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [free[i], free[j]] = [free[j], free[i]];
  }
  const table = new Int32Array(lengths.length * maxBlocks);
  for (let s = 0; s < lengths.length; s++) {
    assert.ok(need[s] <= maxBlocks, `slot ${s} needs ${need[s]} blocks`);
    const share = sharedWith.get(s);
    for (let b = 0; b < need[s]; b++) {
      table[s * maxBlocks + b] = share && b < share.count ? table[share.from * maxBlocks + b] : free.pop()!;
    }
  }
  return { table, blocks };
}

/** Whether the blocks of `slot` are in some place out of increasing order. */
export function scattered(table: Int32Array, maxBlocks: number, slot: number, count: number): boolean {
  const row = table.subarray(slot * maxBlocks, slot * maxBlocks + count);
  return row.some((b, i) => i > 0 && b < row[i - 1]);
}

/**
 * A Q8_0 weight read back from the GPU, in its layout there (kernels/quant-blocks.cuh: the 32 quants of every block,
 * then every block's f16 d), as the ggml blocks a file holds (d, then the quants; 34 bytes a block).
 */
export function q8_0Blocks(device: Uint8Array): Uint8Array {
  const n = device.length / 34, out = new Uint8Array(device.length);
  for (let b = 0; b < n; b++) {
    out[34 * b] = device[32 * n + 2 * b];
    out[34 * b + 1] = device[32 * n + 2 * b + 1];
    out.set(device.subarray(32 * b, 32 * b + 32), 34 * b + 2);
  }
  return out;
}
