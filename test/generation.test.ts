// Generation on the CPU: batching, chunked prefill, streaming, stopping, sampling and its validation.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { IncrementalDecoder } from '../src/engine/detokenize.js';
import { CpuBackend } from '../src/backends/cpu/backend.js';
import { checkOptions, requestRow, type GenerateOptions } from '../src/engine/options.js';
import { CANDIDATE_SCRATCH, MAX_CANDIDATES, REQUEST_STRIDE } from '../src/ops/requests.js';
import { loadGenerator, PeregrineError, type TokenEvent } from '../src/index.js';
import { writeRandomGpt2 } from './helpers/random-model.js';
import { fixture, FIXTURES, reference } from './helpers/fixtures.js';

const root = mkdtempSync(join(tmpdir(), 'peregrine-gen-'));
after(() => rmSync(root, { recursive: true, force: true }));
const textModel = join(root, 'gpt2');
writeRandomGpt2(textModel, { hidden: 32, layers: 2, heads: 4, positions: 64 }, join(FIXTURES, 'tokenizers', 'gpt2'));

const wide = reference<{ greedy: { ids: number[]; generated: number[] }[] }>('gpt2-wide');
const prompts = wide.greedy.map((g) => g.ids);

function isBadArgument(err: unknown): boolean {
  return err instanceof PeregrineError && (err.code === 'bad-argument' || err.code === 'bad-request') && !err.message.includes('\n');
}

describe('batching and prefill', () => {
  test('prefill in chunks of 3 tokens gives the same tokens as one pass', async () => {
    const whole = await loadGenerator(fixture('gpt2-wide'));
    const chunked = await loadGenerator(fixture('gpt2-wide'), { prefillChunk: 3 });
    assert.equal(chunked.runtime.limits.prefillChunk, 3);
    const a = await whole.generateIds(prompts, { maxNewTokens: 12, stopAtEos: false });
    const b = await chunked.generateIds(prompts, { maxNewTokens: 12, stopAtEos: false });
    assert.deepEqual(b, a);
  });

  test('a sequence stops at end-of-sequence while the others go on', async () => {
    // make the 3rd greedy token of prompt 1 the end-of-sequence token
    const dir = join(root, 'eos');
    cpSync(fixture('gpt2-wide'), dir, { recursive: true, dereference: true });
    const eos = wide.greedy[1].generated[2];
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, eos_token_id: eos }));
    // generation_config.json's end tokens take precedence over config.json's, as in transformers
    rmSync(join(dir, 'generation_config.json'));
    const gen = await loadGenerator(dir);
    const results = await gen.generateIds(prompts, { maxNewTokens: 10 });
    const first = wide.greedy[1].generated.indexOf(eos);
    assert.deepEqual(results[1].ids, wide.greedy[1].generated.slice(0, first + 1));
    assert.equal(results[1].finishReason, 'eos');
    results.forEach((r, i) => {
      const k = wide.greedy[i].generated.slice(0, 10).indexOf(eos);
      assert.deepEqual(r.ids, k < 0 ? wide.greedy[i].generated.slice(0, 10) : wide.greedy[i].generated.slice(0, k + 1), `prompt ${i}`);
      assert.equal(r.finishReason, k < 0 ? 'length' : 'eos');
    });
    // stopAtEos: false runs on
    const [full] = await gen.generateIds([prompts[1]], { maxNewTokens: 10, stopAtEos: false });
    assert.deepEqual(full.ids, wide.greedy[1].generated.slice(0, 10));
  });

  test('memory is planned once, at load', async () => {
    const gen = await loadGenerator(fixture('gpt2-wide'), { maxBatch: 4, maxSeqLen: 100 });
    const before = gen.runtime.memory();
    for (let i = 0; i < 5; i++) await gen.generateIds(prompts.slice(0, 3), { maxNewTokens: 8 });
    assert.deepEqual(gen.runtime.memory(), before);
    assert.equal(gen.scheduler.stats().blocksUsed, 0, 'finished sequences gave their blocks back');
  });
});

