// Token ids outside the model's vocabulary are refused at every entry point, with one line naming the id,
// the vocabulary size and what to do: a checkpoint whose vocab_size is smaller than its tokenizer's
// (test/fixtures/bert-wide and gpt2-wide: 512 ids under the real tokenizers) gave NaN vectors before.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadEmbedder, loadGenerator, PeregrineError } from '../src/index.js';
import { writeRandomBert } from './helpers/random-model.js';
import { CLI, fixture, FIXTURES } from './helpers/fixtures.js';

const root = mkdtempSync(join(tmpdir(), 'peregrine-vocab-'));
after(() => rmSync(root, { recursive: true, force: true }));
// a classifier with 512 ids under the 30522-id bert-base-uncased tokenizer
const classifier = join(root, 'classifier');
writeRandomBert(classifier, { vocab: 512, hidden: 16, layers: 1, heads: 2, positions: 32, labels: 2 }, join(FIXTURES, 'tokenizers', 'bert-base-uncased'));

/** The first id of `ids` at or past `vocab`, and its position. */
function firstOutside(ids: ArrayLike<number>, vocab: number): { id: number; at: number } {
  const at = Array.from(ids).findIndex((id) => id >= vocab);
  assert.ok(at >= 0, 'the text has an id outside the vocabulary');
  return { id: ids[at], at };
}

/** A one-line bad-request error naming the id, its position, the vocabulary size and the fix. */
function refuses(id: number, at: number, fix: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof PeregrineError, `expected a PeregrineError, got ${(err as Error)?.stack ?? err}`);
    assert.equal(err.code, 'bad-request', err.message);
    assert.match(err.message, new RegExp(`token id ${id} at position ${at}, outside the vocabulary \\(512 ids, vocab_size in config.json\\)`));
    assert.match(err.message, fix);
    assert.ok(!err.message.includes('\n'));
    return true;
  };
}

const TEXT_FIX = /the tokenizer does not match this checkpoint; use the tokenizer saved with it/;
const IDS_FIX = /pass ids from 0 to 511/;

describe('encoders refuse token ids outside the vocabulary', () => {
  test('embed, hidden states and the runtime, from text and from ids', async () => {
    const emb = await loadEmbedder(fixture('bert-wide'), { device: 'cpu' });
    const { id, at } = firstOutside(emb.tokenizer.encode('first text'), 512);
    assert.throws(() => emb.embed(['first text']), refuses(id, at, TEXT_FIX));
    assert.throws(() => emb.embed(['[CLS]', 'first text']), (e: unknown) => /^input 1 has token id/.test((e as Error).message));
    assert.throws(() => emb.embed(['first text'], { pooling: 'cls' }), refuses(id, at, TEXT_FIX));
    assert.throws(() => emb.hiddenStates(['first text']), refuses(id, at, TEXT_FIX));
    assert.throws(() => emb.model.encode([Int32Array.of(101, 200, 512, 102)], { pooling: 'mean' }), refuses(512, 2, IDS_FIX));
    assert.throws(() => emb.model.encode([Int32Array.of(101, 102), Int32Array.of(101, -1, 102)], {}), (e: unknown) => /input 1 has token id -1 at position 1/.test((e as Error).message));
    // ids inside the vocabulary still work
    const [v] = emb.embed(['[CLS] [SEP]']);
    assert.ok(v.every(Number.isFinite));
  });

  test('classify', async () => {
    const emb = await loadEmbedder(classifier, { device: 'cpu' });
    const { id, at } = firstOutside(emb.tokenizer.encode('first text'), 512);
    assert.throws(() => emb.classify(['first text']), refuses(id, at, TEXT_FIX));
  });
});

describe('generators refuse token ids outside the vocabulary', () => {
  test('generate, stream, ids and session turns', async () => {
    const gen = await loadGenerator(fixture('gpt2-wide'), { device: 'cpu' });
    const { id, at } = firstOutside(gen.tokenizer.encode('hello world'), 512);
    await assert.rejects(gen.generate('hello world', { maxNewTokens: 2 }), refuses(id, at, TEXT_FIX));
    await assert.rejects(gen.generate(['a', 'hello world'], { maxNewTokens: 2 }), (e: unknown) => /^prompt 1 has token id/.test((e as Error).message));
    await assert.rejects(async () => { for await (const _ of gen.stream('hello world')) { /* nothing comes */ } }, refuses(id, at, TEXT_FIX));
    await assert.rejects(gen.generateIds([[1, 2, 512]], { maxNewTokens: 2 }), refuses(512, 2, IDS_FIX));
    const session = gen.session();
    await assert.rejects(session.send('hello world', { maxNewTokens: 2 }), refuses(id, at, TEXT_FIX));
    await assert.rejects(session.send([3, 600], { maxNewTokens: 2 }), (e: unknown) => /the turn has token id 600 at position 1.*pass ids from 0 to 511/.test((e as Error).message));
    session.close();
  });
});

describe('the CLI refuses token ids outside the vocabulary', () => {
  const env = { ...process.env, PEREGRINE_CACHE: join(root, 'cache'), PEREGRINE_OFFLINE: '1', PEREGRINE_DEVICE: 'cpu' };
  const run = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env });

  for (const [command, model] of [['embed', fixture('bert-wide')], ['classify', classifier], ['generate', fixture('gpt2-wide')]]) {
    test(`${command}: exit 1, one line naming the id, nothing on stdout`, () => {
      const args = command === 'generate' ? [command, '-m', model, '-p', 'first text'] : [command, '-m', model, 'first text'];
      const r = run(args);
      assert.equal(r.status, 1, r.stderr);
      assert.equal(r.stdout, '');
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], /^peregrine: error: .*has token id \d+ at position \d+, outside the vocabulary \(512 ids.*use the tokenizer saved with it$/);
    });
  }
});
