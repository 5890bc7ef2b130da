// SmoothQuant W8A8 (src/engine/smoothquant.ts, src/loaders/w8a8.ts): the arithmetic of per-token activations against
// int8 weights, the smoothing scales, `peregrine quantize` writing a checkpoint that loads again and runs close to the
// model it came from, and the refusals.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadGenerator } from '../src/index.js';
import { smoothingScales } from '../src/engine/smoothquant.js';
import { SafetensorsFile } from '../src/loaders/safetensors.js';
import { concatW8A8, dequantizeW8A8, multipliersOf, quantizeRows, quantizeTokens, w8a8Bytes, w8a8Linear } from '../src/loaders/w8a8.js';
import { seededRandom } from '../src/ops/rng.js';
import { maxRelError } from './helpers/close.js';
import { CLI, fixture, reference } from './helpers/fixtures.js';
import { allLogits } from './helpers/logits.js';

const tmp = mkdtempSync(join(tmpdir(), 'peregrine-sq-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const TEXT = fixture('perplexity/text.txt');
const run = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });

describe('W8A8 arithmetic', () => {
  const rand = seededRandom(3);
  const M = 3, N = 5, K = 64;
  const w = Float32Array.from({ length: N * K }, () => rand() - 0.5);
  const x = Float32Array.from({ length: M * K }, (_, i) => (rand() - 0.5) * (i % K === 7 ? 40 : 1)); // one outlier input
  const s = Float32Array.from({ length: K }, (_, k) => (k === 7 ? 6 : 1 + rand()));

  test('weights smoothed by s and quantized per row, activations divided by s and quantized per token: y close to x W^T', () => {
    const smoothed = w.map((v, i) => Math.fround(v * s[i % K]));
    const { q, scales } = quantizeRows(smoothed, N, K);
    const bytes = w8a8Bytes(q, scales, multipliersOf(s));
    const out = new Float32Array(M * N);
    w8a8Linear(out, x, bytes, M, N, K);
    const exact = Float32Array.from({ length: M * N }, (_, i) => {
      let a = 0;
      for (let k = 0; k < K; k++) a += x[Math.floor(i / N) * K + k] * w[(i % N) * K + k];
      return a;
    });
    assert.ok(maxRelError(out, exact) < 0.03, `${maxRelError(out, exact)}`);
    // the stored weight stands for W itself
    assert.ok(maxRelError(dequantizeW8A8(bytes, N, K), w) < 0.02);
    // the integer sums are the reference's own: recomputed from the quantized parts
    const xq = quantizeTokens(x, M, K, multipliersOf(s));
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let acc = 0;
        for (let k = 0; k < K; k++) acc += xq.q[m * K + k] * q[n * K + k];
        assert.equal(out[m * N + n], Math.fround(Math.fround(acc) * Math.fround(xq.scales[m] * scales[n])));
      }
    }
    assert.ok(xq.q.every((v) => v >= -127 && v <= 127));
  });

  test('smoothing scales: max|x|^alpha / max|w|^(1 - alpha), 1 where an input never moved', () => {
    const got = smoothingScales(Float32Array.of(4, 0, 9), Float32Array.of(1, 2, 0.25), 0.5);
    assert.deepEqual([...got], [Math.fround(2), 1, Math.fround(6)]);
  });

  test('stacked layers keep each part\'s rows and scales; different smoothing does not stack', () => {
    const a = w8a8Bytes(new Int8Array(2 * 4).fill(1), Float32Array.of(0.5, 0.25), Float32Array.of(1, 2, 3, 4));
    const b = w8a8Bytes(new Int8Array(3 * 4).fill(-2), Float32Array.of(1, 2, 3), Float32Array.of(1, 2, 3, 4));
    const both = concatW8A8([{ bytes: a, rows: 2 }, { bytes: b, rows: 3 }], 4)!;
    assert.deepEqual(dequantizeW8A8(both, 5, 4), Float32Array.from([...dequantizeW8A8(a, 2, 4), ...dequantizeW8A8(b, 3, 4)]));
    const c = w8a8Bytes(new Int8Array(4), Float32Array.of(1), Float32Array.of(1, 1, 1, 1));
    assert.equal(concatW8A8([{ bytes: a, rows: 2 }, { bytes: c, rows: 1 }], 4), null);
  });
});