describe('streaming', () => {
  test('the AsyncIterable, the callback and generate() give the same tokens and text', async () => {
    const gen = await loadGenerator(textModel);
    const opts = { maxNewTokens: 16, temperature: 0.9, seed: 7 };
    const streamed: TokenEvent[] = [];
    for await (const e of gen.stream(['Hello there', 'Streaming text, token by token'], opts)) streamed.push(e);
    const called: TokenEvent[] = [];
    const results = await gen.generate(['Hello there', 'Streaming text, token by token'], { ...opts, onToken: (e) => called.push(e) });
    assert.deepEqual(called, streamed);
    results.forEach((r, i) => {
      const mine = streamed.filter((e) => e.index === i);
      assert.deepEqual(mine.map((e) => e.id), r.ids);
      assert.equal(mine.map((e) => e.text).join(''), r.text);
      assert.equal(mine.at(-1)!.finishReason, 'length');
      assert.equal(r.ids.length, 16);
    });
  });

  test('text is held back while a character is incomplete', async () => {
    const gen = await loadGenerator(textModel);
    const text = 'naïve café, 日本語 🙂!';
    const ids = gen.tokenizer.encode(text);
    const dec = new IncrementalDecoder(gen.tokenizer);
    const parts = ids.map((id) => dec.push(id));
    parts.push(dec.flush());
    assert.ok(parts.every((p) => !p.includes('\uFFFD')), JSON.stringify(parts));
    assert.equal(parts.join(''), text);
    assert.ok(parts.some((p) => p === ''), 'some token ended inside a character');
  });
});

