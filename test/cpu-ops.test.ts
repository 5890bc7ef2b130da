// The CPU reference ops against plain textbook loops, on random inputs of awkward sizes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { applyActivation, erf, gelu, geluTanh } from '../src/backends/cpu/activations.js';
import { attend, copyBlocks, writeKV, type Paged } from '../src/backends/cpu/attention.js';
import { addBiasResidualLayerNorm, layerNorm } from '../src/backends/cpu/layernorm.js';
import { linear } from '../src/backends/cpu/linear.js';
import { gatherRows, meanPool } from '../src/backends/cpu/rows.js';
import { seededRandom } from '../src/ops/rng.js';
import { CpuBackend } from '../src/backends/cpu/backend.js';
import { planArena } from '../src/ops/plan.js';
import { liveRanges, OpRecorder } from '../src/ops/trace.js';
import { ACTIVATIONS, type Activation } from '../src/ops/backend.js';
import { assertClose } from './helpers/close.js';
import { HF_ACT } from './helpers/naive-ops.js';

const rand = seededRandom(42);
const randn = (n: number) => Float32Array.from({ length: n }, () => rand() * 2 - 1);

/** The Hugging Face name of each op-set activation, whose textbook definition (helpers/naive-ops.ts) it must match. */
const HF_NAME: Record<Activation, string> = { none: 'linear', gelu: 'gelu', gelu_tanh: 'gelu_new', tanh: 'tanh', relu: 'relu', silu: 'silu', quick_gelu: 'quick_gelu' };

describe('linear', () => {
  for (const [M, N, K] of [[1, 1, 1], [1, 7, 5], [3, 33, 17], [4, 64, 64], [5, 1000, 3], [9, 13, 130], [1, 50, 1601]]) {
    test(`[${M}x${K}] x [${N}x${K}]^T + bias, every activation`, () => {
      const x = randn(M * K), w = randn(N * K), b = randn(N);
      for (const act of ACTIVATIONS) {
        const out = new Float32Array(M * N);
        linear(out, x, w, act === 'none' ? null : b, act, M, N, K);
        const want = new Float32Array(M * N);
        for (let m = 0; m < M; m++) {
          for (let j = 0; j < N; j++) {
            let s = act === 'none' ? 0 : b[j];
            for (let k = 0; k < K; k++) s += x[m * K + k] * w[j * K + k];
            want[m * N + j] = HF_ACT[HF_NAME[act]](s);
          }
        }
        assertClose(out, want, 1e-6, act);
      }
    });
  }
});

describe('activations', () => {
  test('erf matches known values to 2e-7', () => {
    const known: [number, number][] = [[0, 0], [0.1, 0.1124629160], [0.5, 0.5204998778], [1, 0.8427007929], [2, 0.9953222650], [-1.5, -0.9661051465], [4, 0.9999999846]];
    for (const [x, v] of known) assert.ok(Math.abs(erf(x) - v) < 2e-7, `erf(${x}) = ${erf(x)}, want ${v}`);
  });
  test('NaN stays NaN through every activation', () => {
    for (const act of ACTIVATIONS) {
      const x = Float32Array.of(NaN, 1);
      applyActivation(x, 0, 2, act);
      assert.ok(Number.isNaN(x[0]), act);
    }
  });
  test('gelu and its tanh approximation agree to 1e-3 and differ', () => {
    let maxDiff = 0;
    for (let x = -5; x <= 5; x += 0.01) maxDiff = Math.max(maxDiff, Math.abs(gelu(x) - geluTanh(x)));
    assert.ok(maxDiff < 1e-3 && maxDiff > 1e-5, `max difference ${maxDiff}`);
    assert.ok(Math.abs(gelu(1) - 0.8413447461) < 1e-7);
  });
});

describe('layer norm', () => {
  const ref = (x: Float32Array, g: Float32Array, b: Float32Array, eps: number, n: number, H: number) => {
    const out = new Float32Array(n * H);
    for (let r = 0; r < n; r++) {
      const row = x.subarray(r * H, (r + 1) * H);
      const mean = row.reduce((a, v) => a + v, 0) / H;
      const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / H;
      for (let i = 0; i < H; i++) out[r * H + i] = ((row[i] - mean) / Math.sqrt(variance + eps)) * g[i] + b[i];
    }
    return out;
  };

  for (const [n, H] of [[1, 1], [1, 3], [5, 17], [3, 768]]) {
    test(`${n} rows of ${H}`, () => {
      const x = randn(n * H), g = randn(H), b = randn(H);
      const out = new Float32Array(n * H);
      layerNorm(out, x, g, b, 1e-5, n, H);
      assertClose(out, ref(x, g, b, 1e-5, n, H), 1e-6, 'layerNorm');
    });
  }

  test('add bias + residual + LayerNorm, with the sum written over the residual and over the output', () => {
    const n = 3, H = 11;
    const x = randn(n * H), bias = randn(H), res = randn(n * H), g = randn(H), b = randn(H);
    const sum = new Float32Array(n * H);
    for (let i = 0; i < n * H; i++) sum[i] = x[i] + bias[i % H] + res[i];
    const want = ref(sum, g, b, 1e-12, n, H);
    // sum into the residual (GPT-2's pre-LN stream)
    const r1 = res.slice(), out1 = new Float32Array(n * H);
    addBiasResidualLayerNorm(r1, out1, x, bias, r1, g, b, 1e-12, n, H);
    assertClose(r1, sum, 1e-7, 'residual stream');
    assertClose(out1, want, 1e-6, 'normed');
    // sum and norm in one buffer (BERT's post-LN)
    const both = new Float32Array(n * H);
    addBiasResidualLayerNorm(both, both, x, bias, res, g, b, 1e-12, n, H);
    assertClose(both, want, 1e-6, 'in place');
  });
});

