// The quantized linear layers (src/backends/cuda/qlinear.ts: kernels/mmvq.cu, quant.cu, qmma.cu, dequant.cu) against the CPU
// backend's linear over the same ggml blocks or grouped int4 (AWQ/GPTQ, inputs in order and act-order), for every type
// Peregrine reads, in fp32, fp16 and bf16, for row counts on both sides of the GEMV's 8 rows.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { CpuBackend } from '../../src/backends/cpu/backend.js';
import { roundToQ8 } from '../../src/backends/cpu/q8-activations.js';
import { CudaBackend } from '../../src/backends/cuda/backend.js';
import { f32ToF16Bits } from '../../src/loaders/dtypes.js';
import { int4Layout, int4Perm, isInt4Type, type Int4Type } from '../../src/loaders/int4.js';
import { fp8Layout, roundTokensToFp8 } from '../../src/loaders/fp8.js';
import { w8a8Bytes } from '../../src/loaders/w8a8.js';
import { QUANT_BLOCKS, QUANT_TYPES, type QuantType, type StoredQuant } from '../../src/loaders/quant.js';
import type { DType } from '../../src/ops/backend.js';
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

/** A random [N, K] int4 weight in Peregrine's layout: random nibbles and zeros (0 .. 16), small f16 scales, and a random
 * input order where `permuted` (act-order), else the identity. */
function randomInt4(type: Int4Type, N: number, K: number, seed: number, permuted: boolean): Uint8Array {
  const rand = seededRandom(seed), at = int4Layout(type, N, K);
  const out = new Uint8Array(at.bytes);
  for (let i = 0; i < at.scales; i++) out[i] = Math.floor(rand() * 256);
  for (let i = at.scales; i < at.zeros; i += 2) {
    const h = f32ToF16Bits((rand() - 0.5) * 0.05);
    out[i] = h & 0xff;
    out[i + 1] = h >> 8;
  }
  for (let i = at.zeros; i < at.zeros + (at.zeros - at.scales) / 2; i++) out[i] = Math.floor(rand() * 17);
  const perm = new Int32Array(out.buffer, at.perm, K);
  perm.set(Int32Array.from({ length: K }, (_, k) => k));
  if (permuted) {
    for (let k = K - 1; k > 0; k--) {
      const j = Math.floor(rand() * (k + 1));
      [perm[k], perm[j]] = [perm[j], perm[k]];
    }
  }
  return out;
}

/**
 * x rounded to int8 per 32 values as the integer GEMV rounds it: in the weight's input order (an int4 weight in
 * act-order takes x gathered into its order first), then back in the layer's order.
 */
function roundedAsStored(x: Float32Array, K: number, type: StoredQuant, w: Uint8Array, N: number): Float32Array {
  // SmoothQuant's reference quantizes x per token itself, as the GPU does; FP8's GEMV takes x as it is
  if (type === 'W8A8' || type === 'FP8') return x;
  if (!isInt4Type(type)) return roundToQ8(x, K);
  const perm = int4Perm(type, w, N, K), rows = x.length / K;
  const gathered = Float32Array.from(x, (_, i) => x[Math.floor(i / K) * K + perm[i % K]]);
  const r = roundToQ8(gathered, K), out = new Float32Array(x.length);
  for (let i = 0; i < rows * K; i++) out[Math.floor(i / K) * K + perm[i % K]] = r[i];
  return out;
}

/** A random SmoothQuant layer: int8 quants, row scales about 0.01, input multipliers between 0.5 and 2. */
function randomW8A8(N: number, K: number, seed: number): Uint8Array {
  const rand = seededRandom(seed);
  const q = Int8Array.from({ length: N * K }, () => Math.floor(rand() * 255) - 127);
  return w8a8Bytes(q, Float32Array.from({ length: N }, () => 0.005 + 0.01 * rand()), Float32Array.from({ length: K }, () => 0.5 + 1.5 * rand()));
}

/** A random FP8 layer: any E4M3 byte but NaN, row scales about 0.001 (E4M3 reaches 448). */
function randomFp8(N: number, K: number, seed: number): Uint8Array {
  const rand = seededRandom(seed), at = fp8Layout(N, K), out = new Uint8Array(at.bytes);
  for (let i = 0; i < N * K; i++) {
    const b = Math.floor(rand() * 256);
    out[i] = (b & 0x7f) === 0x7f ? b - 1 : b;
  }
  new Float32Array(out.buffer, at.scales, N).set(Float32Array.from({ length: N }, () => 0.0005 + 0.001 * rand()));
  return out;
}

