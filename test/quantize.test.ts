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
import { quantizeQ8_0, quantizeWeight } from '../src/loaders/quantize.js';
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
});

/** The checkpoint with the matrices `matrix` names (and whether they are stored [in, out]) replaced by their Q8_0 round trip, as F32. */
function roundTripped(md: ModelDir, matrix: (name: string) => { transpose: boolean } | null): ModelDir {
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
      const q = quantizeWeight({ bytes: src.readBytes(name), dtype: t.dtype as StorageDType }, [rows, cols], m.transpose, 'Q8_0');
      const back = dequantize('Q8_0', q.bytes, rows, cols);
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

describe('models quantized at load (int8: Q8_0)', () => {
  for (const m of MODELS) {
    test(`${m.name}: the blocks' four matrices stay int8; logits as its Q8_0-rounded weights give (1e-5), within 2e-2 of the unquantized model`, async () => {
      const q = await loadGenerator(fixture(m.name), { device: 'cpu', quantize: 'int8' });
      const full = await loadGenerator(fixture(m.name), { device: 'cpu' });
      const rounded = (await loadModelDir(roundTripped(openModelDir(fixture(m.name)), m.matrix), Tokenizer.fromDir(fixture(m.name)), { device: 'cpu' })) as { generator: typeof q };
      const dtypes = q.model.weights().map((t) => t.dtype);
      assert.equal(dtypes.filter((d) => d === 'q8_0').length, 4 * m.layers, 'qkv, attention output and both MLP matrices of each layer');
      assert.ok(q.runtime.memory().regions.find((r) => r.name === 'weights')!.bytes < full.runtime.memory().regions.find((r) => r.name === 'weights')!.bytes);
      for (const p of reference<Ref>(m.name).prompts) {
        const [lq, lr, lf] = await Promise.all([q, rounded.generator, full].map((g) => allLogits(g, p.ids)));
        assert.ok(maxRelError(lq, lr) <= 1e-5, `against its rounded weights: ${maxRelError(lq, lr)}`);
        assert.ok(maxRelError(lq, lf) <= 2e-2, `against the unquantized model: ${maxRelError(lq, lf)}`);
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
    await code(loadGenerator(fixture('llama-tiny'), { device: 'cpu', quantize: 'int4' as 'int8' }), /quantize must be int8, got "int4"/);
  });

  test('peregrine generate and inspect take --quantize int8 (inspect plans the quantized bytes); an unknown method is refused by the CLI', () => {
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
    assert.deepEqual([weights([]), weights(['--quantize', 'int8'])], ['812.8 KiB', '566.0 KiB']);
    const bad = run(['generate', '-m', fixture('llama-tiny'), '-p', 'Hello', '--device', 'cpu', '--quantize', 'int3']);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /--quantize.*int3/);
  });
});
