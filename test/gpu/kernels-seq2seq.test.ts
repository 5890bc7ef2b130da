// The encoder-decoder kernels of kernels/attention.cu against their CPU reference ops, on random inputs of awkward
// sizes, in fp32, fp16 and bf16: T5's relative position bias in prompt attention (the encoder's bidirectional
// buckets over whole sources, the decoder's causal ones over prompts and a chunk) and in decode attention, and
// cross-attention over paged encoder memories (several rows per slot, beams sharing one memory, a padding slot
// without one, a memory longer than a decode round), and a decoder step of both captured in a graph and replayed.
// Bias tables with values far apart make a wrong bucket visible.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { CudaBackend } from '../../src/backends/cuda/backend.js';
import { packSegments, type AttentionShape, type DType, type RelativeBias, type Tensor } from '../../src/ops/backend.js';
import { MODE, REQ, REQUEST_STRIDE } from '../../src/ops/requests.js';
import { assertClose } from '../helpers/close.js';
import { cpu, get, noGpu, pagedTables, put, putInt, putTable, randn, rounded, scattered, TOL } from './helpers.js';

const skip = noGpu();
const backends = new Map<DType, CudaBackend>();
after(() => { for (const b of backends.values()) b.dispose(); });

function gpu(dtype: DType): CudaBackend {
  let b = backends.get(dtype);
  if (!b) backends.set(dtype, (b = new CudaBackend(dtype)));
  return b;
}

/** Rows of a pass: runs of (slot, first position, rows), keys up to each row's own position or the whole source. */
function passRows(runs: [number, number, number][], wholeSource: boolean) {
  const n = runs.reduce((a, [, , l]) => a + l, 0);
  const slots = new Int32Array(n), positions = new Int32Array(n), keyLens = new Int32Array(n);
  let t = 0;
  for (const [slot, p0, len] of runs) {
    for (let p = p0; p < p0 + len; p++, t++) {
      slots[t] = slot;
      positions[t] = p;
      keyLens[t] = wholeSource ? p0 + len : p + 1;
    }
  }
  const seg = new Int32Array(3 * n);
  const { count, longest } = packSegments(slots, n, seg);
  return { n, slots, positions, keyLens, seg: seg.slice(0, 3 * count), count, longest };
}

