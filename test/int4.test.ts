// AWQ/GPTQ int4 checkpoints (src/loaders/int4.ts, src/models/quantization-config.ts): the layout's sections, the input
// order of act-order, stacking, and every refusal by name. The fixtures against Hugging Face are in reference.test.ts
// (llama-awq-tiny, llama-gptq-tiny, gpt2-gptq-tiny).
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadGenerator } from '../src/index.js';
import { concatInt4, dequantizeInt4, fromAwq, fromGptq, int4Layout, permFromGroups } from '../src/loaders/int4.js';
import { f32ToF16Bits, f16ToF32 } from '../src/loaders/dtypes.js';
import { quantScheme } from '../src/models/quantization-config.js';
import { seededRandom } from '../src/ops/rng.js';
import { fixture } from './helpers/fixtures.js';

const tmp = mkdtempSync(join(tmpdir(), 'peregrine-int4-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Random GPTQ tensors of a [N, K] layer in groups of g: values q, zeros z, scales s, each as the layer sees them. */
function gptqLayer(N: number, K: number, g: number, seed: number) {
  const rand = seededRandom(seed), G = K / g;
  const q = Int32Array.from({ length: N * K }, () => Math.floor(rand() * 16)); // [N, K]
  const z = Int32Array.from({ length: N * G }, () => Math.floor(rand() * 16)); // [N, G]
  const s = Uint16Array.from({ length: G * N }, () => f32ToF16Bits(0.001 + rand() * 0.05)); // [G, N]
  return { q, z, s };
}

/** Packs nibbles as AutoGPTQ does: value (r, i, c) of `at` into bits 4i of word (r, c). */
function packGptq(N: number, K: number, g: number, q: Int32Array, z: Int32Array, minusOne: boolean) {
  const G = K / g;
  const qweight = new Int32Array((K / 8) * N), qzeros = new Int32Array(G * (N / 8));
  for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) qweight[(k >> 3) * N + n] |= q[n * K + k] << (4 * (k & 7));
  for (let t = 0; t < G; t++) for (let n = 0; n < N; n++) qzeros[t * (N / 8) + (n >> 3)] |= ((z[n * G + t] - (minusOne ? 1 : 0)) & 15) << (4 * (n & 7));
  return { qweight, qzeros };
}

describe('the int4 layout', () => {
  test('GPTQ tensors, in order and in act-order, dequantize to scale * (q - zero) of each input', () => {
    const N = 16, K = 128, g = 32, G = K / g;
    const { q, z, s } = gptqLayer(N, K, g, 1);
    const rand = seededRandom(2);
    // act-order: a random group for each input, g inputs per group
    const groups = Int32Array.from({ length: K }, (_, k) => Math.floor(k / g));
    for (let k = K - 1; k > 0; k--) {
      const j = Math.floor(rand() * (k + 1));
      [groups[k], groups[j]] = [groups[j], groups[k]];
    }
    for (const gIdx of [null, groups]) {
      for (const minusOne of [false, true]) {
        // GPTQ's original format cannot store a zero of 0 (it reads back as 16): only v2 gets zeros of 0
        const zs = minusOne ? z.map((v) => Math.max(v, 1)) : z;
        const bytes = fromGptq('Q4_G32', N, K, { ...packGptq(N, K, g, q, zs, minusOne), scales: s }, gIdx, minusOne, 'layer');
        assert.equal(bytes.length, int4Layout('Q4_G32', N, K).bytes);
        const w = dequantizeInt4('Q4_G32', bytes, N, K);
        for (let n = 0; n < N; n++) {
          for (let k = 0; k < K; k++) {
            const t = gIdx ? gIdx[k] : Math.floor(k / g);
            assert.equal(w[n * K + k], Math.fround(f16ToF32(s[t * N + n]) * (q[n * K + k] - zs[n * G + t])), `(${n}, ${k}), act-order ${!!gIdx}`);
          }
        }
      }
    }
  });

  test('GPTQ v1 reads a stored zero nibble of 15 as 16, as AutoGPTQ unpacks it', () => {
    const N = 8, K = 32;
    const qweight = new Int32Array((K / 8) * N), qzeros = Int32Array.of(-1); // every nibble 15
    const scales = Uint16Array.from({ length: N }, () => f32ToF16Bits(1));
    const w = dequantizeInt4('Q4_G32', fromGptq('Q4_G32', N, K, { qweight, qzeros, scales }, null, true, 'layer'), N, K);
    assert.ok(w.every((v) => v === -16));
  });

  test('AWQ packs outputs 0 2 4 6 1 3 5 7 in a word', () => {
    const N = 8, K = 32;
    // output n's quant is n + 1 for every input, zero 0, scale 1
    let word = 0;
    [0, 2, 4, 6, 1, 3, 5, 7].forEach((n, i) => (word |= (n + 1) << (4 * i)));
    const qweight = new Int32Array(K).fill(word), qzeros = new Int32Array(1);
    const scales = Uint16Array.from({ length: N }, () => f32ToF16Bits(1));
    const w = dequantizeInt4('Q4_G32', fromAwq('Q4_G32', N, K, { qweight, qzeros, scales }), N, K);
    for (let n = 0; n < N; n++) assert.ok(w.subarray(n * K, (n + 1) * K).every((v) => v === n + 1), `output ${n}`);
  });

  test('an act-order g_idx must give every group g inputs', () => {
    assert.deepEqual([...permFromGroups(Int32Array.of(0, 0, 1, 1), 2, 'x')], [0, 1, 2, 3]);
    assert.deepEqual([...permFromGroups(Int32Array.of(1, 0, 0, 1), 2, 'x')], [1, 2, 0, 3]);
    assert.throws(() => permFromGroups(Int32Array.of(0, 0, 0, 1), 2, 'l.g_idx'), /l\.g_idx does not put 2 inputs in every group/);
    assert.throws(() => permFromGroups(Int32Array.of(0, 5, 1, 1), 2, 'l.g_idx'), /l\.g_idx names group 5 of 2/);
  });

  test('stacked matrices dequantize to the stacked rows; different input orders do not stack', () => {
    const K = 64, g = 32;
    const parts = [8, 16].map((N, i) => {
      const { q, z, s } = gptqLayer(N, K, g, 10 + i);
      return { rows: N, bytes: fromGptq('Q4_G32', N, K, { ...packGptq(N, K, g, q, z, false), scales: s }, null, false, 'p') };
    });
    const whole = concatInt4('Q4_G32', parts, K)!;
    assert.deepEqual(dequantizeInt4('Q4_G32', whole, 24, K), Float32Array.from([...dequantizeInt4('Q4_G32', parts[0].bytes, 8, K), ...dequantizeInt4('Q4_G32', parts[1].bytes, 16, K)]));
    const { q, z, s } = gptqLayer(8, K, g, 12);
    const swapped = Int32Array.from({ length: K }, (_, k) => (k < 32 ? 1 : 0));
    const other = fromGptq('Q4_G32', 8, K, { ...packGptq(8, K, g, q, z, false), scales: s }, swapped, false, 'p');
    assert.equal(concatInt4('Q4_G32', [parts[0], { rows: 8, bytes: other }], K), null);
  });
});

describe('quantization_config', () => {
  test('AWQ and GPTQ int4 in groups of 32, 64, 128', () => {
    assert.deepEqual(quantScheme({ quantization_config: { quant_method: 'awq', bits: 4, group_size: 128, zero_point: true, version: 'GEMM' } }),
      { method: 'awq', type: 'Q4_G128', zerosMinusOne: false });
    assert.deepEqual(quantScheme({ quantization_config: { quant_method: 'awq', w_bit: 4, q_group_size: 64 } }), { method: 'awq', type: 'Q4_G64', zerosMinusOne: false });
    assert.deepEqual(quantScheme({ quantization_config: { quant_method: 'gptq', bits: 4, group_size: 32, desc_act: true } }),
      { method: 'gptq', type: 'Q4_G32', zerosMinusOne: true });
    assert.deepEqual(quantScheme({ quantization_config: { quant_method: 'gptq', bits: 4, group_size: 128, checkpoint_format: 'gptq_v2' } }),
      { method: 'gptq', type: 'Q4_G128', zerosMinusOne: false });
    assert.equal(quantScheme({}), null);
  });

  test('every other method and setting is refused by name', () => {
    const refused: [Record<string, unknown>, RegExp][] = [
      [{ quant_method: 'bitsandbytes', load_in_4bit: true }, /quant_method "bitsandbytes" is not supported/],
      [{ quant_method: 'fp8' }, /quant_method "fp8"/],
      [{ quant_method: 'gptq', bits: 8, group_size: 128 }, /bits 8 is not supported/],
      [{ quant_method: 'gptq', bits: 4, group_size: -1 }, /group_size -1 is not supported.*32, 64 or 128/],
      [{ quant_method: 'awq', bits: 4, group_size: 256 }, /group_size 256/],
      [{ quant_method: 'awq', bits: 4, group_size: 128, version: 'gemv' }, /version "gemv" is not supported/],
      [{ quant_method: 'awq', bits: 4, group_size: 128, zero_point: false }, /zero_point false/],
      [{ quant_method: 'gptq', bits: 4, group_size: 128, checkpoint_format: 'marlin' }, /checkpoint_format "marlin"/],
      [{ quant_method: 'gptq', bits: 4, group_size: 128, is_marlin_format: true }, /is_marlin_format true/],
      [{ quant_method: 'gptq', bits: 4, group_size: 128, dynamic: { 'layers.0': { bits: 8 } } }, /dynamic/],
    ];
    for (const [q, re] of refused) assert.throws(() => quantScheme({ quantization_config: q }), re, JSON.stringify(q));
    assert.throws(() => quantScheme({ quantization_config: 'awq' }), /quantization_config must be an object/);
  });

  test('an architecture without quantized layers refuses the checkpoint by name', async () => {
    const dir = join(tmp, 'bert');
    cpSync(fixture('bert-tiny'), dir, { recursive: true, dereference: true });
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, quantization_config: { quant_method: 'gptq', bits: 4, group_size: 128 } }));
    const { loadEmbedder } = await import('../src/index.js');
    await assert.rejects(loadEmbedder(dir, { device: 'cpu' }), /quantization_config \(gptq\): BertForSequenceClassification has no quantized layers/);
  });

  test('inspect names the scheme and plans the int4 bytes without reading them', async () => {
    const { inspectModel } = await import('../src/index.js');
    const r = await inspectModel(fixture('llama-gptq-tiny'), { device: 'cpu' });
    assert.equal(r.quantization, 'gptq int4 in groups of 32 (quantization_config)');
    // 2 layers of q, k, v, o, gate, up, down: 128 x (256 + 128 + 512) + 256 x 128 weights, half a byte each, plus
    // f16 scale and u8 zero per 32 and the input orders; the rest (embedding, head, norms) in f32
    const int4 = 2 * (((128 * 896 + 256 * 128) / 2) * (1 + 3 / 16) + 4 * (128 * 3 + 256) + 16 * 4);
    const weights = r.memory.regions.find((x) => x.name === 'weights')!.bytes;
    assert.ok(Math.abs(weights - (int4 + 4 * (2 * 951 * 128 + 5 * 128))) < 1024, `${weights}`);
  });

  test('int4 tensors of the wrong shape are refused by name', async () => {
    const dir = join(tmp, 'awq');
    cpSync(fixture('llama-awq-tiny'), dir, { recursive: true, dereference: true });
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    config.quantization_config.group_size = 32; // the scales are of groups of 64
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    await assert.rejects(loadGenerator(dir, { device: 'cpu' }), /tensor model\.layers\.0\.self_attn\.q_proj\.qzeros is \[2, 16\] I32, but config\.json .* implies \[4, 16\] I32/);
  });
});