describe('attention over the paged KV cache', () => {
  // plain multi-head, grouped-query (3 query heads per KV head) and multi-query attention, with and without a sliding window
  const layouts = [{ heads: 3, kvHeads: 3, window: 0 }, { heads: 6, kvHeads: 2, window: 0 }, { heads: 4, kvHeads: 1, window: 5 }];
  for (const blockSize of [1, 4, 16]) for (const { heads, kvHeads, window } of layouts) {
    test(`packed tokens of several sequences, each attending to its own keys through its block table (blocks of ${blockSize}, ${heads} heads over ${kvHeads} KV heads, window ${window})`, () => {
      const d = 5, H = heads * d, W = kvHeads * d, R = H + 2 * W, maxSeq = 18;
      const shape = { heads, kvHeads, headDim: d, scale: 0.37, window };
      // sequence lengths 1, 4, 18; sequence 1 reads its first block from sequence 2's (a shared prefix)
      const lens = [1, 4, 18];
      const maxBlocks = Math.ceil(maxSeq / blockSize), blocks = 3 * maxBlocks + 1;
      // blocks handed out in scrambled order; block 0 never used
      const order = Array.from({ length: blocks - 1 }, (_, i) => 1 + ((i * 7) % (blocks - 1)));
      const tables = new Int32Array(3 * maxBlocks);
      for (let i = 0; i < 3 * maxBlocks; i++) tables[i] = order[i];
      const c: Paged = { k: new Float32Array(blocks * blockSize * W), v: new Float32Array(blocks * blockSize * W), tables, maxBlocks, blockSize, width: W };
      const T = lens.reduce((a, b) => a + b, 0);
      const qkv = randn(T * R);
      const slots = new Int32Array(T), positions = new Int32Array(T), keyLens = new Int32Array(T);
      let t = 0;
      lens.forEach((len, s) => {
        for (let p = 0; p < len; p++, t++) {
          slots[t] = s;
          positions[t] = p;
          keyLens[t] = p + 1; // causal
        }
      });
      writeKV(c, qkv, R, slots, positions, T);
      const out = new Float32Array(T * H);
      attend(c, out, qkv, { rowWidth: R, slots, keyLens, bySlot: false, bias: null }, shape, T, new Float32Array(maxSeq), new Int32Array(maxSeq), new Float64Array(shape.headDim));

      // textbook: for token t, keys are the tokens of the same sequence at positions <= its own (and within the window)
      const want = new Float32Array(T * H);
      for (let a = 0; a < T; a++) {
        const keys = [...Array(T).keys()].filter((b) => slots[b] === slots[a] && positions[b] <= positions[a] &&
          (window === 0 || positions[b] > positions[a] - window));
        for (let h = 0; h < heads; h++) {
          const kv = Math.floor(h / (heads / kvHeads)) * d;
          const s = keys.map((b) => {
            let dot = 0;
            for (let i = 0; i < d; i++) dot += qkv[a * R + h * d + i] * qkv[b * R + H + kv + i];
            return dot * 0.37;
          });
          const m = Math.max(...s);
          const e = s.map((x) => Math.exp(x - m));
          const z = e.reduce((x, y) => x + y, 0);
          for (let i = 0; i < d; i++) {
            want[a * H + h * d + i] = keys.reduce((acc, b, j) => acc + (e[j] / z) * qkv[b * R + H + W + kv + i], 0);
          }
        }
      }
      assertClose(out, want, 1e-6, 'attention');
      // a sequence pointed at another's blocks reads that one's keys
      tables.set(tables.subarray(2 * maxBlocks, 3 * maxBlocks), maxBlocks);
      const shared = new Float32Array(4 * H);
      const rows = [1, 2, 3, 4].map((r) => r); // sequence 1's rows, positions 0..3
      attend(c, shared, qkv.subarray(R), { rowWidth: R, slots: slots.subarray(1, 5), keyLens: keyLens.subarray(1, 5), bySlot: false, bias: null }, shape, 4, new Float32Array(maxSeq), new Int32Array(maxSeq), new Float64Array(shape.headDim));
      const seq2 = new Float32Array(4 * H);
      const q2 = new Float32Array(4 * R);
      for (const r of rows) q2.set(qkv.subarray(r * R, (r + 1) * R), (r - 1) * R);
      attend(c, seq2, q2, { rowWidth: R, slots: Int32Array.from([2, 2, 2, 2]), keyLens: keyLens.subarray(1, 5), bySlot: false, bias: null }, shape, 4, new Float32Array(maxSeq), new Int32Array(maxSeq), new Float64Array(shape.headDim));
      assertClose(shared, seq2, 0, 'shared blocks');
    });
  }

  test('copying blocks copies every plane', () => {
    const planes = 3, blocks = 5, values = 4;
    const pool = Float32Array.from({ length: planes * blocks * values }, (_, i) => i);
    copyBlocks(pool, planes, blocks, values, Int32Array.from([1, 3, 4, 0]), 2);
    for (let p = 0; p < planes; p++) {
      const at = (b: number) => Array.from(pool.subarray((p * blocks + b) * values, (p * blocks + b + 1) * values));
      const orig = (b: number) => Array.from({ length: values }, (_, i) => (p * blocks + b) * values + i);
      assert.deepEqual(at(3), orig(1));
      assert.deepEqual(at(0), orig(4));
      assert.deepEqual(at(2), orig(2));
    }
  });
});

