// The vocabulary tables built for start-up speed (src/tokenizers/vocab-tables.ts) give exactly the
// library's tokenizer: the same ids for random text (special tokens, unicode, odd spacing, long words), the
// same decoding, on the GPT-2 (BPE) and BERT (WordPiece) files and on BPE files with merges as pairs.
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { seededRandom } from '../src/ops/rng.js';
import { createHfTokenizer } from '../src/tokenizers/vocab-tables.js';
import { FIXTURES } from './helpers/fixtures.js';

type Json = Record<string, unknown>;

function read(name: string): { json: Json; config: Json } {
  const dir = join(FIXTURES, 'tokenizers', name);
  return { json: JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')), config: JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) };
}

const PIECES = ['the', ' The', 'quick', ' brown', 'ünïcödé', '日本語', '🦅', '  ', '\n', '\t', "'s", "n't", '1234567', '...', '<|endoftext|>', '[CLS]', '[SEP]', '[MASK]', 'antidisestablishmentarianism', 'Ġ', '##ing', 'a b', '"', '\\'];

function texts(seed: number, n: number): string[] {
  const rand = seededRandom(seed);
  return Array.from({ length: n }, () => Array.from({ length: 1 + Math.floor(rand() * 12) }, () => {
    if (rand() < 0.2) return String.fromCodePoint(32 + Math.floor(rand() * 0x3000));
    return PIECES[Math.floor(rand() * PIECES.length)];
  }).join(rand() < 0.5 ? '' : ' '));
}

function assertSame(json: Json, config: Json, what: string): void {
  const want = new HfTokenizer(json, config);
  const got = createHfTokenizer(json, config);
  const model = (got as unknown as { model: { type?: string; bpe_ranks?: unknown } }).model;
  if ((json.model as Json).type === 'BPE') assert.ok(!(model.bpe_ranks instanceof Map), `${what}: the fast tables are in use`);
  for (const t of texts(7, 300)) {
    const ids = want.encode(t).ids;
    assert.deepEqual(got.encode(t).ids, ids, `${what}: encode ${JSON.stringify(t)}`);
    assert.deepEqual(got.encode(t, { add_special_tokens: false }).ids, want.encode(t, { add_special_tokens: false }).ids);
    if (ids.length) assert.equal(got.decode(ids, { skip_special_tokens: true }), want.decode(ids, { skip_special_tokens: true }), `${what}: decode ${ids}`);
  }
  for (const token of ['the', '[UNK]', '<|endoftext|>', 'Ġthe', 'nonexistent-token']) assert.equal(got.token_to_id(token), want.token_to_id(token), `${what}: id of ${token}`);
}

describe('fast vocabulary tables', () => {
  test('GPT-2 (BPE, merges as strings) encodes and decodes as the library does', () => {
    const { json, config } = read('gpt2');
    assertSame(json, config, 'gpt2');
  });

  test('BERT (WordPiece) encodes and decodes as the library does', () => {
    const { json, config } = read('bert-base-uncased');
    assertSame(json, config, 'bert');
  });

  test('BPE with merges as pairs, pieces holding spaces, and merges of three pieces', () => {
    const { json, config } = read('gpt2');
    const model = json.model as { merges: string[] };
    const pairs = { ...json, model: { ...model, merges: model.merges.map((m) => m.split(' ')) } };
    assertSame(pairs, config, 'pairs');
    // a merge of a piece holding a space, which only the pair format can express, and a three-piece string
    const odd = { ...json, model: { ...model, merges: [['Ġ', 't'], ['a b', 'c'], ...model.merges.slice(1).map((m) => m.split(' '))] } };
    assertSame(odd, config, 'odd pairs');
    const three = { ...json, model: { ...model, merges: ['Ġ t x', ...model.merges.slice(1)] } };
    assertSame(three, config, 'three pieces');
  });

  test('a merge that is not a string fails as it does in the library', () => {
    const { json, config } = read('gpt2');
    const bad = { ...json, model: { ...(json.model as Json), merges: ['Ġ t', 42] } };
    assert.throws(() => new HfTokenizer(bad, config));
    assert.throws(() => createHfTokenizer(bad, config));
  });
});
