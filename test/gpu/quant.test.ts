// The quantized GEMV (kernels/quant.cu) against the CPU backend's linear over the same ggml blocks, for every
// type Peregrine reads, in fp32, fp16 and bf16, for row counts on both sides of the 8-row groups.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { CudaBackend } from '../../src/backends/cuda/backend.js';
import { f32ToF16Bits } from '../../src/loaders/dtypes.js';
import { QUANT_BLOCKS, QUANT_TYPES, type QuantType } from '../../src/loaders/quant.js';
import { seededRandom } from '../../src/ops/rng.js';
import { assertClose } from '../helpers/close.js';
import { cpu, get, noGpu, put, randn, rounded, TOL } from './helpers.js';

const skip = noGpu();
const backends: CudaBackend[] = [];
after(() => backends.forEach((b) => b.dispose()));

/** Where each type keeps its fp16 scales (set to small finite values; every other byte is random). */
const SCALES: Record<QuantType, number[]> = { Q8_0: [0], Q4_0: [0], Q4_K: [0, 2], Q5_K: [0, 2], Q6_K: [208] };

function randomBlocks(type: QuantType, rows: number, K: number, seed: number): Uint8Array {
  const { elements, bytes } = QUANT_BLOCKS[type];
  const rand = seededRandom(seed);
  const out = Uint8Array.from({ length: (rows * K / elements) * bytes }, () => Math.floor(rand() * 256));
  for (let b = 0; b < out.length / bytes; b++) {
    for (const at of SCALES[type]) {
      const h = f32ToF16Bits((rand() - 0.5) * 0.05);
      out[b * bytes + at] = h & 0xff;
      out[b * bytes + at + 1] = h >> 8;
    }
  }
  return out;
}

for (const dtype of ['f32', 'f16', 'bf16'] as const) {
  describe(`quantized GEMV in ${dtype}`, { skip: skip ?? false }, () => {
    let backend: CudaBackend | null = null;
    const gpu = (): CudaBackend => {
      if (!backend) backends.push((backend = new CudaBackend(dtype)));
      return backend;
    };
    const tol = TOL[dtype];
    for (const type of QUANT_TYPES) {
      test(`${type}: plain, bias + activation, and into the residual, 1 to 19 rows`, () => {
        const g = gpu(), N = 67, K = 512;
        const w = randomBlocks(type, N, K, 7);
        const bias = rounded(randn(N, 0.5), dtype);
        for (const M of [1, 3, 8, 19]) {
          const x = rounded(randn(M * K, 2), dtype), res = rounded(randn(M * N), dtype);
          const [want, got] = [cpu, g].map((b) => {
            const wt = b.weight({ bytes: w, dtype: type }, [N, K], false, true);
            assert.equal(wt.dtype, type.toLowerCase());
            const dt = b === cpu ? 'f32' : dtype;
            const xs = put(b, x, [M, K]);
            const plain = b.buffer([M, N], dt), act = b.buffer([M, N], dt);
            b.linear(plain, xs, wt, null, 'none', M);
            b.linear(act, xs, wt, put(b, bias, [N]), 'silu', M);
            const r = put(b, res, [M, N]);
            b.linearResidual(r, xs, wt, put(b, bias, [N]), M, b.buffer([M, N], dt));
            return [get(b, plain), get(b, act), get(b, r)];
          });
          assertClose(got[0], want[0], tol * 2, `${M} rows, plain`);
          assertClose(got[1], want[1], tol * 2, `${M} rows, bias + silu`);
          assertClose(got[2], want[2], tol * 4, `${M} rows, residual`);
        }
      });
    }
  });
}