describe('rows', () => {
  test('gather and mean pooling', () => {
    const W = 3;
    const x = Float32Array.from({ length: 6 * W }, (_, i) => i);
    const out = new Float32Array(2 * W);
    gatherRows(out, x, Int32Array.from([4, 1]), Int32Array.from([0, 1]), 2, W);
    assert.deepEqual(Array.from(out), [12, 13, 14, 3, 4, 5]);
    meanPool(out, x, Int32Array.from([0, 2]), Int32Array.from([2, 4]), 2, W);
    assert.deepEqual(Array.from(out), [1.5, 2.5, 3.5, 10.5, 11.5, 12.5]);
  });
});

describe('memory plan', () => {
  test('buffers alive together never overlap; others share', () => {
    const plan = planArena([
      { name: 'a', shape: [100], dtype: 'f32', ranges: [[0, 9]] },
      { name: 'b', shape: [300], dtype: 'f32', ranges: [[1, 3]] },
      { name: 'c', shape: [200], dtype: 'f32', ranges: [[4, 6]] },
      { name: 'd', shape: [50], dtype: 'i32', ranges: [[2, 5]] },
      // alive in two separate stretches: between them its bytes are free
      { name: 'e', shape: [300], dtype: 'f32', ranges: [[0, 0], [7, 8]] },
    ]);
    const at = Object.fromEntries(plan.buffers.map((b) => [b.name, b]));
    const overlap = (x: string, y: string) => at[x].offset < at[y].offset + at[y].bytes && at[y].offset < at[x].offset + at[x].bytes;
    assert.ok(!overlap('a', 'b') && !overlap('a', 'c') && !overlap('b', 'd') && !overlap('c', 'd') && !overlap('a', 'd') && !overlap('a', 'e'));
    assert.ok(overlap('b', 'c'), 'b and c do not live together, so they share bytes');
    assert.ok(overlap('e', 'b'), 'e is dead while b lives');
    assert.ok(plan.bytes < at.a.bytes + at.b.bytes + at.c.bytes + at.d.bytes + at.e.bytes);
    assert.deepEqual(plan.buffers.map((b) => b.name), ['a', 'b', 'c', 'd', 'e']);
  });

  test('lifetimes come from the ops a pass records: a write that reads nothing starts a value, reads extend it', () => {
    const rec = new OpRecorder(new CpuBackend());
    const t = (name: string) => ({ name, shape: [4, 4], dtype: 'f32' as const });
    const [x, y, z, w] = [t('x'), t('y'), t('z'), t('w')];
    const b = rec.backend;
    b.layerNorm(y, x, w, w, 1e-5, 4); // 0: y = f(x)
    b.linear(z, y, w, null, 'none', 4); // 1: z = f(y)
    b.linearResidual(x, z, w, null, 4, y); // 2: x += f(z) (y is scratch: written, not read)
    b.layerNorm(z, x, w, w, 1e-5, 4); // 3: z = f(x): a new value of z
    assert.equal(rec.ops, 4);
    assert.deepEqual(liveRanges(rec.accesses.get(x)!), [[0, 3]], 'x is read first: its value came from before the pass');
    assert.deepEqual(liveRanges(rec.accesses.get(y)!), [[0, 1], [2, 2]]);
    assert.deepEqual(liveRanges(rec.accesses.get(z)!), [[1, 2], [3, 3]]);
    assert.deepEqual(liveRanges(rec.accesses.get(w)!), [[0, 3]]);
  });
});
