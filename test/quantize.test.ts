// Quantizing float checkpoints at load (LoadOptions.quantize, --quantize): the quantizer against the `gguf`
// package's (tools/reference/make_quant_fixture.py), models against their own dequantized weights and against the
// unquantized model, and the refusals.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { loadGenerator, PeregrineError } from '../src/index.js';
import { loadModelDir } from '../src/engine/load.js';
import { transpose2d, type StorageDType } from '../src/loaders/dtypes.js';
import { openModelDir, WeightStore, type ModelDir, type TensorSource } from '../src/loaders/model-dir.js';
import { dequantize } from '../src/loaders/quant.js';
import { quantizeInt4, quantizeQ8_0, quantizeTarget, quantizeWeight } from '../src/loaders/quantize.js';
import { dequantizeInt4 } from '../src/loaders/int4.js';
import { E4M3_VALUES, fp8Layout, quantizeFp8, toE4M3 } from '../src/loaders/fp8.js';
import { f16ToF32 } from '../src/loaders/dtypes.js';
import type { QuantizeMethod } from '../src/loaders/quantize-methods.js';
import { QUANTIZE_METHODS } from '../src/loaders/quantize-methods.js';
import type { TensorInfo } from '../src/loaders/safetensors.js';
import { Tokenizer } from '../src/tokenizers/tokenizer.js';
import { maxRelError } from './helpers/close.js';
import { CLI, fixture, reference } from './helpers/fixtures.js';
import { allLogits } from './helpers/logits.js';

const q8 = reference<{ rows: number; cols: number; values: number[]; Q8_0: number[] }>('quant', 'quantize.json');

describe('quantizing float weights', () => {
  test('Q8_0 blocks bit for bit as the gguf package makes them (halves away from zero, zero blocks, a scale below f16)', () => {
    const got = quantizeQ8_0(Float32Array.from(q8.values), q8.rows, q8.cols);
    assert.deepEqual([...got], q8.Q8_0);
  });

  test('a transposed weight ([in, out] stored) is quantized along its inputs', () => {
    const rows = 3, cols = 64, w = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i) * (1 + (i % 7)));
    const stored = transpose2d(w, rows, cols);
    const a = quantizeWeight({ bytes: new Uint8Array(stored.buffer), dtype: 'F32' }, [rows, cols], true, 'Q8_0');
    assert.deepEqual(a.bytes, quantizeQ8_0(w, rows, cols));
  });

  test('int4: each weight within half a step of its group\'s grid, zero within the range, the grid spanning the group and 0', () => {
    const rows = 5, cols = 256, rand = (i: number) => Math.sin(i * 12.9898) * 43758.5453 % 1;
    const x = Float32Array.from({ length: rows * cols }, (_, i) => rand(i) * [0.02, 1, 300, 1e-3, 5][Math.floor(i / cols)] + (i >= 3 * cols && i < 4 * cols ? 0.01 : 0));
    for (const [type, g] of [['Q4_G32', 32], ['Q4_G64', 64], ['Q4_G128', 128]] as const) {
      const bytes = quantizeInt4(x, rows, cols, type), back = dequantizeInt4(type, bytes, rows, cols);
      for (let j = 0; j < rows; j++) {
        for (let t = 0; t < cols / g; t++) {
          const group = x.subarray(j * cols + t * g, j * cols + (t + 1) * g);
          const lo = Math.min(0, ...group), hi = Math.max(0, ...group);
          const s = (hi - lo) / 15;
          for (let e = 0; e < g; e++) {
            const k = j * cols + t * g + e;
            assert.ok(Math.abs(back[k] - x[k]) <= 0.5 * s * 1.002 + 1e-12, `${type} (${j}, ${t * g + e}): ${back[k]} for ${x[k]}, step ${s}`);
          }
        }
      }
    }
    // all zeros: scale 0, every value 0
    assert.ok(dequantizeInt4('Q4_G32', quantizeInt4(new Float32Array(64), 1, 64, 'Q4_G32'), 1, 64).every((v) => v === 0));
  });

  test('fp8: each E4M3 byte read and each float rounded as torch does (nearest even, subnormals); saturated at 448', () => {
    const f8 = reference<{ values: (number | null)[]; x: number[]; bytes: number[] }>('quant', 'fp8.json');
    assert.deepEqual([...E4M3_VALUES].map((v) => (Number.isNaN(v) ? null : v)), f8.values);
    const got = f8.x.map((v) => toE4M3(Math.fround(v)));
    const wrong = got.map((b, i) => [f8.x[i], b, f8.bytes[i]]).filter(([, b, want]) => b !== want);
    assert.deepEqual(wrong, [], 'value, got, torch');
    assert.deepEqual([toE4M3(448), toE4M3(1e6), toE4M3(-500), toE4M3(NaN)], [0x7e, 0x7e, 0xfe, 0x7f]);
  });

  test('fp8: a scale per output channel (max |w| / 448), each weight within half an E4M3 step of itself', () => {
    const rows = 4, cols = 64, scales = [0.02, 1, 300, 1e-6];
    const x = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 12.9898) * scales[Math.floor(i / cols)]);
    const bytes = quantizeFp8(x, rows, cols), back = dequantize('FP8', bytes, rows, cols);
    assert.equal(bytes.length, fp8Layout(rows, cols).bytes);
    for (let j = 0; j < rows; j++) {
      const amax = Math.max(...x.subarray(j * cols, (j + 1) * cols).map(Math.abs)), s = amax / 448;
      for (let k = j * cols; k < (j + 1) * cols; k++) {
        // 3 mantissa bits: half a step is 1/16 of the value; below 2^-6 (scaled) the subnormals' step is 2^-9
        const step = Math.max(Math.abs(x[k]) / 8, 2 ** -9 * s);
        assert.ok(Math.abs(back[k] - x[k]) <= step / 2 * 1.0001, `(${j}, ${k % cols}): ${back[k]} for ${x[k]}`);
      }
    }
    assert.ok(dequantize('FP8', quantizeFp8(new Float32Array(32), 1, 32), 1, 32).every((v) => v === 0));
  });

  test('int4 takes groups of 128 inputs, of 64 or 32 where a layer\'s inputs are not a multiple of 128', () => {
    assert.equal(quantizeTarget([8, 4096], 'Q4_G128', 'w'), 'Q4_G128');
    assert.equal(quantizeTarget([8, 64], 'Q4_G128', 'w'), 'Q4_G64');
    assert.equal(quantizeTarget([8, 160], 'Q4_G128', 'w'), 'Q4_G32');
    assert.throws(() => quantizeTarget([8, 48], 'Q4_G128', 'h.0.w'), /h\.0\.w has rows of 48 weights, not a multiple of 32: it cannot be quantized to int4/);
    assert.ok(f16ToF32(0x3c00) === 1);
  });
});

