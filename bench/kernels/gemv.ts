// The float linear layers of decode (kernels/gemv.cu for 1 to 8 rows; cuBLASLt past that): the weight is read once
// per call, so a layer's time is its weight bytes over the bandwidth. GPT-2 1.5B's and Llama-3-8B's matrices, each
// cycled over copies past the L2 cache, as a decode step meets them; the fused LayerNorm + linear and linear +
// residual forms at one row; and cuBLASLt at every row count, so that the rows where each is faster show.
import { EPILOGUE } from '../../src/backends/cuda/blas.js';
import { ptr } from '../../src/backends/cuda/tensor.js';
import type { Norm } from '../../src/ops/backend.js';
import { copiesFor, type KernelCase, type Tensors } from './harness.js';

/** [name, N, K] */
const MATRICES: [string, number, number][] = [
  ['GPT-2 1.5B qkv', 4800, 1600], ['GPT-2 1.5B fc', 6400, 1600], ['GPT-2 1.5B proj', 1600, 6400],
  ['Llama-3-8B qkv', 6144, 4096], ['Llama-3-8B gate|up', 28672, 4096], ['Llama-3-8B down', 4096, 14336],
];

export function* gemv(t: Tensors): Generator<KernelCase> {
  const b = t.b;
  for (const [name, N, K] of MATRICES) {
    for (const M of [1, 2, 4, 8, 64]) {
      const copies = copiesFor(N * K * t.eb);
      const ws = Array.from({ length: copies }, () => t.random([N, K]));
      const x = t.random([M, K]), out = t.buffer([M, N]), bias = t.random([N]);
      const bytes = (N * K + M * K + M * N + N) * t.eb, shape = `${name} [${N}, ${K}] x ${M}`;
      yield { op: `linear${M > 8 ? ' (cuBLASLt)' : ''}`, shape, bytes, copies, run: (i) => b.linear(out, x, ws[i], bias, 'none', M) };
      // the same product through cuBLASLt where Backend.linear takes the GEMV
      if (M <= 8) {
        yield {
          op: 'linear, cuBLASLt', shape, bytes, copies,
          run: (i) => b.ctx.blas.matmul(ptr(out), out.dtype, ptr(x), ptr(ws[i]), ptr(bias), EPILOGUE.BIAS, M, N, K, ws[i].dtype as 'f16' | 'bf16'),
        };
      }
    }
  }
  for (const [name, N, K] of MATRICES.filter(([, N, K]) => N > K)) {
    const copies = copiesFor(N * K * t.eb);
    const ws = Array.from({ length: copies }, () => t.random([N, K]));
    const x = t.random([1, K]), out = t.buffer([1, N]), scratch = t.buffer([1, Math.max(N, K)]);
    const norm: Norm = { kind: 'layer', gamma: t.random([K]), beta: t.random([K]), eps: 1e-5 };
    yield { op: 'normLinear (LayerNorm fused)', shape: `${name} [${N}, ${K}] x 1`, bytes: (N * K + 3 * K + N) * t.eb, copies, run: (i) => b.normLinear(out, x, norm, ws[i], null, 'none', 1, scratch) };
  }
  for (const [name, N, K] of MATRICES.filter(([, N, K]) => N < K)) {
    const copies = copiesFor(N * K * t.eb);
    const ws = Array.from({ length: copies }, () => t.random([N, K]));
    const x = t.random([1, K]), res = t.random([1, N]), scratch = t.buffer([1, N]);
    yield { op: 'linearResidual', shape: `${name} [${N}, ${K}] x 1`, bytes: (N * K + K + 2 * N) * t.eb, copies, run: (i) => b.linearResidual(res, x, ws[i], null, 1, scratch) };
  }
}
