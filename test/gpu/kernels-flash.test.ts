// The tensor-core prompt attention kernel (kernels/flash.cu) at every head size it takes, as a prompt over the paged
// cache and as an encoder over its own rows, against the CPU reference.
import { test } from 'node:test';
import { packSegments } from '../../src/ops/backend.js';
import { assertClose } from '../helpers/close.js';
import { cpu, get, kernelBackends, perDtype, pagedTables, put, putInt, putTable, randn } from './helpers.js';

const gpu = kernelBackends();

perDtype('prompt attention kernels', (dtype, tol, r) => {
  // Every head size of the tensor-core prompt kernel (kernels/flash.cu takes f16 and bf16; f32 and sizes it
  // lacks stay on CUDA cores), with segments longer than its query tiles and key tiles: bidirectional rows (an
  // encoder: every row sees the whole sequence), causal prompts, a chunk continuing after cached positions, one row.
  for (const D of [32, 64, 80, 96, 128, 256]) {
    for (const [blockSize, window] of [[16, 0], [5, 0], [16, 45]]) {
      if (dtype === 'f32' && D > 128) continue;
      // [slot, first position, rows, bidirectional]; the encoder's form (attendEncoder: whole sequences from position 0,
      // keys read from the qkv rows where the backend can) leaves out the chunk after cached positions
      const cached: [number, number, number, boolean][] = [[0, 0, 200, true], [1, 0, 130, false], [2, 50, 70, false], [3, 0, 1, true], [4, 0, 65, true]];
      for (const encoder of [false, true]) {
        const runs = encoder ? cached.filter(([, p0]) => p0 === 0) : cached;
        test(`${encoder ? 'encoder' : 'prompt'} attention, head size ${D}, 4 heads over 2 KV heads, window ${window}, blocks of ${blockSize}: bidirectional and causal segments of 1 to 200 rows`, () => {
          const g = gpu(dtype);
          const heads = 4, kvHeads = 2, H = heads * D, W = kvHeads * D, R = H + 2 * W;
          // each slot's length (slot 2 holds nothing in the encoder's form)
          const lengths = [0, 1, 2, 3, 4].map((s) => runs.find(([slot]) => slot === s)).map((run) => (run ? run[1] + run[2] : 0));
          const maxBlocks = Math.ceil(200 / blockSize);
          const { table, blocks } = pagedTables(lengths, blockSize, maxBlocks, [], 3 + D);
          const n = runs.reduce((a, [, , l]) => a + l, 0);
          const slots = new Int32Array(n), positions = new Int32Array(n), keyLens = new Int32Array(n);
          let t = 0;
          for (const [slot, p0, len, bidi] of runs) for (let p = p0; p < p0 + len; p++, t++) { slots[t] = slot; positions[t] = p; keyLens[t] = bidi ? p0 + len : p + 1; }
          const qkv = r(randn(n * R)), early = r(randn(50 * R));
          const shape = { heads, kvHeads, headDim: D, scale: 1 / Math.sqrt(D), window };
          const seg = new Int32Array(3 * n);
          const { count, longest } = packSegments(slots, n, seg);
          const [want, got] = [cpu, g].map((b) => {
            const dt = b === cpu ? 'f32' : dtype;
            const k = b.buffer([blocks, blockSize, W], dt), v = b.buffer([blocks, blockSize, W], dt);
            const bt = putTable(b, table, [lengths.length, maxBlocks]);
            const q = put(b, qkv, [n, R]), ts = putInt(b, slots), out = b.buffer([n, H], dt);
            const segments = { table: putInt(b, seg.slice(0, 3 * count)), count, longest };
            if (encoder) {
              b.attendEncoder(out, q, k, v, bt, ts, putInt(b, positions), putInt(b, keyLens), shape, n, segments);
            } else {
              b.writeKV(put(b, early, [50, R]), k, v, bt, putInt(b, new Int32Array(50).fill(2)), putInt(b, Int32Array.from({ length: 50 }, (_, i) => i)), 50);
              b.writeKV(q, k, v, bt, ts, putInt(b, positions), n);
              b.attend(out, q, k, v, bt, ts, putInt(b, keyLens), shape, n, segments);
            }
            return get(b, out);
          });
          assertClose(got, want, tol * 4, `${encoder ? 'encoder' : 'prompt'} attention`);
        });
      }
    }
  }
});
