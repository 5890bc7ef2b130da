// The rotary kernel (kernels/rotary.cu): q and k turned in place, grouped-query heads, partial rotation, dynamic NTK
// and Qwen3's per-head norms, at positions far into a long context, against the CPU reference.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { f32Table } from '../../src/models/weights.js';
import { assertClose } from '../helpers/close.js';
import { cpu, get, kernelBackends, perDtype, put, putInt, randn } from './helpers.js';

const gpu = kernelBackends();

perDtype('rotary kernel', (dtype, tol, r) => {
  // [query heads, KV heads, head size, rotating dims, dynamic NTK, Qwen3 head norms]
  for (const [heads, kvHeads, D, dims, dynamic, norms] of [[4, 2, 64, 64, false, false], [6, 2, 24, 24, true, false], [2, 1, 128, 64, false, true],
    [8, 8, 32, 32, true, true]] as [number, number, number, number, boolean, boolean][]) {
    test(`rotary embedding of q and k, ${heads} heads over ${kvHeads} KV heads of ${D} (${dims} turning)${dynamic ? ', dynamic NTK' : ''}${norms ? ', head norms' : ''}`, () => {
      const g = gpu(dtype);
      const n = 37, R = (heads + 2 * kvHeads) * D;
      const qkv = r(randn(n * R, 2)), qn = r(randn(D, 0.3).map((x) => 1 + x)), kn = r(randn(D, 0.3).map((x) => 1 + x));
      // positions far into a long context, where fp32 angles are large; lengths straddle the dynamic threshold
      const positions = Int32Array.from({ length: n }, (_, i) => (i * 977) % 5000);
      const lengths = Int32Array.from(positions, (p, i) => p + 1 + (i % 3));
      const invFreq = Float32Array.from({ length: dims / 2 }, (_, i) => Math.fround(1 / 10000 ** ((2 * i) / dims)));
      const [want, got] = [cpu, g].map((b) => {
        const t = put(b, qkv, [n, R]);
        const rot = { invFreq: f32Table(b, invFreq), dims, scale: dynamic ? 1 : 1.17, dynamic: dynamic ? { base: 10000, factor: 4, original: 2048 } : null };
        const hn = norms ? { q: put(b, qn, [D]), k: put(b, kn, [D]), eps: 1e-6 } : null;
        b.rotary(t, putInt(b, positions), putInt(b, lengths), rot, { heads, kvHeads, headDim: D, scale: 1, window: 0 }, hn, n);
        return get(b, t);
      });
      // the v part is left alone; angles up to 5000 rad cost fp32 a few ulps of the angle
      for (let t = 0; t < n; t++) {
        const v0 = t * R + (heads + kvHeads) * D, v1 = (t + 1) * R;
        assert.deepEqual(Array.from(got.subarray(v0, v1)), Array.from(qkv.subarray(v0, v1)), `v of row ${t}`);
      }
      assertClose(got, want, dtype === 'f32' ? 2e-4 : tol * 4, 'rotated q and k');
    });
  }
});