/** The checkpoint with the matrices `matrix` names (and whether they are stored [in, out]) replaced by their round trip through `method`, as F32. */
function roundTripped(md: ModelDir, matrix: (name: string) => { transpose: boolean } | null, method: QuantizeMethod): ModelDir {
  const src = md.weights;
  const info = (name: string): TensorInfo => {
    const t = src.info(name);
    return matrix(name) ? { ...t, dtype: 'F32', begin: 0, end: 4 * t.shape[0] * t.shape[1] } : t;
  };
  const source: TensorSource = {
    tensors: new Map(src.names().map((n) => [n, info(n)])),
    info,
    readBytes: (name) => {
      const m = matrix(name), t = src.info(name);
      if (!m) return src.readBytes(name);
      const [rows, cols] = m.transpose ? [t.shape[1], t.shape[0]] : t.shape;
      const type = quantizeTarget([rows, cols], QUANTIZE_METHODS[method], name);
      const q = quantizeWeight({ bytes: src.readBytes(name), dtype: t.dtype as StorageDType }, [rows, cols], m.transpose, type);
      const back = dequantize(type, q.bytes, rows, cols);
      return new Uint8Array((m.transpose ? transpose2d(back, rows, cols) : back).buffer);
    },
    close: () => src.close(),
  };
  return { ...md, weights: new WeightStore([source]) };
}

interface Ref { prompts: { ids: number[] }[] }

const MODELS = [
  { name: 'llama-tiny', layers: 2, matrix: (n: string) => /layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$/.test(n) ? { transpose: false } : null },
  { name: 'gpt2-wide', layers: 2, matrix: (n: string) => /h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$/.test(n) ? { transpose: true } : null },
];

/**
 * How far each method's logits may land from the unquantized model's (max |a - b| / max |b|) on these tiny random
 * models: int4 with 16 levels per group lands about 0.33 away on llama-tiny, so its bound only catches a layout gone
 * wrong; the exact check is against the rounded weights.
 */
const MODEL_ERROR: Record<QuantizeMethod, number> = { int8: 2e-2, int4: 0.5, fp8: 0.1 };

