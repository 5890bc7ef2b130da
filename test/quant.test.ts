// The ggml block formats (src/loaders/quant.ts) against the `gguf` package's dequantization
// (tools/reference/make_quant_fixture.py), and the CPU backend's linear over quantized weights.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CpuBackend } from '../src/backends/cpu/backend.js';
import { roundToQ8 } from '../src/backends/cpu/q8-activations.js';
import { dequantize, QUANT_BLOCKS, QUANT_TYPES, type QuantType } from '../src/loaders/quant.js';
import { seededRandom } from '../src/ops/rng.js';
import { assertClose } from './helpers/close.js';
import { reference } from './helpers/fixtures.js';

const blocks = reference<Record<QuantType, { bytes: number[]; values: number[] }>>('quant', 'blocks.json');

describe('ggml quantized blocks', () => {
  for (const type of QUANT_TYPES) {
    test(`${type} dequantizes bit for bit as the gguf package does`, () => {
      const { bytes, values } = blocks[type];
      const got = dequantize(type, Uint8Array.from(bytes), 1, values.length);
      assert.equal(bytes.length / QUANT_BLOCKS[type].bytes * QUANT_BLOCKS[type].elements, values.length);
      values.forEach((v, i) => assert.ok(Object.is(got[i], Math.fround(v)), `${type} weight ${i}: ${got[i]} != ${v}`));
    });

    test(`${type} weights stay quantized on the CPU backend and compute what their dequantized values do`, () => {
      const { bytes } = blocks[type];
      const { elements, bytes: size } = QUANT_BLOCKS[type];
      // two rows of the fixture's blocks ([2, K]), a bias and three rows of x
      const K = (Math.floor(bytes.length / size / 2) * elements), N = 2, M = 3;
      const raw = Uint8Array.from(bytes.slice(0, (N * K / elements) * size));
      const cpu = new CpuBackend(), rand = seededRandom(5);
      const xs = Float32Array.from({ length: M * K }, () => rand() - 0.5);
      const x = cpu.weight({ bytes: new Uint8Array(xs.buffer), dtype: 'F32' }, [M, K]);
      const wq = cpu.weight({ bytes: raw, dtype: type }, [N, K], false, true);
      assert.equal(wq.dtype, type.toLowerCase());
      const wf = cpu.weight({ bytes: raw, dtype: type }, [N, K]);
      assert.equal(wf.dtype, 'f32', 'without `quantized` the weight is dequantized at load');
      const [a, b] = [wq, wf].map((w) => {
        const out = cpu.buffer([M, N], 'f32');
        cpu.linear(out, x, w, null, 'silu', M);
        return cpu.readFloat(out, M * N).slice();
      });
      assertClose(a, b, 1e-6, type);
    });
  }
});

describe('int8 rounding of the activations (the reference of kernels/mmvq.cu)', () => {
  test('each group of 32 becomes d * q with d = max|x| / 127, q the nearest integer, halves away from zero', () => {
    const rand = seededRandom(9);
    const x = Float32Array.from({ length: 96 }, () => (rand() - 0.5) * 8);
    x.fill(0, 64, 96); // an all-zero group stays zero
    x[5] = -4.5; // the group's largest magnitude maps to -127 d exactly
    const got = roundToQ8(x, 32);
    for (let g = 0; g < 96; g += 32) {
      const group = x.subarray(g, g + 32);
      const d = Math.fround(Math.max(...group.map(Math.abs)) / 127);
      for (let e = 0; e < 32; e++) {
        const q = d > 0 ? got[g + e] / d : 0;
        assert.ok(Math.abs(q - Math.round(q)) < 1e-3 && Math.abs(q) <= 127.001, `value ${g + e}: ${got[g + e]} is not d * an int8`);
        assert.ok(Math.abs(got[g + e] - group[e]) <= d / 2 + 1e-6, `value ${g + e}: ${got[g + e]} is further than d / 2 from ${group[e]}`);
      }
    }
    assert.equal(got[5], Math.fround(Math.fround(4.5 / 127) * -127));
    assert.ok(got.subarray(64).every((v) => v === 0));
    assert.throws(() => roundToQ8(new Float32Array(40), 40), /K % 32/);
  });
});
