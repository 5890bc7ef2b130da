// GGUF files (tools/reference/make_gguf_fixtures.py writes them with the gguf package from the Llama-family
// checkpoints): the reader, the model under Hugging Face names, quantized models against their dequantized weights,
// and the vocabularies against Hugging Face's tokenizers.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadGenerator, PeregrineError } from '../src/index.js';
import { loadModelDir } from '../src/engine/load.js';
import { dequantize, isQuantType } from '../src/loaders/quant.js';
import type { TensorInfo } from '../src/loaders/safetensors.js';
import { GgufFile } from '../src/loaders/gguf.js';
import { openGgufModel } from '../src/loaders/gguf-model.js';
import { openModelDir, WeightStore, type ModelDir, type TensorSource } from '../src/loaders/model-dir.js';
import { toFloat32, type StorageDType } from '../src/loaders/dtypes.js';
import { tokenizerFromGguf } from '../src/tokenizers/gguf-vocab.js';
import { maxRelError } from './helpers/close.js';
import { CLI, fixture, reference } from './helpers/fixtures.js';
import { allLogits } from './helpers/logits.js';

const gguf = (name: string) => join(fixture('gguf'), name);

/** A GGUF model whose quantized tensors read as F32 (dequantized by loaders/quant.ts). */
function dequantizedAtLoad(md: ModelDir): ModelDir {
  const src = md.weights;
  const info = (name: string): TensorInfo => {
    const t = src.info(name);
    if (!isQuantType(t.dtype)) return t;
    const n = t.shape.reduce((a, d) => a * d, 1);
    return { ...t, dtype: 'F32', begin: 0, end: 4 * n };
  };
  const source: TensorSource = {
    tensors: new Map(src.names().map((n) => [n, info(n)])),
    info,
    readBytes: (name) => {
      const t = src.info(name);
      if (!isQuantType(t.dtype)) return src.readBytes(name);
      const columns = t.shape[t.shape.length - 1];
      return new Uint8Array(dequantize(t.dtype, src.readBytes(name), t.shape.reduce((a, d) => a * d, 1) / columns, columns).buffer);
    },
    close: () => src.close(),
  };
  return { ...md, weights: new WeightStore([source]) };
}
const tmp = mkdtempSync(join(tmpdir(), 'peregrine-gguf-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

interface Ref { prompts: { ids: number[] }[]; greedy: { ids: number[]; generated: number[] }[] }

describe('GGUF models', () => {
  test('every tensor of a GGUF file reads back, under Hugging Face names, as the checkpoint it was written from', () => {
    const md = openGgufModel(gguf('llama-tiny.gguf')), dir = openModelDir(fixture('llama-tiny'));
    try {
      assert.equal(md.config.architectures instanceof Array && md.config.architectures[0], 'LlamaForCausalLM');
      const names = dir.weights.names();
      assert.deepEqual(md.weights.names().sort(), names.sort());
      for (const name of names) {
        const a = md.weights.info(name), b = dir.weights.info(name);
        assert.deepEqual(a.shape, b.shape, name);
        const got = toFloat32(md.weights.readBytes(name), a.dtype as StorageDType), want = toFloat32(dir.weights.readBytes(name), b.dtype as StorageDType);
        assert.deepEqual(Array.from(got), Array.from(want), `${name} (Q and K rows put back in Hugging Face's order)`);
      }
    } finally {
      md.weights.close();
      dir.weights.close();
    }
  });

  for (const [file, dir, tol] of [['llama-tiny.gguf', 'llama-tiny', 0], ['qwen2-tiny.gguf', 'qwen2-tiny', 0], ['llama3-tiny.gguf', 'llama3-tiny', 1e-4]] as const) {
    test(`${file} computes what ${dir} does (${tol ? `within ${tol}: rope_freqs in place of rope scaling` : 'exactly'}), and greedy tokens match Hugging Face`, async () => {
      const ref = reference<Ref>(dir);
      const [a, b] = await Promise.all([gguf(file), fixture(dir)].map((p) => loadGenerator(p, { device: 'cpu' })));
      for (const p of ref.prompts) assert.ok(maxRelError(await allLogits(a, p.ids), await allLogits(b, p.ids)) <= tol, `prompt of ${p.ids.length}`);
      const results = await a.generateIds(ref.greedy.map((g) => g.ids), { maxNewTokens: 32, stopAtEos: false });
      results.forEach((r, i) => assert.deepEqual(r.ids, ref.greedy[i].generated, `prompt ${i}`));
    });
  }

  // quantization error itself (a 64-wide toy model with Gaussian weights, two layers): Q8_0 within 2%, Q4_0 within 40% of the largest logit
  for (const [type, error] of [['q8_0', 2e-2], ['q4_0', 0.4]] as const) {
    test(`a ${type.toUpperCase()} model computes what its dequantized weights do (within 1e-5), and within ${error} of the unquantized model`, async () => {
      const ref = reference<Ref>('llama-tiny');
      const [q, deq, full] = await Promise.all([`llama-tiny-${type}.gguf`, `llama-tiny-${type}-dequant.gguf`, 'llama-tiny.gguf']
        .map((f) => loadGenerator(gguf(f), { device: 'cpu' })));
      assert.equal(q.model.weights().filter((t) => t.dtype === type).length, 2 * 4 + 1, 'each layer keeps qkv, o, gate-up and down quantized, and so does the untied LM head');
      for (const p of ref.prompts) {
        const [lq, ld, lf] = await Promise.all([q, deq, full].map((g) => allLogits(g, p.ids)));
        assert.ok(maxRelError(lq, ld) <= 1e-5, `against its dequantized weights: ${maxRelError(lq, ld)}`);
        assert.ok(maxRelError(lq, lf) <= error, `against fp32: ${maxRelError(lq, lf)}`);
      }
    });
  }

  // K-quants (the gguf package cannot write them: tools/reference/kquants.py does). A 256-wide toy model with Gaussian
  // weights rounded to fp16, embeddings tied: each file against itself with every tensor dequantized at load (by
  // loaders/quant.ts, bit for bit the gguf package's dequantization on blocks.json) and against the F16 weights it was
  // quantized from, within the error that plain round-to-nearest blocks of that width give.
  for (const [label, error, counts] of [
    ['q4_k_m', 0.1, { q4_k: 5, q6_k: 2 }], ['q5_k', 0.05, { q5_k: 9 }], ['q6_k', 0.04, { q6_k: 9 }],
  ] as const) {
    test(`a ${label.toUpperCase()} model computes what its dequantized weights do (within 1e-5), and within ${error} of its F16 weights`, async () => {
      const ref = reference<Ref>('llama-tiny');
      const file = gguf(`llama-k-tiny-${label}.gguf`);
      const tokenizer = () => { const md = openGgufModel(file); md.weights.close(); return tokenizerFromGguf(md.gguf, file); };
      const q = await loadGenerator(file, { device: 'cpu' });
      const deq = (await loadModelDir(dequantizedAtLoad(openGgufModel(file)), tokenizer(), { device: 'cpu' })) as { generator: typeof q };
      const full = await loadGenerator(gguf('llama-k-tiny.gguf'), { device: 'cpu' });
      const kept: Record<string, number> = {};
      for (const t of q.model.weights()) if (/^q\d/.test(t.dtype)) kept[t.dtype] = (kept[t.dtype] ?? 0) + 1;
      // q4_k_m's fused QKV mixes Q4_K (q, k) and Q6_K (v) rows: it is dequantized at load, everything else stays quantized
      assert.deepEqual(kept, counts, 'the attention output, gate-up and down projections of each layer and the tied head stay quantized');
      for (const p of ref.prompts) {
        const [lq, ld, lf] = await Promise.all([q, deq.generator, full].map((g) => allLogits(g, p.ids)));
        assert.ok(maxRelError(lq, ld) <= 1e-5, `against its dequantized weights: ${maxRelError(lq, ld)}`);
        assert.ok(maxRelError(lq, lf) <= error, `against F16: ${maxRelError(lq, lf)}`);
      }
    });
  }

  test('peregrine generate and inspect take a GGUF file path', () => {
    const run = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
    const gen = run(['generate', '-m', gguf('llama-tiny-q8_0.gguf'), '-p', 'Hello', '--max-new-tokens', '5', '--device', 'cpu', '--temperature', '0']);
    assert.equal(gen.status, 0, gen.stderr);
    assert.ok(gen.stdout.length > 0);
    const ins = run(['inspect', '-m', gguf('llama-tiny-q8_0.gguf'), '--device', 'cpu']);
    assert.equal(ins.status, 0, ins.stderr);
    assert.match(ins.stdout, /LlamaForCausalLM/);
    assert.match(ins.stdout, /Q8_0/);
  });
});

describe('GGUF vocabularies tokenize as Hugging Face does', () => {
  for (const [file, name] of [['llama-tiny.gguf', 'llama2-style'], ['llama3-tiny.gguf', 'llama3-style'], ['qwen2-tiny.gguf', 'qwen2-style']]) {
    test(`${name} (${file}): ${300} strings of words, unicode, whitespace runs, digits, emoji and code`, () => {
      const md = openGgufModel(gguf(file));
      md.weights.close();
      const tok = tokenizerFromGguf(md.gguf, file);
      const ref = reference<{ texts: string[]; ids: number[][] }>('gguf', `tokens-${name}.json`);
      ref.texts.forEach((t, i) => assert.deepEqual(tok.encode(t), ref.ids[i], JSON.stringify(t)));
      assert.ok(tok.chatTemplate(), 'the chat template comes from tokenizer.chat_template');
    });
  }
});

describe('bad GGUF files are refused with one line', () => {
  const bytes = readFileSync(gguf('llama-tiny-q8_0.gguf'));
  const refused = (data: Uint8Array, code: string, pattern: RegExp) => {
    const path = join(tmp, `f${Math.random().toString(36).slice(2)}.gguf`);
    writeFileSync(path, data);
    assert.throws(() => GgufFile.open(path).close(), (err: unknown) => {
      assert.ok(err instanceof PeregrineError, String(err));
      assert.equal(err.code, code, err.message);
      assert.match(err.message, pattern);
      assert.ok(!/\n/.test(err.message));
      return true;
    });
  };
  test('magic, version, byte order and truncation', () => {
    refused(Buffer.from('GGML' + 'x'.repeat(100)), 'bad-gguf', /does not start with "GGUF"/);
    const v1 = Buffer.from(bytes.subarray(0, 64)); v1.writeUInt32LE(1, 4);
    refused(v1, 'bad-gguf', /version 1/);
    const be = Buffer.from(bytes.subarray(0, 64)); be.writeUInt32BE(3, 4);
    refused(be, 'bad-gguf', /big-endian/);
    for (const cut of [3, 10, 30, 200, 5000, bytes.length - 100]) refused(bytes.subarray(0, cut), 'bad-gguf', /truncated|more than its \d+ bytes can hold|more than the rest of the file holds/);
  });
  test('counts beyond the file, and a tensor type Peregrine does not read is named', () => {
    const huge = Buffer.from(bytes); huge.writeBigUInt64LE(2n ** 40n, 8);
    refused(huge, 'bad-gguf', /more than its \d+ bytes can hold/);
    // the first tensor's type field: after its name (u64 length + text), dimension count and dims
    const at = bytes.indexOf(Buffer.from('blk.0.attn_k.weight')) + 'blk.0.attn_k.weight'.length;
    const dims = bytes.readUInt32LE(at), typeAt = at + 4 + 8 * dims;
    const q2 = Buffer.from(bytes); q2.writeUInt32LE(10, typeAt);
    refused(q2, 'unsupported-config', /ggml type Q2_K, which Peregrine does not read/);
    const unknown = Buffer.from(bytes); unknown.writeUInt32LE(99, typeAt);
    refused(unknown, 'bad-gguf', /unknown ggml type 99/);
    const misaligned = Buffer.from(bytes); misaligned.writeBigUInt64LE(misaligned.readBigUInt64LE(typeAt + 4) + 1n, typeAt + 4);
    refused(misaligned, 'bad-gguf', /not a multiple of the alignment/);
  });
});