describe('sampling', () => {
  const V = 6;
  // probabilities 0.4, 0.25, 0.15, 0.1, 0.06, 0.04 as logits
  const probs = [0.4, 0.25, 0.15, 0.1, 0.06, 0.04];
  const logits = Float32Array.from(probs.map(Math.log));

  /** Token frequencies over `draws` rows of the same logits: one sequence, each row a different position (random number). */
  function counts(options: GenerateOptions, draws = 20000): number[] {
    const b = new CpuBackend();
    const spec = checkOptions({ seed: 3, ...options }, V, [], null);
    const requests = b.buffer([1, REQUEST_STRIDE], 'i32'), history = b.buffer([1, draws], 'i32'), topP = b.buffer([1], 'f32');
    b.writeInt(requests, requestRow(spec, 0, 0), REQUEST_STRIDE);
    b.readFloat(topP, 1)[0] = spec.topP;
    const rows = b.buffer([draws, V], 'f32');
    for (let i = 0; i < draws; i++) b.readFloat(rows, draws * V).set(logits, i * V);
    const slots = b.buffer([draws], 'i32'), lengths = b.buffer([draws], 'i32');
    b.writeInt(lengths, Int32Array.from({ length: draws }, (_, i) => i), draws);
    const cand = { values: b.buffer([draws, MAX_CANDIDATES], 'f32'), ids: b.buffer([draws, MAX_CANDIDATES], 'i32'), scratch: b.buffer([1, CANDIDATE_SCRATCH], 'i32') };
    const ids = b.buffer([draws], 'i32');
    const seqs = { requests, history, topP };
    b.selectCandidates(cand, rows, { slots, lengths }, seqs, draws, b.buffer([draws], 'i32'));
    b.sample(ids, rows, cand, { slots, lengths }, seqs, draws);
    const c = new Array(V).fill(0);
    for (const id of b.readInt(ids, draws)) c[id]++;
    return c.map((x) => x / draws);
  }

  test('greedy by default, and with temperature 0', () => {
    assert.equal(checkOptions({}, V, [], null).temperature, 0);
    assert.deepEqual(counts({ temperature: 0 }, 100), [1, 0, 0, 0, 0, 0]);
  });
  test('temperature 1 follows the softmax', () => {
    counts({ temperature: 1 }).forEach((f, i) => assert.ok(Math.abs(f - probs[i]) < 0.02, `token ${i}: ${f} vs ${probs[i]}`));
  });
  test('top-k keeps the k most likely, renormalized', () => {
    const f = counts({ topK: 2 });
    assert.equal(f[2] + f[3] + f[4] + f[5], 0);
    assert.ok(Math.abs(f[0] - 0.4 / 0.65) < 0.02, `${f[0]}`);
  });
  test('top-p keeps the smallest set reaching p', () => {
    let f = counts({ topP: 0.6 });
    assert.ok(f[0] > 0 && f[1] > 0 && f[2] === 0, `p=0.6: ${f}`);
    f = counts({ topP: 0.7 });
    assert.ok(f[2] > 0 && f[3] === 0, `p=0.7: ${f}`);
    f = counts({ topP: 0.05 });
    assert.deepEqual(f, [1, 0, 0, 0, 0, 0]);
  });
  test('top-k then top-p', () => {
    // top-k 3 leaves 0.4/0.8, 0.25/0.8, 0.15/0.8; top-p 0.75 keeps the first two
    const f = counts({ topK: 3, topP: 0.75 });
    assert.ok(f[0] > 0 && f[1] > 0 && f[2] === 0, `${f}`);
  });
  test('low temperature sharpens, high temperature flattens', () => {
    assert.ok(counts({ temperature: 0.3 })[0] > 0.7);
    assert.ok(counts({ temperature: 5 })[5] > 0.12);
  });

  test('the same seed gives the same tokens; another seed other tokens', async () => {
    const gen = await loadGenerator(textModel);
    const run = (seed: number) => gen.generate(['Once upon a time', 'x'], { maxNewTokens: 20, temperature: 1.5, topK: 200, topP: 0.95, seed });
    const a = await run(1), b = await run(1), c = await run(2);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a.map((r) => r.ids), c.map((r) => r.ids));
  });

  test('invalid sampling values are refused with one line', async () => {
    const gen = await loadGenerator(textModel);
    const bad: [string, object][] = [
      ['temperature', { temperature: -1 }], ['temperature', { temperature: NaN }], ['top-k', { topK: 1.5 }], ['top-k', { topK: -1 }],
      ['top-p', { topP: 0 }], ['top-p', { topP: 1.2 }], ['seed', { seed: -3 }], ['max new tokens', { maxNewTokens: 0 }], ['max new tokens', { maxNewTokens: 2.5 }],
    ];
    for (const [what, opts] of bad) {
      await assert.rejects(gen.generate('hi', opts), (e: unknown) => isBadArgument(e) && (e as Error).message.includes(what), JSON.stringify(opts));
    }
  });

  test('bad prompts are refused with one line', async () => {
    const gen = await loadGenerator(textModel);
    await assert.rejects(gen.generate(''), (e: unknown) => isBadArgument(e) && /empty/.test((e as Error).message));
    await assert.rejects(gen.generate(['ok', '']), (e: unknown) => isBadArgument(e) && /prompt 1 is empty/.test((e as Error).message));
    await assert.rejects(gen.generate([]), (e: unknown) => isBadArgument(e) && /no prompts/.test((e as Error).message));
    await assert.rejects(gen.generate('word '.repeat(70)), (e: unknown) => isBadArgument(e) && /beyond the model's 64/.test((e as Error).message));
    await assert.rejects(gen.generateIds([[1, 99999]]), (e: unknown) => isBadArgument(e) && /outside the vocabulary/.test((e as Error).message));
    await assert.rejects(gen.generateIds([[1, 2], Array(60).fill(5)], { maxNewTokens: 10 }), (e: unknown) => isBadArgument(e) && /prompt 1 has 60 tokens.*beyond the model's 64/.test((e as Error).message));
  });
});
