// The embedding kernels (kernels/embedding.cu): token + position + token-type lookup, and a vocabulary-parallel
// rank's slice of it, against the CPU reference.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertClose } from '../helpers/close.js';
import { cpu, get, kernelBackends, perDtype, put, putInt, randn } from './helpers.js';

const gpu = kernelBackends();

perDtype('embedding kernels', (dtype, tol, r) => {
  test('embedding lookup (token + position + type)', () => {
    const g = gpu(dtype);
    const V = 37, P = 19, H = 45, n = 7;
    const tok = r(randn(V * H)), pos = r(randn(P * H)), types = r(randn(2 * H));
    const ids = Int32Array.from([0, 36, 5, 5, 17, 1, 30]), positions = Int32Array.from([0, 1, 2, 18, 3, 4, 0]), tt = Int32Array.from([0, 1, 1, 0, 0, 1, 0]);
    for (const withTypes of [false, true]) {
      const want = cpu.buffer([n, H], 'f32');
      cpu.embed(want, putInt(cpu, ids), putInt(cpu, positions), put(cpu, tok, [V, H]), put(cpu, pos, [P, H]),
        withTypes ? putInt(cpu, tt) : null, withTypes ? put(cpu, types, [2, H]) : null, n);
      const out = g.buffer([n, H], dtype);
      g.embed(out, putInt(g, ids), putInt(g, positions), put(g, tok, [V, H]), put(g, pos, [P, H]),
        withTypes ? putInt(g, tt) : null, withTypes ? put(g, types, [2, H]) : null, n);
      assertClose(get(g, out), get(cpu, want), tol, `embed types=${withTypes}`);
    }
  });

  test('a vocabulary slice of the lookup: rows of the slice, zeros for ids outside it', () => {
    const g = gpu(dtype);
    const rows = 11, H = 70, first = 22, n = 9;
    const table = r(randn(rows * H));
    // ids before, at the start of, inside, at the end of and past the slice
    const ids = Int32Array.from([0, 21, 22, 27, 32, 33, 40, 22, 30]);
    const [want, got] = [cpu, g].map((b) => {
      const out = b.buffer([n, H], b === cpu ? 'f32' : dtype);
      b.embedSlice(out, putInt(b, ids), put(b, table, [rows, H]), first, n);
      return get(b, out);
    });
    assert.ok(want.subarray(0, H).every((v) => v === 0) && want[2 * H] === table[0], 'the reference zeroes ids outside and reads ids inside');
    assertClose(got, want, 0, 'slice rows');
  });
});
