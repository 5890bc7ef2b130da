// The runtime's queue of table changes (src/runtime/table-writes.ts): nothing reaches the table before a flush, the
// last change to an entry wins (overlapping changes of a row flush in between), more changes than a flush takes,
// 1-D tables of f32 bits. test/gpu/kernels-rows.test.ts runs the same script on the GPU (Backend.scatterInt there).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CpuBackend } from '../src/backends/cpu/backend.js';
import { tableScript } from './helpers/table-writes.js';

test('table changes wait for a flush, and the last change to an entry wins', () => {
  const { before, after, want } = tableScript(new CpuBackend());
  assert.deepEqual(before, new Int32Array(want.length), 'nothing is written before the flush');
  assert.deepEqual(after, want);
});
