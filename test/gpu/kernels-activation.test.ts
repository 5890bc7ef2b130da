// The gated activations (kernels/activation.cu): SwiGLU and GeGLU of [gate | up] rows against the CPU reference.
// Bias + activation is checked with the linear layers past 8 rows (test/gpu/kernels-gemv.test.ts).
import { test } from 'node:test';
import { assertClose } from '../helpers/close.js';
import { cpu, get, kernelBackends, perDtype, put, randn } from './helpers.js';

const gpu = kernelBackends();

perDtype('activation kernels', (dtype, tol, r) => {
  test('gated activations (SwiGLU and GeGLU) of [gate | up] rows', () => {
    const g = gpu(dtype);
    const n = 9, F = 301;
    const x = r(randn(n * 2 * F, 2));
    for (const act of ['silu', 'gelu_tanh'] as const) {
      const [want, got] = [cpu, g].map((b) => {
        const out = b.buffer([n, F], b === cpu ? 'f32' : dtype);
        b.gatedActivation(out, put(b, x, [n, 2 * F]), act, n);
        return get(b, out);
      });
      assertClose(got, want, tol * 2, act);
    }
  });
});
