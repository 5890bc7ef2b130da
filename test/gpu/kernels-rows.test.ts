// The row kernels (kernels/rows.cu): gathers, mean pooling, and the scatter that applies queued table changes
// (src/runtime/table-writes.ts), against the CPU reference.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CudaBackend } from '../../src/backends/cuda/backend.js';
import { assertClose } from '../helpers/close.js';
import { tableScript } from '../helpers/table-writes.js';
import { cpu, get, kernelBackends, noGpu, perDtype, put, putInt, randn } from './helpers.js';

const skip = noGpu();
const gpu = kernelBackends();

perDtype('row kernels', (dtype, tol, r) => {
  test('gather rows and mean pooling', () => {
    const g = gpu(dtype);
    const W = 19, x = r(randn(10 * W));
    const src = Int32Array.from([9, 0, 4]), dst = Int32Array.from([2, 0, 1]);
    const starts = Int32Array.from([0, 1, 5]), lengths = Int32Array.from([1, 4, 5]);
    const out = [cpu, g].map((b) => {
      const gathered = b.buffer([3, W], b === cpu ? 'f32' : dtype), pooled = b.buffer([3, W], b === cpu ? 'f32' : dtype);
      const xt = put(b, x, [10, W]);
      b.gatherRows(gathered, xt, putInt(b, src), putInt(b, dst), 3);
      b.meanPool(pooled, xt, putInt(b, starts), putInt(b, lengths), 3);
      return [get(b, gathered), get(b, pooled)];
    });
    assertClose(out[1][0], out[0][0], 0, 'gather');
    assertClose(out[1][1], out[0][1], tol, 'mean pool');
  });
});

describe('table changes on the GPU', { skip: skip ?? false }, () => {
  test('queued, then applied by one scatter per table: the last change to an entry wins (src/runtime/table-writes.ts)', () => {
    const g = new CudaBackend('f32');
    try {
      const { before, after, want } = tableScript(g);
      assert.deepEqual(before, new Int32Array(want.length), 'nothing is written before the flush');
      assert.deepEqual(after, want);
    } finally {
      g.dispose();
    }
  });
});
