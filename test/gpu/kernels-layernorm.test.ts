// The LayerNorm kernels (kernels/layernorm.cu): plain and fused add-bias + residual + LayerNorm, pre-LN and post-LN,
// at widths from 1 to 3000 (the one-warp and the one-block forms), against the CPU reference.
import { test } from 'node:test';
import { assertClose } from '../helpers/close.js';
import { cpu, get, kernelBackends, perDtype, put, randn } from './helpers.js';

const gpu = kernelBackends();

perDtype('layer norm kernels', (dtype, tol, r) => {
  for (const H of [1, 7, 64, 768, 1600, 3000]) {
    test(`layer norm and fused add-bias-residual-layer-norm, width ${H}`, () => {
      const g = gpu(dtype);
      const n = 5;
      const x = r(randn(n * H, 2)), bias = r(randn(H)), res = r(randn(n * H)), gamma = r(randn(H)), beta = r(randn(H));
      const want = cpu.buffer([n, H], 'f32');
      cpu.layerNorm(want, put(cpu, x, [n, H]), put(cpu, gamma, [H]), put(cpu, beta, [H]), 1e-5, n);
      const out = g.buffer([n, H], dtype);
      g.layerNorm(out, put(g, x, [n, H]), put(g, gamma, [H]), put(g, beta, [H]), 1e-5, n);
      assertClose(get(g, out), get(cpu, want), tol * 2, 'layerNorm');
      // residual stream: sum written over the residual, norm into another buffer
      const cr = put(cpu, res, [n, H]), cn = cpu.buffer([n, H], 'f32');
      cpu.addBiasResidualLayerNorm(cr, cn, put(cpu, x, [n, H]), put(cpu, bias, [H]), cr, put(cpu, gamma, [H]), put(cpu, beta, [H]), 1e-5, n);
      const gr = put(g, res, [n, H]), gn = g.buffer([n, H], dtype);
      g.addBiasResidualLayerNorm(gr, gn, put(g, x, [n, H]), put(g, bias, [H]), gr, put(g, gamma, [H]), put(g, beta, [H]), 1e-5, n);
      assertClose(get(g, gr), get(cpu, cr), tol, 'sum');
      assertClose(get(g, gn), get(cpu, cn), tol * 4, 'norm');
      // post-LN (BERT): sum and norm in one buffer, no bias
      const cb = cpu.buffer([n, H], 'f32'), gb = g.buffer([n, H], dtype);
      cpu.addBiasResidualLayerNorm(cb, cb, put(cpu, x, [n, H]), null, put(cpu, res, [n, H]), put(cpu, gamma, [H]), put(cpu, beta, [H]), 1e-12, n);
      g.addBiasResidualLayerNorm(gb, gb, put(g, x, [n, H]), null, put(g, res, [n, H]), put(g, gamma, [H]), put(g, beta, [H]), 1e-12, n);
      assertClose(get(g, gb), get(cpu, cb), tol * 4, 'in place');
    });
  }
});
