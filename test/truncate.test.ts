// Inputs longer than the model's positions: refused by default, cut on request (left for prompts, right for
// embeddings and classification), keeping the special tokens that frame a text.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadEmbedder, loadGenerator, PeregrineError } from '../src/index.js';
import { fixture } from './helpers/fixtures.js';

const long = 'the quick brown fox jumps over the lazy dog. '.repeat(30);

function refused(pattern: RegExp) {
  return (err: unknown) => err instanceof PeregrineError && pattern.test(err.message);
}

describe('truncation', () => {
  test('generation: a prompt too long is refused, or cut to leave room for the new tokens', async () => {
    const gen = await loadGenerator(fixture('gpt2-tiny'), { device: 'cpu' });
    const ids = gen.tokenizer.encode(long);
    assert.ok(ids.length > 64);
    await assert.rejects(gen.generate(long, { maxNewTokens: 4 }), refused(/beyond the model's 64.*--truncate/));
    const left = await gen.generate(long, { maxNewTokens: 4, truncate: 'left' });
    assert.deepEqual(left.ids, (await gen.generateIds([ids.slice(-60)], { maxNewTokens: 4 }))[0].ids);
    const right = await gen.generate(long, { maxNewTokens: 4, truncate: 'right' });
    assert.deepEqual(right.ids, (await gen.generateIds([ids.slice(0, 60)], { maxNewTokens: 4 }))[0].ids);
    const short = await gen.generate('Hello there', { maxNewTokens: 4, truncate: 'left' });
    assert.deepEqual(short.ids, (await gen.generate('Hello there', { maxNewTokens: 4 })).ids);
    assert.throws(() => gen.checkOptions({ truncate: 'middle' as 'left' }), refused(/truncate must be "left" or "right"/));
    gen.dispose();
  });

  test('embeddings and classification: the start of a text is kept, between [CLS] and [SEP]', async () => {
    const emb = await loadEmbedder(fixture('bert-tiny'), { device: 'cpu' });
    const [cls, sep] = [emb.tokenizer.specialId('cls_token')!, emb.tokenizer.specialId('sep_token')!];
    assert.throws(() => emb.embed([long]), refused(/beyond the model's 64 positions.*--truncate/));
    const body = emb.tokenizer.encode(long, false);
    const expected = Int32Array.from([cls, ...body.slice(0, 62), sep]);
    assert.deepEqual(emb.encodeTexts([long], 'right'), [expected]);
    assert.deepEqual(emb.encodeTexts([long], 'left'), [Int32Array.from([cls, ...body.slice(-62), sep])]);
    const [v] = emb.embed([long], { truncate: 'right' });
    assert.deepEqual(Array.from(v), Array.from(emb.model.encode([expected], { pooling: 'mean' }).pooled!));
    const [c] = emb.classify([long], { truncate: 'right' });
    assert.deepEqual(c.logits, Array.from(emb.model.encode([expected], { classify: true }).logits!));
    assert.deepEqual(emb.encodeTexts(['a short text'], 'right'), emb.encodeTexts(['a short text']));
    emb.dispose();
  });
});