/** The weights of each case: every ggml type, and int4 in each group size (the middle one in act-order). */
const CASES: { name: string; type: StoredQuant; make: (N: number, K: number, seed: number) => Uint8Array }[] = [
  ...QUANT_TYPES.map((type) => ({ name: type, type, make: (N: number, K: number, seed: number) => randomBlocks(type, N, K, seed) })),
  ...(['Q4_G32', 'Q4_G64', 'Q4_G128'] as const).map((type) => {
    const permuted = type === 'Q4_G64';
    return { name: `${type}${permuted ? ' act-order' : ''}`, type, make: (N: number, K: number, seed: number) => randomInt4(type, N, K, seed, permuted) };
  }),
];
CASES.push({ name: 'W8A8', type: 'W8A8', make: (N, K, seed) => randomW8A8(N, K, seed) });
CASES.push({ name: 'FP8', type: 'FP8', make: (N, K, seed) => randomFp8(N, K, seed) });
const ACT_ORDER = CASES.find((c) => c.name.endsWith('act-order'))!;

/** How far the int8 rounding of x (16-bit activations, up to 8 rows) may move a layer's outputs: about
 * max|x| / 254 per value, summed over K with random signs, against outputs of about sqrt(K) |x| |w|. */
const ROUNDING_TOL = 1e-2;

/** FP8 past one row runs on Hopper's FP8 tensor cores, whose accumulation keeps fewer bits than f32 (H100, K = 512:
 * 2.8e-4 of the largest output against the f32 reference): the floor of its tolerance in every dtype. */
const FP8_MMA_TOL = 5e-4;

/** The linear layer on `b` over quantized weights: plain, bias + SiLU, and into a residual. */
function layer(b: CpuBackend | CudaBackend, dt: DType, type: StoredQuant, w: Uint8Array, N: number, K: number, x: Float32Array, M: number,
  bias: Float32Array, res: Float32Array): Float32Array[] {
  const wt = b.weight({ bytes: w, dtype: type }, [N, K], false, true);
  assert.equal(wt.dtype, type.toLowerCase());
  const xs = put(b, x, [M, K]);
  const plain = b.buffer([M, N], dt), act = b.buffer([M, N], dt);
  b.linear(plain, xs, wt, null, 'none', M);
  b.linear(act, xs, wt, put(b, bias, [N]), 'silu', M);
  const r = put(b, res, [M, N]);
  b.linearResidual(r, xs, wt, put(b, bias, [N]), M, b.buffer([M, N], dt));
  return [get(b, plain), get(b, act), get(b, r)];
}

function check(got: Float32Array[], want: Float32Array[], tol: number, what: string): void {
  assertClose(got[0], want[0], tol * 2, `${what}, plain`);
  assertClose(got[1], want[1], tol * 2, `${what}, bias + silu`);
  assertClose(got[2], want[2], tol * 4, `${what}, residual`);
}