describe('peregrine quantize --method smoothquant', () => {
  for (const name of ['llama-tiny', 'gpt2-tiny']) {
    test(`${name}: a checkpoint of int8 block matrices that loads again, logits within 0.06 of the original (about 0.03 on these models, int8 weight-only 0.016)`, async () => {
      const out = join(tmp, name);
      const r = run(['quantize', '-m', fixture(name), '-o', out, '--method', 'smoothquant', '--calibration', TEXT, '--alpha', '0.6']);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /block matrices \(\d+ tensors\) quantized to W8A8, calibrated on \d+ tokens/);
      const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
      assert.equal(config.quantization_config.quant_method, 'smoothquant');
      assert.equal(config.quantization_config.alpha, 0.6);
      const file = SafetensorsFile.open(join(out, 'model.safetensors'));
      const int8 = [...file.tensors.values()].filter((t) => t.dtype === 'I8');
      file.close();
      assert.equal(int8.length, name === 'llama-tiny' ? 2 * 7 : 3 * 4, 'every block matrix of every layer');
      const [q, full] = await Promise.all([loadGenerator(out, { device: 'cpu' }), loadGenerator(fixture(name), { device: 'cpu' })]);
      assert.ok(q.model.weights().some((t) => t.dtype === 'w8a8'));
      for (const p of reference<{ prompts: { ids: number[] }[] }>(name).prompts) {
        const err = maxRelError(await allLogits(q, p.ids), await allLogits(full, p.ids));
        assert.ok(err < 0.06, `prompt of ${p.ids.length}: ${err}`);
      }
      q.dispose();
      full.dispose();
    });
  }

  test('refused by name: a quantized checkpoint, an encoder, a missing calibration file, alpha out of range, an unknown method, a non-empty output', () => {
    const base = ['--method', 'smoothquant', '--calibration', TEXT];
    const cases: [string[], RegExp][] = [
      [['-m', fixture('llama-awq-tiny'), '-o', join(tmp, 'a'), ...base], /quantized already \(config\.json quantization_config\)/],
      [['-m', fixture('bert-tiny'), '-o', join(tmp, 'b'), ...base], /runs on GPT-2 and Llama-family checkpoints/],
      [['-m', fixture('llama-tiny'), '-o', join(tmp, 'c'), '--method', 'smoothquant', '--calibration', join(tmp, 'none.txt')], /cannot read --calibration/],
      [['-m', fixture('llama-tiny'), '-o', join(tmp, 'd'), ...base, '--alpha', '1.5'], /--alpha must be in \(0, 1\], got 1\.5/],
      [['-m', fixture('llama-tiny'), '-o', join(tmp, 'e'), '--method', 'awq', '--calibration', TEXT], /--method.*awq/],
      [['-m', fixture('llama-tiny'), '-o', fixture('llama-tiny'), ...base], /is not an empty directory; name a new one/],
      [['-m', fixture('llama-tiny'), '-o', TEXT, ...base], /is not an empty directory/],
    ];
    for (const [args, re] of cases) {
      const r = run(['quantize', ...args]);
      assert.notEqual(r.status, 0, args.join(' '));
      assert.match(r.stderr, re, args.join(' '));
    }
  });

  test('a SmoothQuant checkpoint of another format is refused by name', async () => {
    const { quantScheme } = await import('../src/models/quantization-config.js');
    assert.throws(() => quantScheme({ quantization_config: { quant_method: 'smoothquant', bits: 8 } }), /format .* is not supported/);
    assert.deepEqual(quantScheme({ quantization_config: { quant_method: 'smoothquant', format: 'peregrine', bits: 8, alpha: 0.7 } }), { method: 'smoothquant', alpha: 0.7 });
  });
});
