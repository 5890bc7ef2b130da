// The paged KV-cache kernels (kernels/attention.cu): KV write, decode attention (flash-decoding over long contexts),
// prompt attention on CUDA cores, block copies (copy-on-write) and swapping blocks to the host, against the CPU
// reference, with block tables out of order, shared prefixes and padding rows.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dtypeBytes, packSegments } from '../../src/ops/backend.js';
import { assertClose } from '../helpers/close.js';
import { cpu, get, kernelBackends, perDtype, pagedTables, put, putInt, putTable, randn, scattered } from './helpers.js';

const gpu = kernelBackends();

perDtype('paged attention kernels', (dtype, tol, r) => {
  // [query heads, KV heads, head size, window]: multi-head, grouped-query (head size 24 as Llama-3-style
  // configs have it), multi-query with a sliding window, and a window longer than a block. The decode kernel takes the
  // query heads of a KV head together (up to 4 a block: decodeHeadsPerBlock): groups of 2, 3 (one head of the block
  // idle), 4, 7 (4 and 3) and 8 (two blocks of 4)
  for (const [heads, kvHeads, D, window] of [[1, 1, 4, 0], [3, 3, 12, 0], [4, 4, 64, 0], [2, 2, 128, 0], [6, 2, 24, 0], [4, 1, 64, 17], [8, 2, 32, 50],
    [4, 2, 16, 0], [7, 1, 32, 0], [16, 2, 64, 5]]) {
    for (const blockSize of [16, 8, 3]) {
      test(`KV-cache write, decode attention and prompt attention, ${heads} heads over ${kvHeads} KV heads of ${D}, window ${window}, paged in blocks of ${blockSize}`, () => {
        const g = gpu(dtype);
        const H = heads * D, W = kvHeads * D, R = H + 2 * W, maxSeq = 130;
        // slot 4 shares the first whole blocks of slot 2 (a common prefix) and goes on from there
        const shareBlocks = Math.ceil(40 / blockSize), shared = shareBlocks * blockSize;
        // prompts of lengths 1, 33 and 100; a chunk of 20 continuing at position 60 of slot 3; a chunk of 30
        // continuing slot 4 after its shared prefix. Slot 5 is padding: no blocks of its own, so block 0.
        const runs: [number, number, number][] = [[0, 0, 1], [1, 0, 33], [2, 0, 100], [3, 60, 20], [4, shared, 30]];
        const lengths = [2, 34, 101, 81, shared + 31, 0]; // after the decode step, most ending mid-block
        const maxBlocks = Math.ceil(maxSeq / blockSize) + 1;
        const { table, blocks } = pagedTables(lengths, blockSize, maxBlocks, [[4, 2, shareBlocks]], 11 + blockSize);
        assert.ok(scattered(table, maxBlocks, 2, Math.ceil(101 / blockSize)), 'the test wants slot 2 out of block order');
        const n = runs.reduce((a, [, , l]) => a + l, 0);
        const slots = new Int32Array(n), positions = new Int32Array(n), keyLens = new Int32Array(n);
        let t = 0;
        for (const [slot, p0, len] of runs) for (let p = p0; p < p0 + len; p++, t++) { slots[t] = slot; positions[t] = p; keyLens[t] = p + 1; }
        const qkv = r(randn(n * R));
        // slot 3's first 60 positions come from an earlier chunk (the q parts of these rows go unused)
        const early = r(randn(60 * R));
        // the decode step: one row per sequence and a padding row (one key, in block 0), in mixed order
        const decodeSlots = Int32Array.from([2, 0, 5, 4, 1, 3]);
        const decodeLens = Int32Array.from(decodeSlots, (s) => Math.max(1, lengths[s]));
        const next = r(randn(decodeSlots.length * R));
        const shape = { heads, kvHeads, headDim: D, scale: 1 / Math.sqrt(D), window };
        const seg = new Int32Array(3 * n);
        const { count, longest } = packSegments(slots, n, seg);
        const results = [cpu, g].map((b) => {
          const dt = b === cpu ? 'f32' : dtype;
          const k = b.buffer([blocks, blockSize, W], dt), v = b.buffer([blocks, blockSize, W], dt);
          const bt = putTable(b, table, [lengths.length, maxBlocks]);
          b.writeKV(put(b, early, [60, R]), k, v, bt, putInt(b, new Int32Array(60).fill(3)), putInt(b, Int32Array.from({ length: 60 }, (_, i) => i)), 60);
          const q = put(b, qkv, [n, R]), ts = putInt(b, slots), tp = putInt(b, positions), tk = putInt(b, keyLens);
          b.writeKV(q, k, v, bt, ts, tp, n);
          const prompt = b.buffer([n, H], dt);
          b.attend(prompt, q, k, v, bt, ts, tk, shape, n, { table: putInt(b, seg.slice(0, 3 * count)), count, longest });
          const decode = b.buffer([decodeSlots.length, H], dt);
          b.decodeAttention(decode, put(b, next, [decodeSlots.length, R]), k, v, bt, putInt(b, decodeSlots), putInt(b, decodeLens),
            shape, decodeSlots.length);
          return { prompt: get(b, prompt), decode: get(b, decode), k: get(b, k), v: get(b, v) };
        });
        assertClose(results[1].k, results[0].k, tol, 'k cache contents');
        assertClose(results[1].v, results[0].v, tol, 'v cache contents');
        assertClose(results[1].prompt, results[0].prompt, tol * 4, 'prompt attention');
        assertClose(results[1].decode, results[0].decode, tol * 4, 'decode attention');
      });
    }
  }

  // flash-decoding: two rows leave most of the GPU idle, so their keys are split (up to 32 ways at 2501 keys)
  for (const [heads, kvHeads] of [[2, 2], [8, 2]]) test(`KV-cache write, decode attention and prompt attention over long paged contexts, ${heads} heads over ${kvHeads} KV heads`, () => {
    const g = gpu(dtype);
    const D = 64, H = heads * D, W = kvHeads * D, R = H + 2 * W, blockSize = 16, maxBlocks = 400;
    // slot 0: 2460 positions from earlier steps, then a prompt chunk of 40; slot 1 shares slot 0's first 20
    // blocks (positions 0..319) and has 380 positions of its own (320..699); then a decode row for each
    const lengths = [2501, 701];
    const { table, blocks } = pagedTables(lengths, blockSize, maxBlocks, [[1, 0, 20]], 5);
    assert.ok(scattered(table, maxBlocks, 0, 157) && scattered(table, maxBlocks, 1, 44), 'the test wants blocks out of order');
    const cachedSlots = Int32Array.from({ length: 2840 }, (_, i) => (i < 2460 ? 0 : 1));
    const cachedPositions = Int32Array.from({ length: 2840 }, (_, i) => (i < 2460 ? i : 320 + i - 2460));
    const cached = r(randn(2840 * R));
    const n = 40;
    const slots = new Int32Array(n), positions = Int32Array.from({ length: n }, (_, i) => 2460 + i);
    const keyLens = Int32Array.from(positions, (p) => p + 1);
    const qkv = r(randn(n * R)), next = r(randn(2 * R));
    const shape = { heads, kvHeads, headDim: D, scale: 1 / Math.sqrt(D), window: 0 };
    const results = [cpu, g].map((b) => {
      const dt = b === cpu ? 'f32' : dtype;
      const k = b.buffer([blocks, blockSize, W], dt), v = b.buffer([blocks, blockSize, W], dt);
      const bt = putTable(b, table, [lengths.length, maxBlocks]);
      b.writeKV(put(b, cached, [2840, R]), k, v, bt, putInt(b, cachedSlots), putInt(b, cachedPositions), 2840);
      const q = put(b, qkv, [n, R]), ts = putInt(b, slots), tp = putInt(b, positions), tk = putInt(b, keyLens);
      b.writeKV(q, k, v, bt, ts, tp, n);
      const prompt = b.buffer([n, H], dt);
      b.attend(prompt, q, k, v, bt, ts, tk, shape, n, { table: putInt(b, Int32Array.from([0, n, 0])), count: 1, longest: n });
      const decode = b.buffer([2, H], dt);
      b.decodeAttention(decode, put(b, next, [2, R]), k, v, bt, putInt(b, Int32Array.from([1, 0])), putInt(b, Int32Array.from([701, 2501])), shape, 2);
      return { prompt: get(b, prompt), decode: get(b, decode), k: get(b, k), v: get(b, v) };
    });
    assertClose(results[1].k, results[0].k, tol, 'k cache contents');
    assertClose(results[1].v, results[0].v, tol, 'v cache contents');
    assertClose(results[1].prompt, results[0].prompt, tol * 4, 'prompt attention');
    assertClose(results[1].decode, results[0].decode, tol * 4, 'decode attention');
  });

  // [planes, blocks, blockSize, width]: 16-byte vectors, odd sizes (element copies), a GPT-2 1.5B block,
  // and more planes than a grid's y dimension holds
  for (const [planes, blocks, blockSize, width] of [[6, 9, 16, 24], [6, 9, 3, 5], [4, 9, 16, 1600], [70000, 9, 1, 2]]) {
    test(`copy blocks in every plane of a [${planes}, ${blocks}, ${blockSize}, ${width}] cache pool`, () => {
      const g = gpu(dtype);
      const shape = [planes, blocks, blockSize, width], blockValues = blockSize * width;
      const pool = r(randn(planes * blocks * blockValues));
      // copy-on-write: fresh destinations that are no pair's source (one source twice); the fifth pair is past count
      const pairs = Int32Array.from([4, 7, 0, 2, 4, 8, 5, 1, 3, 6]), count = 4;
      const [want, got] = [cpu, g].map((b) => {
        const t = put(b, pool, shape);
        b.copyBlocks(t, putTable(b, pairs, [5, 2]), count);
        return get(b, t);
      });
      const block = (x: Float32Array, p: number, id: number) => Array.from(x.subarray((p * blocks + id) * blockValues, (p * blocks + id + 1) * blockValues));
      assert.deepEqual(block(want, planes - 1, 8), block(pool, planes - 1, 4), 'the reference copied');
      assert.deepEqual(block(want, planes - 1, 6), block(pool, planes - 1, 6), 'the reference stopped at count');
      assertClose(got, want, 0, 'pool');
    });
  }

  test('swap blocks out to the host and back into other blocks (preemption)', () => {
    const g = gpu(dtype);
    const shape = [5, 10, 4, 12], blockValues = 4 * 12;
    const pool = r(randn(5 * 10 * blockValues));
    // a run of consecutive blocks (4, 5, 6: one region per plane) and one apart; restored elsewhere
    const out = [4, 5, 6, 1], into = [8, 2, 3, 9];
    const [want, got] = [cpu, g].map((b) => {
      const t = put(b, pool, shape);
      const bytes = b.readBlocks(t, out);
      assert.equal(bytes.byteLength, 5 * out.length * blockValues * (b === cpu ? 4 : dtypeBytes(dtype)));
      b.writeBlocks(t, into, bytes);
      return get(b, t);
    });
    const block = (x: Float32Array, p: number, id: number) => Array.from(x.subarray((p * 10 + id) * blockValues, (p * 10 + id + 1) * blockValues));
    for (let p = 0; p < 5; p++) out.forEach((src, i) => assert.deepEqual(block(want, p, into[i]), block(pool, p, src), `plane ${p}, block ${src}`));
    assert.deepEqual(block(want, 2, 7), block(pool, 2, 7), 'other blocks untouched');
    assertClose(got, want, 0, 'pool');
  });
});