for (const dtype of ['f32', 'f16', 'bf16'] as DType[]) {
  describe(`encoder-decoder attention kernels in ${dtype}`, { skip: skip ?? false }, () => {
    const tol = TOL[dtype];
    const r = (x: Float32Array) => rounded(x, dtype);

    // T5's defaults (32 buckets, distance 128) with distances past the largest bucket, and a small odd table
    for (const [heads, D, buckets, maxDistance, blockSize] of [[3, 24, 32, 128, 16], [4, 64, 10, 20, 5], [2, 40, 9, 13, 7]]) {
      test(`T5 relative position bias, ${buckets} buckets up to distance ${maxDistance}: encoder and decoder prompt attention, decode attention; ${heads} heads of ${D}, blocks of ${blockSize}`, () => {
        const g = gpu(dtype);
        const H = heads * D, R = 3 * H;
        const shapeOf = (table: Tensor, positions: Tensor, bidirectional: boolean): AttentionShape => {
          const bias: RelativeBias = { table, buckets, maxDistance, bidirectional, positions };
          return { heads, kvHeads: heads, headDim: D, scale: 1, window: 0, bias };
        };
        const table = r(randn(buckets * heads, 3));
        // the encoder: two sources of 37 and 150 tokens in one pass, each token over its whole source
        const enc = passRows([[1, 0, 37], [0, 0, 150]], true);
        // the decoder: prompts of 1 and 60 tokens, and a chunk of 30 at 140 after an earlier chunk; then a decode
        // row per sequence (position = keys - 1), in mixed order
        const dec = passRows([[0, 0, 1], [1, 0, 60], [2, 140, 30]], false);
        const decodeSlots = Int32Array.from([2, 0, 1]), decodeLens = Int32Array.from([171, 2, 61]);
        const decodePositions = decodeLens.map((l) => l - 1);
        const maxBlocks = Math.ceil(171 / blockSize) + 1;
        const encTables = pagedTables([150, 37], blockSize, maxBlocks, [], 21 + blockSize);
        const decTables = pagedTables([2, 61, 171], blockSize, maxBlocks, [], 31 + blockSize);
        assert.ok(scattered(encTables.table, maxBlocks, 0, Math.ceil(150 / blockSize)), 'the test wants blocks out of order');
        const encQkv = r(randn(enc.n * R)), decQkv = r(randn(dec.n * R)), early = r(randn(140 * R)), next = r(randn(3 * R));
        const results = [cpu, g].map((b) => {
          const dt = b === cpu ? 'f32' : dtype;
          const tableT = put(b, table, [buckets, heads]);
          const cache = (blocks: number) => ({ k: b.buffer([blocks, blockSize, H], dt), v: b.buffer([blocks, blockSize, H], dt) });
          // the encoder pass
          const e = cache(encTables.blocks), et = putTable(b, encTables.table, [2, maxBlocks]);
          const eq = put(b, encQkv, [enc.n, R]), es = putInt(b, enc.slots), ep = putInt(b, enc.positions);
          b.writeKV(eq, e.k, e.v, et, es, ep, enc.n);
          const encOut = b.buffer([enc.n, H], dt);
          b.attend(encOut, eq, e.k, e.v, et, es, putInt(b, enc.keyLens), shapeOf(tableT, ep, true), enc.n,
            { table: putInt(b, enc.seg), count: enc.count, longest: enc.longest });
          // the decoder's prompt pass, then a decode step
          const d = cache(decTables.blocks), dtab = putTable(b, decTables.table, [3, maxBlocks]);
          b.writeKV(put(b, early, [140, R]), d.k, d.v, dtab, putInt(b, new Int32Array(140).fill(2)), putInt(b, Int32Array.from({ length: 140 }, (_, i) => i)), 140);
          const dq = put(b, decQkv, [dec.n, R]), ds = putInt(b, dec.slots), dp = putInt(b, dec.positions);
          b.writeKV(dq, d.k, d.v, dtab, ds, dp, dec.n);
          const promptOut = b.buffer([dec.n, H], dt);
          b.attend(promptOut, dq, d.k, d.v, dtab, ds, putInt(b, dec.keyLens), shapeOf(tableT, dp, false), dec.n,
            { table: putInt(b, dec.seg), count: dec.count, longest: dec.longest });
          const decodeOut = b.buffer([3, H], dt);
          b.decodeAttention(decodeOut, put(b, next, [3, R]), d.k, d.v, dtab, putInt(b, decodeSlots), putInt(b, decodeLens),
            shapeOf(tableT, putInt(b, decodePositions), false), 3);
          return { enc: get(b, encOut), prompt: get(b, promptOut), decode: get(b, decodeOut), k: get(b, d.k) };
        });
        assertClose(results[1].enc, results[0].enc, tol * 4, 'encoder attention (bidirectional buckets)');
        assertClose(results[1].prompt, results[0].prompt, tol * 4, 'decoder prompt attention (causal buckets)');
        assertClose(results[1].decode, results[0].decode, tol * 4, 'decode attention (causal buckets)');
        assertClose(results[1].k, results[0].k, tol, 'the decode step\'s k written into the cache');
      });
    }

    for (const [heads, kvHeads, D, blockSize] of [[4, 4, 64, 16], [6, 2, 20, 7], [2, 2, 128, 16], [3, 3, 24, 5]]) {
      test(`cross-attention over paged memories, ${heads} heads over ${kvHeads} KV heads of ${D}, blocks of ${blockSize}`, () => {
        const g = gpu(dtype);
        const H = heads * D, W = kvHeads * D;
        // memories of slots 0..2 (37, 1 and 300 source tokens); slot 3 is a beam of slot 2 (its table points at the
        // same blocks); slot 4 is padding (no memory: length 0, block 0)
        const lengths = [37, 1, 300, 300, 0];
        const maxBlocks = Math.ceil(300 / blockSize) + 1;
        const { table, blocks } = pagedTables(lengths, blockSize, maxBlocks, [[3, 2, Math.ceil(300 / blockSize)]], 41 + D);
        assert.ok(scattered(table, maxBlocks, 2, Math.ceil(300 / blockSize)), 'the test wants blocks out of order');
        const written = [0, 1, 2].flatMap((s) => Array.from({ length: lengths[s] }, (_, p) => [s, p]));
        const kv = r(randn(written.length * 2 * W));
        // prompt rows (three of slot 0), decode rows, both beams, the padding row
        const rowSlots = Int32Array.from([2, 0, 0, 0, 3, 1, 4, 2, 3]);
        const n = rowSlots.length;
        const q = r(randn(n * H));
        const shape: AttentionShape = { heads, kvHeads, headDim: D, scale: 1 / Math.sqrt(D), window: 0 };
        const [want, got] = [cpu, g].map((b) => {
          const dt = b === cpu ? 'f32' : dtype;
          const k = b.buffer([blocks, blockSize, W], dt), v = b.buffer([blocks, blockSize, W], dt);
          const bt = putTable(b, table, [lengths.length, maxBlocks]);
          b.writeKV(put(b, kv, [written.length, 2 * W]), k, v, bt, putInt(b, Int32Array.from(written, ([s]) => s)),
            putInt(b, Int32Array.from(written, ([, p]) => p)), written.length);
          const out = put(b, new Float32Array(n * H).fill(5), [n, H]);
          b.crossAttention(out, put(b, q, [n, H]), k, v, bt, putInt(b, rowSlots), putInt(b, Int32Array.from(lengths)), shape, n);
          return get(b, out);
        });
        assert.ok(want.subarray(6 * H, 7 * H).every((x) => x === 0), 'the reference gives the padding row zeros');
        assertClose(got, want, tol * 4, 'cross-attention');
        assertClose(got.subarray(6 * H, 7 * H), want.subarray(6 * H, 7 * H), 0, 'the padding row');
      });
    }

    test('a decoder step (biased self-attention, cross-attention, advance) captured in a graph: three steps replayed with device-side positions', () => {
      const g = gpu(dtype);
      const heads = 4, D = 32, H = heads * D, R = 3 * H, blockSize = 16, buckets = 32, maxDistance = 128;
      // slots 0..2 have decoded 5, 40 and 130 tokens over sources of 37, 200 and 3; slot 3 is padding (block 0)
      const self = [5, 40, 130, 0], source = [37, 200, 3, 0];
      const maxBlocks = Math.ceil(140 / blockSize) + 1, memBlocks = Math.ceil(200 / blockSize) + 1;
      const selfT = pagedTables(self.map((l) => (l ? l + 3 : 0)), blockSize, maxBlocks, [], 51);
      const memT = pagedTables(source, blockSize, memBlocks, [], 52);
      const past = [0, 1, 2].flatMap((s) => Array.from({ length: self[s] }, (_, p) => [s, p]));
      const mem = [0, 1, 2].flatMap((s) => Array.from({ length: source[s] }, (_, p) => [s, p]));
      const pastRows = r(randn(past.length * R)), memRows = r(randn(mem.length * 2 * H)), table = r(randn(buckets * heads, 3));
      const rowSlots = Int32Array.from([1, 3, 0, 2]), n = rowSlots.length;
      const qkv = r(randn(n * R)), q = r(randn(n * H));
      // MODE.SAMPLE for the sequences, none for the padding slot: advance moves only their rows
      const requests = new Int32Array(4 * REQUEST_STRIDE);
      for (const s of [0, 1, 2]) requests[s * REQUEST_STRIDE + REQ.MODE] = MODE.SAMPLE;
      const setup = (b: typeof cpu | CudaBackend) => {
        const dt = b === cpu ? 'f32' : dtype;
        const k = b.buffer([selfT.blocks, blockSize, H], dt), v = b.buffer([selfT.blocks, blockSize, H], dt);
        const mk = b.buffer([memT.blocks, blockSize, H], dt), mv = b.buffer([memT.blocks, blockSize, H], dt);
        const bt = putTable(b, selfT.table, [4, maxBlocks]), mbt = putTable(b, memT.table, [4, memBlocks]);
        b.writeKV(put(b, pastRows, [past.length, R]), k, v, bt, putInt(b, Int32Array.from(past, ([s]) => s)), putInt(b, Int32Array.from(past, ([, p]) => p)), past.length);
        b.writeKV(put(b, memRows, [mem.length, 2 * H]), mk, mv, mbt, putInt(b, Int32Array.from(mem, ([s]) => s)), putInt(b, Int32Array.from(mem, ([, p]) => p)), mem.length);
        const slots = putInt(b, rowSlots);
        const keyLens = putInt(b, Int32Array.from(rowSlots, (s) => self[s] + 1)), positions = putInt(b, Int32Array.from(rowSlots, (s) => self[s]));
        const selfShape: AttentionShape = { heads, kvHeads: heads, headDim: D, scale: 1, window: 0,
          bias: { table: put(b, table, [buckets, heads]), buckets, maxDistance, bidirectional: false, positions } };
        const crossShape: AttentionShape = { heads, kvHeads: heads, headDim: D, scale: 1, window: 0 };
        const x = put(b, qkv, [n, R]), qt = put(b, q, [n, H]), lengths = putInt(b, Int32Array.from(source));
        const selfOut = b.buffer([n, H], dt), crossOut = b.buffer([n, H], dt);
        const seqs = { requests: putTable(b, requests, [4, REQUEST_STRIDE]), history: b.buffer([4, 8], 'i32'), topP: b.buffer([4], 'f32') };
        const step = () => {
          b.decodeAttention(selfOut, x, k, v, bt, slots, keyLens, selfShape, n);
          b.crossAttention(crossOut, qt, mk, mv, mbt, slots, lengths, crossShape, n);
          b.advance(positions, keyLens, { slots, lengths: positions }, seqs, n);
        };
        return { step, read: () => ({ self: get(b, selfOut), cross: get(b, crossOut), positions: b.readInt(positions, n).slice() }) };
      };
      const [c, gp] = [setup(cpu), setup(g)];
      for (let i = 0; i < 3; i++) {
        c.step();
        g.graph('seq2seq-test-step', gp.step); // eager, then captured, then replayed
        const [want, got] = [c.read(), gp.read()];
        assert.deepEqual(Array.from(got.positions), Array.from(want.positions), `positions after step ${i}`);
        assertClose(got.self, want.self, tol * 4, `biased self-attention, step ${i}`);
        assertClose(got.cross, want.cross, tol * 4, `cross-attention, step ${i}`);
      }
      assert.ok(g.graphNodes('seq2seq-test-step') >= 3, 'the step was captured');
    });
  });
}
