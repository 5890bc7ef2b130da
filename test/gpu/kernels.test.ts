// Every CUDA kernel against its CPU reference op, on random inputs of awkward sizes, in fp32, fp16 and bf16.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { CudaBackend } from '../../src/backends/cuda/backend.js';
import { ACTIVATIONS, dtypeBytes, packSegments, type DType, type Norm } from '../../src/ops/backend.js';
import { f32Table } from '../../src/models/weights.js';
import { assertClose } from '../helpers/close.js';
import { tableScript } from '../helpers/table-writes.js';
import { cpu, get, noGpu, pagedTables, put, putInt, putTable, randn, rounded, scattered, TOL } from './helpers.js';

const skip = noGpu();
const backends = new Map<string, CudaBackend>();
after(() => { for (const b of backends.values()) b.dispose(); });

/** One backend per dtype and mode (batch-invariant or not), shared by the tests. */
function gpu(dtype: DType, batchInvariant = false): CudaBackend {
  const key = `${dtype}${batchInvariant ? ' invariant' : ''}`;
  let b = backends.get(key);
  if (!b) backends.set(key, (b = new CudaBackend(dtype, batchInvariant)));
  return b;
}

for (const dtype of ['f32', 'f16', 'bf16'] as DType[]) {
  describe(`kernels in ${dtype}`, { skip: skip ?? false }, () => {
    const tol = TOL[dtype];
    const r = (x: Float32Array) => rounded(x, dtype);

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

    const shapes: [number, number, number][] = [[1, 1, 1], [1, 64, 768], [2, 50, 33], [3, 2304, 768], [5, 17, 1600], [8, 1000, 640], [9, 96, 64], [64, 600, 1600], [257, 130, 72]];
    for (const [M, N, K] of shapes) {
      test(`linear [${M}x${K}] x [${N}x${K}]^T (${M <= 8 ? 'GEMV kernel' : 'cuBLASLt'})`, () => {
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

    // [query heads, KV heads, head size, window]: multi-head, grouped-query (head size 24 as Llama-3-style
    // configs have it), multi-query with a sliding window, and a window longer than a block
    for (const [heads, kvHeads, D, window] of [[1, 1, 4, 0], [3, 3, 12, 0], [4, 4, 64, 0], [2, 2, 128, 0], [6, 2, 24, 0], [4, 1, 64, 17], [8, 2, 32, 50]]) {
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

    test('KV-cache write, decode attention and prompt attention over long paged contexts', () => {
      const g = gpu(dtype);
      const heads = 2, D = 64, H = heads * D, blockSize = 16, maxBlocks = 400;
      // slot 0: 2460 positions from earlier steps, then a prompt chunk of 40; slot 1 shares slot 0's first 20
      // blocks (positions 0..319) and has 380 positions of its own (320..699); then a decode row for each
      const lengths = [2501, 701];
      const { table, blocks } = pagedTables(lengths, blockSize, maxBlocks, [[1, 0, 20]], 5);
      assert.ok(scattered(table, maxBlocks, 0, 157) && scattered(table, maxBlocks, 1, 44), 'the test wants blocks out of order');
      const cachedSlots = Int32Array.from({ length: 2840 }, (_, i) => (i < 2460 ? 0 : 1));
      const cachedPositions = Int32Array.from({ length: 2840 }, (_, i) => (i < 2460 ? i : 320 + i - 2460));
      const cached = r(randn(2840 * 3 * H));
      const n = 40;
      const slots = new Int32Array(n), positions = Int32Array.from({ length: n }, (_, i) => 2460 + i);
      const keyLens = Int32Array.from(positions, (p) => p + 1);
      const qkv = r(randn(n * 3 * H)), next = r(randn(2 * 3 * H));
      const shape = { heads, kvHeads: heads, headDim: D, scale: 1 / Math.sqrt(D), window: 0 };
      const results = [cpu, g].map((b) => {
        const dt = b === cpu ? 'f32' : dtype;
        const k = b.buffer([blocks, blockSize, H], dt), v = b.buffer([blocks, blockSize, H], dt);
        const bt = putTable(b, table, [lengths.length, maxBlocks]);
        b.writeKV(put(b, cached, [2840, 3 * H]), k, v, bt, putInt(b, cachedSlots), putInt(b, cachedPositions), 2840);
        const q = put(b, qkv, [n, 3 * H]), ts = putInt(b, slots), tp = putInt(b, positions), tk = putInt(b, keyLens);
        b.writeKV(q, k, v, bt, ts, tp, n);
        const prompt = b.buffer([n, H], dt);
        b.attend(prompt, q, k, v, bt, ts, tk, shape, n, { table: putInt(b, Int32Array.from([0, n, 0])), count: 1, longest: n });
        const decode = b.buffer([2, H], dt);
        b.decodeAttention(decode, put(b, next, [2, 3 * H]), k, v, bt, putInt(b, Int32Array.from([1, 0])), putInt(b, Int32Array.from([701, 2501])), shape, 2);
        return { prompt: get(b, prompt), decode: get(b, decode), k: get(b, k), v: get(b, v) };
      });
      assertClose(results[1].k, results[0].k, tol, 'k cache contents');
      assertClose(results[1].v, results[0].v, tol, 'v cache contents');
      assertClose(results[1].prompt, results[0].prompt, tol * 4, 'prompt attention');
      assertClose(results[1].decode, results[0].decode, tol * 4, 'decode attention');
    });

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
}

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
