// Request options: bad values and conflicting options get one-line errors naming the option; seeded
// sampling is reproducible whatever else shares the batch; top-p decay and min-p behave as defined.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { nextTopP, checkOptions } from '../src/engine/options.js';
import { loadGenerator, PeregrineError, type GenerateOptions } from '../src/index.js';
import { writeRandomGpt2 } from './helpers/random-model.js';
import { FIXTURES } from './helpers/fixtures.js';

const root = mkdtempSync(join(tmpdir(), 'peregrine-opts-'));
after(() => rmSync(root, { recursive: true, force: true }));
const model = join(root, 'gpt2');
writeRandomGpt2(model, { hidden: 32, layers: 2, heads: 4, positions: 64 }, join(FIXTURES, 'tokenizers', 'gpt2'));

function oneLine(pattern: RegExp) {
  return (e: unknown) => e instanceof PeregrineError && !e.message.includes('\n') && pattern.test(e.message);
}

describe('bad values and conflicting options', () => {
  const cases: [GenerateOptions, RegExp][] = [
    [{ topP: 0 }, /top-p must be in \(0, 1\]/],
    [{ topP: 1.5 }, /top-p must be in \(0, 1\]/],
    [{ topP: NaN }, /top-p/],
    [{ topK: -1 }, /top-k must be a whole number >= 0/],
    [{ topK: 2.5 }, /top-k/],
    [{ temperature: -0.1 }, /temperature must be a number >= 0/],
    [{ minP: 1.2 }, /min-p must be in \[0, 1\]/],
    [{ topPDecay: 0 }, /top-p decay must be in \(0, 1\]/],
    [{ topPMin: 2 }, /top-p min must be in \(0, 1\]/],
    [{ topPResetIds: [-1] }, /top-p reset ids must be token ids/],
    [{ seed: 2 ** 32 }, /seed must be a whole number from 0 to 4294967295/],
    [{ repetitionPenalty: 0 }, /repetition penalty must be a number >= 1e-6/],
    [{ repetitionPenalty: 5e-324 }, /repetition penalty must be a number >= 1e-6/],
    [{ repetitionPenalty: -1 }, /repetition penalty/],
    [{ presencePenalty: 3 }, /presence penalty must be in \[-2, 2\]/],
    [{ frequencyPenalty: -2.5 }, /frequency penalty must be in \[-2, 2\]/],
    [{ maxNewTokens: 0 }, /max new tokens must be at least 1 \(0 only scores a prompt/], [{ maxNewTokens: 0, promptLogprobs: true, numBeams: 2 }, /beam search needs max new tokens of at least 1/],
    [{ minNewTokens: -1 }, /min new tokens/],
    [{ minNewTokens: 10, maxNewTokens: 5 }, /min new tokens \(10\) is above max new tokens \(5\)/],
    [{ numBeams: 0 }, /num beams must be a whole number from 1 to 32/],
    [{ numBeams: 33 }, /num beams/],
    [{ numBeams: 2, numReturnSequences: 3 }, /num return sequences \(3\) is above num beams \(2\)/],
    [{ numReturnSequences: 2 }, /num return sequences \(2\) is above num beams \(1\)/],
    [{ numBeams: 2, temperature: 0.7 }, /temperature cannot be combined with num beams/],
    [{ numBeams: 2, topK: 10 }, /top-k cannot be combined with num beams/],
    [{ numBeams: 2, logprobs: true }, /logprobs cannot be combined with num beams/],
    [{ lengthPenalty: 2 }, /length penalty applies to beam search/],
    [{ earlyStopping: true }, /early stopping applies to beam search/],
    [{ diversityRate: -1 }, /diversity rate applies to beam search/],
    [{ numBeams: 2, earlyStopping: 'sometimes' as never }, /early stopping must be true, false or "never"/],
    [{ numBeams: 2, lengthPenalty: Infinity }, /length penalty must be a finite number/],
    [{ topLogprobs: 21 }, /top logprobs must be a whole number from 0 to 20/],
    [{ logprobs: false, topLogprobs: 2 }, /top logprobs needs logprobs/],
    [{ stop: [''] }, /stop must be a list of non-empty strings/],
    [{ badWords: [' '] }, /bad words must be non-empty strings/],
    [{ badWordsIds: [[]] }, /bad words ids must be non-empty lists/],
    [{ eosTokenId: 99999 }, /eos token id must be token ids from 0 to 50256/],
    [{ badWords: Array.from({ length: 300 }, (_, i) => `word${i}`) }, /beyond the 488 a request can hold/],
    [{ numBeams: 32, eosTokenId: [1, 2] }, /keeps 96 continuations per beam, beyond the 64/],
  ];
  for (const [options, pattern] of cases) {
    test(JSON.stringify(options).slice(0, 80), async () => {
      const gen = await generator();
      await assert.rejects(gen.generate('hi', options), oneLine(pattern));
    });
  }

  test('requests beyond the generator\'s limits', async () => {
    const gen = await loadGenerator(model, { device: 'cpu', maxSeqLen: 32, kvBlocks: 3, blockSize: 8 });
    await assert.rejects(gen.generate('word '.repeat(30), { maxNewTokens: 4 }), oneLine(/beyond the 32 this generator holds per sequence/));
    await assert.rejects(gen.generate('a b', { maxNewTokens: 20 }), oneLine(/needs up to \d+ KV-cache blocks of 8 tokens, but the pool has 2/));
    // one sequence of the whole length fits the pool sized for it, wherever its prompt ends in a block
    const one = await loadGenerator(model, { device: 'cpu', maxBatch: 1, maxSeqLen: 32, blockSize: 8 });
    for (const prompt of [24, 29, 31]) {
      const [r] = await one.generateIds([Array.from({ length: prompt }, (_, i) => 10 + i)], { maxNewTokens: 32 - prompt, stopAtEos: false });
      assert.equal(r.ids.length, 32 - prompt);
    }
    one.dispose();
    const small = await loadGenerator(model, { device: 'cpu', maxBatch: 2 });
    await assert.rejects(small.generate('a', { numBeams: 3 }), oneLine(/num beams \(3\) is above the 2 sequences/));
  });
});

let cached: Awaited<ReturnType<typeof loadGenerator>> | null = null;
async function generator() {
  return (cached ??= await loadGenerator(model, { device: 'cpu' }));
}

describe('seeded sampling', () => {
  const opts = { maxNewTokens: 16, temperature: 1.3, topK: 80, topP: 0.9, seed: 77 };

  test('the same seed gives the same tokens whatever else shares the batch', async () => {
    const gen = await generator();
    const alone = await gen.generate('Once upon a time', opts);
    const crowd = await Promise.all([
      gen.generate('Something else entirely', { ...opts, seed: 1 }),
      gen.generate('Once upon a time', opts),
      gen.generate(['x', 'Once upon a time', 'y'], { ...opts, seed: 77 }),
    ]);
    assert.deepEqual(crowd[1], alone);
    assert.deepEqual(crowd[2][1], alone, 'a prompt gives the same tokens at any index of a call');
    assert.notDeepEqual(crowd[0].ids, alone.ids);
  });

  test('without a seed, two runs differ', async () => {
    const gen = await generator();
    const a = await gen.generate('Once upon a time', { maxNewTokens: 24, temperature: 1.5 });
    const b = await gen.generate('Once upon a time', { maxNewTokens: 24, temperature: 1.5 });
    assert.notDeepEqual(a.ids, b.ids);
  });

  test('top-p decay follows FasterTransformer: max(p * decay, min), back to p after a reset id', () => {
    const spec = checkOptions({ topP: 0.9, topPDecay: 0.5, topPMin: 0.3, topPResetIds: [7] }, 100, [], null);
    let p = Math.fround(spec.topP);
    const seen: number[] = [];
    for (const id of [1, 2, 3, 7, 4]) seen.push((p = nextTopP(spec, p, id)));
    assert.deepEqual(seen, [Math.fround(0.45), Math.fround(0.3), Math.fround(0.3), Math.fround(0.9), Math.fround(0.45)]);
  });

  test('min-p and top-k 1 narrow sampling to the most likely token', async () => {
    const gen = await generator();
    const greedy = await gen.generate('The forest', { maxNewTokens: 12 });
    assert.deepEqual((await gen.generate('The forest', { maxNewTokens: 12, temperature: 2, topK: 1, seed: 5 })).ids, greedy.ids);
    assert.deepEqual((await gen.generate('The forest', { maxNewTokens: 12, temperature: 0.5, minP: 1, seed: 5 })).ids, greedy.ids);
  });
});

describe('outputs', () => {
  test('log-probs: one per token, their sum, and the alternatives best first including a greedy choice', async () => {
    const gen = await generator();
    const r = await gen.generate('Once upon a time', { maxNewTokens: 6, logprobs: true, topLogprobs: 4 });
    assert.equal(r.logprobs!.length, 6);
    assert.ok(Math.abs(r.cumLogprob! - r.logprobs!.reduce((a, b) => a + b, 0)) < 1e-9);
    r.topLogprobs!.forEach((top, i) => {
      assert.equal(top.length, 4);
      assert.equal(top[0].id, r.ids[i], 'greedy picks the most likely token');
      assert.ok(Math.abs(top[0].logprob - r.logprobs![i]) < 1e-6);
      for (let j = 1; j < top.length; j++) assert.ok(top[j].logprob <= top[j - 1].logprob);
      assert.equal(typeof top[0].text, 'string');
    });
  });

  test('a stop string ends the text before it; it is never streamed', async () => {
    const gen = await generator();
    const free = await gen.generate('Once upon a time', { maxNewTokens: 30, temperature: 1, seed: 4 });
    const stop = free.text.slice(8, 10);
    assert.ok(stop.trim().length > 0 && free.text.indexOf(stop) === 8, `a stop string inside the free text: ${JSON.stringify(free.text)}`);
    let streamed = '';
    const r = await gen.generate('Once upon a time', { maxNewTokens: 30, temperature: 1, seed: 4, stop: [stop], onToken: (e) => { streamed += e.text; } });
    assert.equal(r.finishReason, 'stop');
    assert.equal(r.text, free.text.slice(0, 8));
    assert.equal(streamed, r.text);
    assert.deepEqual(r.ids, free.ids.slice(0, r.ids.length));
  });

  test('bad words, as words: never generated', async () => {
    const gen = await generator();
    const free = await gen.generate('Once upon a time', { maxNewTokens: 20 });
    const word = gen.tokenizer.decode([free.ids[1]]).trim();
    assert.ok(word.length > 0);
    const r = await gen.generate('Once upon a time', { maxNewTokens: 20, badWords: [word] });
    const banned = [gen.tokenizer.encode(word, false), gen.tokenizer.encode(` ${word}`, false)].filter((t) => t.length === 1).map((t) => t[0]);
    assert.ok(banned.length > 0);
    for (const id of r.ids) assert.ok(!banned.includes(id), `${id} was banned`);
  });

  test('end tokens: the model\'s own, replaced, or ignored', async () => {
    const gen = await generator();
    const free = await gen.generate('Once upon a time', { maxNewTokens: 20 });
    const eos = free.ids[3];
    const r = await gen.generate('Once upon a time', { maxNewTokens: 20, eosTokenId: [999, eos] });
    assert.equal(r.finishReason, 'eos');
    assert.deepEqual(r.ids, free.ids.slice(0, free.ids.indexOf(eos) + 1));
    const min = await gen.generate('Once upon a time', { maxNewTokens: 20, eosTokenId: eos, minNewTokens: 8 });
    assert.ok(!min.ids.slice(0, 8).includes(eos));
    const ignored = await gen.generate('Once upon a time', { maxNewTokens: 20, eosTokenId: eos, stopAtEos: false });
    assert.equal(ignored.ids.length, 20);
  });
});