describe('models quantized at load (int8: Q8_0; int4: grouped int4; fp8: E4M3 per output channel)', () => {
  for (const m of MODELS) for (const method of ['int8', 'int4', 'fp8'] as const) {
    test(`${m.name}, ${method}: the blocks' four matrices stay quantized; logits as its rounded weights give (1e-5), within ${MODEL_ERROR[method]} of the unquantized model`, async () => {
      const q = await loadGenerator(fixture(m.name), { device: 'cpu', quantize: method });
      const full = await loadGenerator(fixture(m.name), { device: 'cpu' });
      const rounded = (await loadModelDir(roundTripped(openModelDir(fixture(m.name)), m.matrix, method), Tokenizer.fromDir(fixture(m.name)), { device: 'cpu' })) as { generator: typeof q };
      const dtypes = q.model.weights().map((t) => t.dtype);
      const stored = { int8: (d: string) => d === 'q8_0', int4: (d: string) => d.startsWith('q4_g'), fp8: (d: string) => d === 'fp8' }[method];
      assert.equal(dtypes.filter(stored).length, 4 * m.layers, 'qkv, attention output and both MLP matrices of each layer');
      assert.ok(q.runtime.memory().regions.find((r) => r.name === 'weights')!.bytes < full.runtime.memory().regions.find((r) => r.name === 'weights')!.bytes);
      for (const p of reference<Ref>(m.name).prompts) {
        const [lq, lr, lf] = await Promise.all([q, rounded.generator, full].map((g) => allLogits(g, p.ids)));
        assert.ok(maxRelError(lq, lr) <= 1e-5, `against its rounded weights: ${maxRelError(lq, lr)}`);
        assert.ok(maxRelError(lq, lf) <= MODEL_ERROR[method], `against the unquantized model: ${maxRelError(lq, lf)}`);
      }
      for (const g of [q, rounded.generator, full]) g.dispose();
    });
  }

  test('refused by name: rows that are not whole blocks, an architecture not quantized at load, an unknown method', async () => {
    const code = async (p: Promise<unknown>, pattern: RegExp) => {
      const err = await p.then(() => null, (e: unknown) => e);
      assert.ok(err instanceof PeregrineError, String(err));
      assert.equal(err.code, 'bad-argument');
      assert.match(err.message, pattern);
    };
    await code(loadGenerator(fixture('gpt2-tiny'), { device: 'cpu', quantize: 'int8' }), /h\.0\.attn\.c_attn\.weight has rows of 8 weights, not a multiple of 32.*without --quantize/);
    await code(loadGenerator(fixture('bart-tiny'), { device: 'cpu', quantize: 'int8' }), /--quantize int8: BartForConditionalGeneration is not quantized at load/);
    await code(loadGenerator(fixture('gpt2-tiny'), { device: 'cpu', quantize: 'int4' }), /h\.0\.attn\.c_attn\.weight has rows of 8 weights, not a multiple of 32: it cannot be quantized to int4/);
    await code(loadGenerator(fixture('gpt2-tiny'), { device: 'cpu', quantize: 'fp8' }), /h\.0\.attn\.c_attn\.weight has rows of 8 weights, not a multiple of 32: it cannot be quantized to fp8/);
    await code(loadGenerator(fixture('llama-tiny'), { device: 'cpu', quantize: 'int3' as 'int8' }), /quantize must be int8, int4 or fp8, got "int3"/);
  });

  test('peregrine generate and inspect take --quantize int8, int4 and fp8 (inspect plans the quantized bytes); an unknown method is refused by the CLI', () => {
    const run = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
    const ok = run(['generate', '-m', fixture('llama-tiny'), '-p', 'Hello', '-n', '5', '--device', 'cpu', '--temperature', '0', '--quantize', 'int8']);
    assert.equal(ok.status, 0, ok.stderr);
    assert.ok(ok.stdout.length > 0);
    const weights = (args: string[]) => {
      const r = run(['inspect', '-m', fixture('llama-tiny'), '--device', 'cpu', ...args]);
      assert.equal(r.status, 0, r.stderr);
      return /^\s*weights\s+(.*)$/m.exec(r.stdout)![1];
    };
    // 208K values of 4 bytes (f32 on the CPU); the block matrices' 86K values as 34 bytes per 32 instead
    // int4: the same values as half a byte, an f16 scale and a u8 zero per 64 (per 32 in the down projections, of 160
    // inputs), and each matrix's input order
    // fp8: a byte per value and an f32 scale per row
    assert.deepEqual([weights([]), weights(['--quantize', 'int8']), weights(['--quantize', 'int4']), weights(['--quantize', 'fp8'])],
      ['812.8 KiB', '566.0 KiB', '526.4 KiB', '565.3 KiB']);
    const bad = run(['generate', '-m', fixture('llama-tiny'), '-p', 'Hello', '--device', 'cpu', '--quantize', 'int3']);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /--quantize.*int3/);
  });
});
