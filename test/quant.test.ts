// The ggml block formats (src/loaders/quant.ts) against the `gguf` package's dequantization
// (tools/reference/make_quant_fixture.py), and the CPU backend's linear over quantized weights.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CpuBackend } from '../src/backends/cpu/backend.js';
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
