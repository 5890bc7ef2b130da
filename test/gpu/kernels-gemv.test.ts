// Linear layers (kernels/gemv.cu for 1 to 8 rows, cuBLASLt past that, with kernels/activation.cu's bias +
// activation): every activation, with and without bias, fp32 logits, the fused RMSNorm/LayerNorm + linear and
// linear + residual forms, and batch-invariant mode's bit-for-bit rows, against the CPU reference.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CudaBackend } from '../../src/backends/cuda/backend.js';
import { GEMV_MAX_ROWS } from '../../src/backends/cuda/linear.js';
import { ACTIVATIONS, type DType, type Norm } from '../../src/ops/backend.js';
import { assertClose } from '../helpers/close.js';
import { cpu, get, kernelBackends, perDtype, put, randn } from './helpers.js';

const gpu = kernelBackends();

perDtype('linear-layer kernels', (dtype, tol, r) => {
  const shapes: [number, number, number][] = [[1, 1, 1], [1, 64, 768], [2, 50, 33], [3, 2304, 768], [5, 17, 1600], [8, 1000, 640], [9, 96, 64], [64, 600, 1600], [257, 130, 72]];
  for (const [M, N, K] of shapes) {
    test(`linear [${M}x${K}] x [${N}x${K}]^T (${M <= GEMV_MAX_ROWS ? 'GEMV kernel' : 'cuBLASLt; the GEMV in batch-invariant mode'})`, () => {
      const g = gpu(dtype);
      const x = r(randn(M * K)), w = r(randn(N * K, 1 / Math.sqrt(K))), b = r(randn(N));
      for (const act of ACTIVATIONS) {
        for (const withBias of [true, false]) {
          const want = cpu.buffer([M, N], 'f32');
          cpu.linear(want, put(cpu, x, [M, K]), put(cpu, w, [N, K]), withBias ? put(cpu, b, [N]) : null, act, M);
          const out = g.buffer([M, N], dtype);
          g.linear(out, put(g, x, [M, K]), put(g, w, [N, K]), withBias ? put(g, b, [N]) : null, act, M);
          assertClose(get(g, out), get(cpu, want), tol * 4, `${act} bias=${withBias}`);
        }
      }
      // fp32 output (logits) from dtype inputs
      const want = cpu.buffer([M, N], 'f32');
      cpu.linear(want, put(cpu, x, [M, K]), put(cpu, w, [N, K]), null, 'none', M);
      const out = g.buffer([M, N], 'f32');
      g.linear(out, put(g, x, [M, K]), put(g, w, [N, K]), null, 'none', M);
      assertClose(get(g, out), get(cpu, want), dtype === 'f32' ? tol : 1e-3, 'fp32 logits');
    });
  }

  for (const [M, N, K, kind] of [[1, 50, 768, 'layer'], [3, 2304, 1600, 'layer'], [8, 96, 45, 'layer'], [6, 640, 64, 'layer'], [17, 300, 200, 'layer'],
    [1, 50, 768, 'rms'], [5, 96, 45, 'rms'], [17, 300, 200, 'rms']] as [number, number, number, 'layer' | 'rms'][]) {
    test(`fused ${kind === 'rms' ? 'RMSNorm' : 'LayerNorm'} + linear, and linear + residual, [${M}x${K}] -> ${N}`, () => {
      const g = gpu(dtype);
      const x = r(randn(M * K, 3)), gamma = r(randn(K)), beta = r(randn(K)), w = r(randn(N * K, 1 / Math.sqrt(K))), b = r(randn(N));
      const res = r(randn(M * N)), xr = r(randn(M * K));
      const run = (be: typeof cpu | CudaBackend, dt: DType) => {
        const out = be.buffer([M, N], dt), scratch = be.buffer([M, Math.max(K, N)], dt);
        // RMSNorm without a shift; LayerNorm with one
        const norm: Norm = { kind, gamma: put(be, gamma, [K]), beta: kind === 'rms' ? null : put(be, beta, [K]), eps: 1e-5 };
        be.normLinear(out, put(be, x, [M, K]), norm, put(be, w, [N, K]), put(be, b, [N]), 'gelu_tanh', M, scratch);
        const logits = be.buffer([M, N], 'f32');
        be.normLinear(logits, put(be, x, [M, K]), norm, put(be, w, [N, K]), null, 'none', M, scratch);
        const rs = put(be, res, [M, N]);
        be.linearResidual(rs, put(be, xr, [M, K]), put(be, w, [N, K]), put(be, b, [N]), M, be.buffer([M, N], dt));
        return [get(be, out), get(be, logits), get(be, rs)];
      };
      const want = run(cpu, 'f32'), got = run(g, dtype);
      assertClose(got[0], want[0], tol * 8, 'norm + linear + gelu');
      assertClose(got[1], want[1], dtype === 'f32' ? tol : tol * 8, 'norm + linear to fp32 logits');
      assertClose(got[2], want[2], tol * 4, 'linear + residual');
    });
  }

  test('batch-invariant linear layers: every row of a pass of 1 to 70 rows is bit for bit the row computed alone', () => {
    const g = gpu(dtype, true);
    const [N, K] = [300, 200];
    const M = 70;
    const x = r(randn(M * K, 3)), gamma = r(randn(K)), beta = r(randn(K)), w = r(randn(N * K, 1 / Math.sqrt(K))), b = r(randn(N));
    const res = r(randn(M * N));
    const wt = put(g, w, [N, K]), bt = put(g, b, [N]);
    const norm: Norm = { kind: 'layer', gamma: put(g, gamma, [K]), beta: put(g, beta, [K]), eps: 1e-5 };
    // rows [from, from + n) of x in one pass: linear + GELU, LayerNorm + linear to fp32, linear + residual
    const pass = (from: number, n: number) => {
      const xs = put(g, x.slice(from * K, (from + n) * K), [n, K]), scratch = g.buffer([n, Math.max(K, N)], dtype);
      const out = g.buffer([n, N], dtype), logits = g.buffer([n, N], 'f32');
      g.linear(out, xs, wt, bt, 'gelu_tanh', n);
      g.normLinear(logits, xs, norm, wt, null, 'none', n, scratch);
      const rs = put(g, res.slice(from * N, (from + n) * N), [n, N]);
      g.linearResidual(rs, xs, wt, bt, n, scratch);
      return [get(g, out), get(g, logits), get(g, rs)];
    };
    const alone = Array.from({ length: M }, (_, i) => pass(i, 1));
    for (const [from, n] of [[0, 2], [3, 5], [0, 8], [1, 9], [5, 17], [0, 64], [0, 70], [6, 64]]) {
      const got = pass(from, n);
      for (let i = 0; i < n; i++) {
        for (let o = 0; o < 3; o++) {
          const row = got[o].subarray(i * N, (i + 1) * N), want = alone[from + i][o];
          assert.ok(row.every((v, j) => Object.is(v, want[j])), `output ${o}, row ${from + i} in a pass of ${n} rows from ${from}`);
        }
      }
    }
  });
});