for (const dtype of ['f32', 'f16', 'bf16'] as const) {
  describe(`quantized linear layers in ${dtype}`, { skip: skip ?? false }, () => {
    let backend: CudaBackend | null = null, invariant: CudaBackend | null = null;
    const gpu = (): CudaBackend => {
      if (!backend) backends.push((backend = new CudaBackend(dtype)));
      return backend;
    };
    const tol = TOL[dtype];
    for (const { name, type, make } of CASES) {
      // up to 8 rows: the GEMV (16-bit: int8-rounded x and dp4a, kernels/mmvq.cu; f32: kernels/quant.cu); to 64, 16-bit x
      // on tensor cores (kernels/qmma.cu); beyond, the dequantized chunks through cuBLASLt (kernels/dequant.cu). FP8 and
      // W8A8 past one / eight rows: cuBLASLt's FP8 / int8 GEMM
      test(`${name}: plain, bias + activation, and into the residual, 1 to 70 rows`, () => {
        // FP8's and W8A8's GEMMs need outputs of a multiple of 16 (those of 67 are the next test's)
        const N = type === 'FP8' || type === 'W8A8' ? 80 : 67, K = 512;
        const w = make(N, K, 7);
        const bias = rounded(randn(N, 0.5), dtype);
        for (const M of [1, 3, 8, 19, 70]) {
          const x = rounded(randn(M * K, 2), dtype), res = rounded(randn(M * N), dtype);
          const got = layer(gpu(), dtype, type, w, N, K, x, M, bias, res);
          // FP8 past one row: x rounded to E4M3 per token for the FP8 GEMM, the same rounding on the CPU
          const exact = layer(cpu, 'f32', type, w, N, K, type === 'FP8' && M > 1 ? roundTokensToFp8(x, K) : x, M, bias, res);
          if (dtype === 'f32' || M > 8 || type === 'FP8') {
            check(got, exact, type === 'FP8' && M > 1 ? Math.max(tol, FP8_MMA_TOL) : tol, `${M} rows`);
            continue;
          }
          check(got, layer(cpu, 'f32', type, w, N, K, roundedAsStored(x, K, type, w, N), M, bias, res), tol, `${M} rows against x rounded to int8`);
          assertClose(got[0], exact[0], ROUNDING_TOL + 2 * tol, `${M} rows against x itself`);
        }
      });
    }

    test('a pre-norm layer (RMSNorm, LayerNorm) over quantized weights, normed in the int8 quantization up to 8192 inputs; int4 in act-order', () => {
      for (const [N, K, c] of [[67, 512, CASES[2]], [8, 8448, CASES[2]], [67, 512, ACT_ORDER]] as const) {
        const w = c.make(N, K, 5);
        const gamma = rounded(randn(K, 1), dtype), beta = rounded(randn(K, 0.5), dtype);
        for (const kind of ['rms', 'layer'] as const) {
          for (const M of [1, 5, 19]) {
            const x = rounded(randn(M * K, 3), dtype);
            const [want, got] = [cpu, gpu()].map((b) => {
              const dt = b === cpu ? 'f32' : dtype;
              const wt = b.weight({ bytes: w, dtype: c.type }, [N, K], false, true);
              const norm = { kind, gamma: put(b, gamma, [K]), beta: kind === 'rms' ? null : put(b, beta, [K]), eps: 1e-5 };
              const out = b.buffer([M, N], dt);
              b.normLinear(out, put(b, x, [M, K]), norm, wt, null, 'none', M, b.buffer([M, K], dt));
              return get(b, out);
            });
            assertClose(got, want, (dtype === 'f32' || M > 8 ? 0 : ROUNDING_TOL) + 4 * tol, `${c.name}, ${kind} norm, [${N}, ${K}], ${M} rows`);
          }
        }
      }
    });

    test('a gated down projection over quantized weights, gated in the int8 quantization; int4 in act-order', () => {
      const N = 67, F = 512;
      for (const c of [CASES[2], ACT_ORDER]) for (const M of [1, 5, 19]) {
        const w = c.make(N, F, 13);
        const x = rounded(randn(M * 2 * F, 2), dtype), res = rounded(randn(M * N), dtype);
        const [want, got] = [cpu, gpu()].map((b) => {
          const dt = b === cpu ? 'f32' : dtype;
          const wt = b.weight({ bytes: w, dtype: c.type }, [N, F], false, true);
          const r = put(b, res, [M, N]);
          b.gatedLinearResidual(r, put(b, x, [M, 2 * F]), 'silu', wt, null, M, b.buffer([M, F], dt), b.buffer([M, N], dt));
          return get(b, r);
        });
        assertClose(got, want, (dtype === 'f32' || M > 8 ? 0 : ROUNDING_TOL) + 4 * tol, `${c.name}, ${M} rows`);
      }
    });

    test('FP8 and W8A8 of outputs not a multiple of 16: the GEMVs at every row count', () => {
      const N = 67, K = 512, bias = rounded(randn(N, 0.5), dtype);
      for (const [type, w] of [['FP8', randomFp8(N, K, 9)], ['W8A8', randomW8A8(N, K, 9)]] as const) {
        for (const M of [1, 3, 19, 70]) {
          const x = rounded(randn(M * K, 2), dtype), res = rounded(randn(M * N), dtype);
          check(layer(gpu(), dtype, type, w, N, K, x, M, bias, res), layer(cpu, 'f32', type, w, N, K, x, M, bias, res), tol, `${type}, ${M} rows`);
        }
      }
    });

    test('grouped int4 in a large layer: 4 weight rows per warp of the integer GEMV, rows past the last whole group of 4', () => {
      if (dtype === 'f32') return; // the float GEMV takes f32 activations, a row per warp
      const N = 16390, K = 2048; // N * K >= 2^25 and N >= 16384: 4 rows per warp at any row count (qlinear.ts mmvqRows)
      const w = randomInt4('Q4_G128', N, K, 17, false), bias = rounded(randn(N, 0.5), dtype);
      for (const M of [1, 5]) {
        const x = rounded(randn(M * K, 2), dtype), res = rounded(randn(M * N), dtype);
        const got = layer(gpu(), dtype, 'Q4_G128', w, N, K, x, M, bias, res);
        check(got, layer(cpu, 'f32', 'Q4_G128', w, N, K, roundedAsStored(x, K, 'Q4_G128', w, N), M, bias, res), tol, `${M} rows against x rounded to int8`);
      }
    });

    test('9 to 64 rows on tensor cores (kernels/qmma.cu): split over K, partial tiles and steps, act-order (in passes), f32 logits', () => {
      if (dtype === 'f32') return; // f32 activations take the dequantized chunks
      for (const { name, type, make } of CASES) {
        if (type === 'W8A8' || type === 'FP8') continue;
        // 2 column tiles of 128, the second partial; 20 steps of 128 inputs split 5 ways (K-quants, groups of 64 or
        // 128), or 21 with the last one a single unit of 32 (qlinear.ts qmmaSplits: a split is at least 4 steps)
        const N = 200, K = /_K$|G64|G128/.test(type) ? 2560 : 2592;
        const w = make(N, K, 21), bias = rounded(randn(N, 0.5), dtype);
        for (const M of [9, 33, 64]) {
          const x = rounded(randn(M * K, 1), dtype), res = rounded(randn(M * N), dtype);
          check(layer(gpu(), dtype, type, w, N, K, x, M, bias, res), layer(cpu, 'f32', type, w, N, K, x, M, bias, res), tol, `${name}, ${M} rows`);
        }
        // a 16-bit model's LM head: f32 out
        const M = 17, x = rounded(randn(M * K, 1), dtype), b = gpu();
        const logits = b.buffer([M, N], 'f32');
        b.linear(logits, put(b, x, [M, K]), b.weight({ bytes: w, dtype: type }, [N, K], false, true), null, 'none', M);
        const [want] = layer(cpu, 'f32', type, w, N, K, x, M, bias, rounded(randn(M * N), dtype));
        assertClose(get(b, logits), want, 2 * tol, `${name}, f32 logits`);
      }
      // act-order with fewer outputs than rows: x gathered into the scratch's 16 rows a pass
      const N = 16, K = 2560, M = 40, w = ACT_ORDER.make(N, K, 23), bias = rounded(randn(N, 0.5), dtype);
      const x = rounded(randn(M * K, 1), dtype), res = rounded(randn(M * N), dtype);
      check(layer(gpu(), dtype, ACT_ORDER.type, w, N, K, x, M, bias, res), layer(cpu, 'f32', ACT_ORDER.type, w, N, K, x, M, bias, res), tol, `${ACT_ORDER.name}, [${N}, ${K}], ${M} rows`);
    });

    test('one split on tensor cores (a wide layer), and Q4_K over several dequantized chunks past 64 rows', () => {
      if (dtype !== 'f32') {
        const N = 40000, K = 512, M = 24; // 313 column tiles: one split
        const w = randomBlocks('Q8_0', N, K, 19), bias = rounded(randn(N, 0.5), dtype);
        const x = rounded(randn(M * K, 1), dtype), res = rounded(randn(M * N), dtype);
        check(layer(gpu(), dtype, 'Q8_0', w, N, K, x, M, bias, res), layer(cpu, 'f32', 'Q8_0', w, N, K, x, M, bias, res), tol, `[${N}, ${K}], ${M} rows`);
      }
      const N = 8259, K = 4096, M = 70; // 8192 rows per 64 MiB chunk at K = 4096 in 16 bits, 4096 in f32
      const w = randomBlocks('Q4_K', N, K, 11);
      const bias = rounded(randn(N, 0.5), dtype), x = rounded(randn(M * K, 1), dtype), res = rounded(randn(M * N), dtype);
      check(layer(gpu(), dtype, 'Q4_K', w, N, K, x, M, bias, res), layer(cpu, 'f32', 'Q4_K', w, N, K, x, M, bias, res), tol, `${M} rows`);
    });

    test('batch-invariant mode: a row gives the same bits in a pass of 70 rows as alone', () => {
      if (!invariant) backends.push((invariant = new CudaBackend(dtype, true)));
      const b = invariant, N = 67, K = 512, M = 70;
      const w = randomBlocks('Q6_K', N, K, 3), x = rounded(randn(M * K, 2), dtype);
      const wt = b.weight({ bytes: w, dtype: 'Q6_K' }, [N, K], false, true);
      const all = b.buffer([M, N], dtype);
      b.linear(all, put(b, x, [M, K]), wt, null, 'none', M);
      const together = get(b, all);
      for (const i of [0, 9, 63, 64, 69]) {
        const one = b.buffer([1, N], dtype);
        b.linear(one, put(b, x.slice(i * K, (i + 1) * K), [1, K]), wt, null, 'none', 1);
        assert.deepEqual(get(b, one), together.slice(i * N, (i + 1) * N), `row ${i}`);
      }
    });
  });
}
