// Every CUDA kernel against its CPU reference op, on random inputs of awkward sizes, in fp32, fp16 and bf16.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { CudaBackend } from '../../src/backends/cuda/backend.js';
import { packSampling, samplingParams } from '../../src/engine/sampling.js';
import { packSegments, type Activation, type DType } from '../../src/ops/backend.js';
import { assertClose } from '../helpers/close.js';
import { cpu, get, noGpu, put, putInt, randn, rounded, TOL } from './helpers.js';

const skip = noGpu();
const backends = new Map<DType, CudaBackend>();
after(() => { for (const b of backends.values()) b.dispose(); });

function gpu(dtype: DType): CudaBackend {
  let b = backends.get(dtype);
  if (!b) backends.set(dtype, (b = new CudaBackend(dtype)));
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
        for (const act of ['none', 'gelu', 'gelu_tanh', 'tanh'] as Activation[]) {
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

    for (const [M, N, K] of [[1, 50, 768], [3, 2304, 1600], [8, 96, 45], [6, 640, 64], [17, 300, 200]] as [number, number, number][]) {
      test(`fused LayerNorm + linear, and linear + residual, [${M}x${K}] -> ${N}`, () => {
        const g = gpu(dtype);
        const x = r(randn(M * K, 3)), gamma = r(randn(K)), beta = r(randn(K)), w = r(randn(N * K, 1 / Math.sqrt(K))), b = r(randn(N));
        const res = r(randn(M * N)), xr = r(randn(M * K));
        const run = (be: typeof cpu | CudaBackend, dt: DType) => {
          const out = be.buffer([M, N], dt), scratch = be.buffer([M, Math.max(K, N)], dt);
          be.normLinear(out, put(be, x, [M, K]), put(be, gamma, [K]), put(be, beta, [K]), 1e-5, put(be, w, [N, K]), put(be, b, [N]), 'gelu_tanh', M, scratch);
          const logits = be.buffer([M, N], 'f32');
          be.normLinear(logits, put(be, x, [M, K]), put(be, gamma, [K]), put(be, beta, [K]), 1e-5, put(be, w, [N, K]), null, 'none', M, scratch);
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

    for (const [heads, D] of [[1, 4], [3, 12], [4, 64], [2, 128]]) {
      test(`KV-cache write, decode attention and prompt attention, ${heads} heads of ${D}`, () => {
        const g = gpu(dtype);
        const H = heads * D, maxSeq = 130, slotsN = 4;
        // prompts of lengths 1, 33, 100 and a chunk of 20 tokens continuing at position 60 of slot 3
        const runs: [number, number, number][] = [[0, 0, 1], [1, 0, 33], [2, 0, 100], [3, 60, 20]];
        const n = runs.reduce((a, [, , l]) => a + l, 0);
        const slots = new Int32Array(n), positions = new Int32Array(n), keyLens = new Int32Array(n);
        let t = 0;
        for (const [slot, p0, len] of runs) for (let p = p0; p < p0 + len; p++, t++) { slots[t] = slot; positions[t] = p; keyLens[t] = p + 1; }
        const qkv = r(randn(n * 3 * H)), next = r(randn(4 * 3 * H));
        // slot 3's first 60 positions come from an earlier chunk
        const early = r(randn(60 * H));
        const shape = { heads, headDim: D, scale: 1 / Math.sqrt(D) };
        const seg = new Int32Array(3 * n);
        const { count, longest } = packSegments(slots, n, seg);
        const results = [cpu, g].map((b) => {
          const k = b.buffer([slotsN, maxSeq, H], b === cpu ? 'f32' : dtype), v = b.buffer([slotsN, maxSeq, H], b === cpu ? 'f32' : dtype);
          // earlier chunk: positions 0..59 of slot 3, written through writeKV from a qkv of those rows
          const eq = new Float32Array(60 * 3 * H);
          for (let i = 0; i < 60; i++) { eq.set(early.subarray(i * H, (i + 1) * H), i * 3 * H + H); eq.set(early.subarray(i * H, (i + 1) * H), i * 3 * H + 2 * H); }
          b.writeKV(put(b, eq, [60, 3 * H]), k, v, putInt(b, new Int32Array(60).fill(3)), putInt(b, Int32Array.from({ length: 60 }, (_, i) => i)), 60);
          const q = put(b, qkv, [n, 3 * H]), ts = putInt(b, slots), tp = putInt(b, positions), tk = putInt(b, keyLens);
          b.writeKV(q, k, v, ts, tp, n);
          const prompt = b.buffer([n, H], b === cpu ? 'f32' : dtype);
          b.attend(prompt, q, k, v, ts, tk, shape, n, { table: putInt(b, seg.slice(0, 3 * count)), count, longest });
          // decode: one new token per slot, written into the cache by the op, after each run's last position
          const lastRows = [0, 33, 133, n - 1];
          const decode = b.buffer([4, H], b === cpu ? 'f32' : dtype);
          b.decodeAttention(decode, put(b, next, [4, 3 * H]), k, v, putInt(b, Int32Array.from(lastRows, (row) => slots[row])),
            putInt(b, Int32Array.from(lastRows, (row) => keyLens[row] + 1)), shape, 4);
          return { prompt: get(b, prompt), decode: get(b, decode), k: get(b, k), v: get(b, v) };
        });
        assertClose(results[1].k, results[0].k, tol, 'k cache contents');
        assertClose(results[1].v, results[0].v, tol, 'v cache contents');
        assertClose(results[1].prompt, results[0].prompt, tol * 4, 'prompt attention');
        assertClose(results[1].decode, results[0].decode, tol * 4, 'decode attention');
      });
    }

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

describe('sampling and decode-state kernels', { skip: skip ?? false }, () => {
  const V = 50257, rows = 64;
  // peaked rows (one clear winner) and flat rows, so both top-k and top-p matter
  const logits = Float32Array.from({ length: rows * V }, (_, i) => {
    const row = Math.floor(i / V), j = i % V;
    return Math.sin(j * 0.37 + row) * (row % 2 ? 3 : 8) + (j === (row * 977) % V ? 12 : 0);
  });

  function run(options: Parameters<typeof samplingParams>[0]): [Int32Array, Int32Array] {
    const params = packSampling(samplingParams(options), rows);
    const streams = Int32Array.from({ length: rows }, (_, i) => i), counters = Int32Array.from({ length: rows }, (_, i) => 100 + i);
    return [cpu, gpu('f32')].map((b) => {
      const ids = b.buffer([rows], 'i32');
      const lt = put(b, logits, [rows, V]); // the f32 backend keeps f32
      b.sample(ids, lt, putInt(b, params), putInt(b, streams), putInt(b, counters), rows);
      return b.readInt(ids, rows).slice();
    }) as [Int32Array, Int32Array];
  }

  const agree = (a: Int32Array, b: Int32Array) => a.filter((x, i) => x === b[i]).length / a.length;

  test('greedy: identical argmax', () => {
    const [c, g] = run({});
    assert.deepEqual(Array.from(g), Array.from(c));
  });
  for (const opts of [{ temperature: 1 }, { temperature: 0.7, topK: 40 }, { temperature: 1.2, topP: 0.9 }, { topK: 1000, topP: 0.5, temperature: 2 }]) {
    test(`sampling ${JSON.stringify(opts)} picks the token the reference picks`, () => {
      const [c, g] = run(opts);
      // the same random number walks the same kept set; fp32 vs fp64 sums may differ at a boundary
      assert.ok(agree(c, g) >= 0.95, `agreement ${agree(c, g)}: ${Array.from(g.slice(0, 8))} vs ${Array.from(c.slice(0, 8))}`);
    });
  }
  test('advance moves positions and key lengths', () => {
    const g = gpu('f32');
    const p = putInt(g, Int32Array.from([0, 5, 9])), k = putInt(g, Int32Array.from([1, 6, 10]));
    g.advance(p, k, 3);
    assert.deepEqual(Array.from(g.readInt(p, 3)), [1, 6, 10]);
    assert.deepEqual(Array.from(g.readInt(k, 3)), [2, 7, 11]);
  });
});
