// Seed inputs for the fuzz targets, made from the committed fixtures: the tiny GPT-2 (sharded) and BERT
// checkpoints and the real GPT-2 and bert-base-uncased tokenizer files. The tokenizers are cut down to
// their first few hundred tokens (renumbered, merges kept where all their tokens survive) so that one
// case loads in milliseconds; their structure (normalizer, pre-tokenizer, post-processor, decoder, added
// and special tokens) is the real one.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES } from '../helpers/fixtures.js';
import type { Json } from './mutate.js';

export interface ModelSeed {
  /** file name -> bytes: everything a model directory holds */
  files: Map<string, Buffer>;
}

const cache = new Map<string, unknown>();
function once<T>(key: string, make: () => T): T {
  if (!cache.has(key)) cache.set(key, make());
  return cache.get(key) as T;
}

function read(...parts: string[]): Buffer {
  return readFileSync(join(FIXTURES, ...parts));
}

export function jsonOf(b: Buffer): Json {
  return JSON.parse(b.toString('utf8')) as Json;
}

type TokenizerJson = { model: { vocab: Record<string, number>; merges?: (string | string[])[] }; added_tokens: { id: number; content: string }[]; post_processor?: unknown };

/** tokenizer.json and tokenizer_config.json with the vocabulary cut to the tokens `keep` selects, renumbered in order. */
function cutTokenizer(name: string, keep: (id: number) => boolean): { tokenizer: Json; config: Json; specialMap: Json } {
  const tok = JSON.parse(read('tokenizers', name, 'tokenizer.json').toString('utf8')) as TokenizerJson;
  const config = JSON.parse(read('tokenizers', name, 'tokenizer_config.json').toString('utf8')) as { added_tokens_decoder?: Record<string, unknown> };
  const specials = new Set(tok.added_tokens.map((t) => t.id));
  const kept = Object.entries(tok.model.vocab).filter(([, id]) => keep(id) || specials.has(id)).sort((a, b) => a[1] - b[1]);
  const renumber = new Map(kept.map(([, id], i) => [id, i]));
  tok.model.vocab = Object.fromEntries(kept.map(([t], i) => [t, i]));
  if (tok.model.merges) {
    const has = (t: string) => Object.hasOwn(tok.model.vocab, t);
    tok.model.merges = tok.model.merges.filter((m) => {
      const [a, b] = typeof m === 'string' ? m.split(' ') : m;
      return has(a) && has(b) && has(a + b);
    });
  }
  for (const t of tok.added_tokens) t.id = renumber.get(t.id)!;
  // the BERT post-processor names [CLS] and [SEP] by id
  const text = JSON.stringify(tok.post_processor ?? null).replace(/"ids":\[(\d+)\]/g, (_, id: string) => `"ids":[${renumber.get(Number(id)) ?? id}]`);
  tok.post_processor = JSON.parse(text);
  if (config.added_tokens_decoder) {
    config.added_tokens_decoder = Object.fromEntries(Object.entries(config.added_tokens_decoder).map(([id, v]) => [String(renumber.get(Number(id)) ?? id), v]));
  }
  return { tokenizer: tok as unknown as Json, config: config as Json, specialMap: jsonOf(read('tokenizers', name, 'special_tokens_map.json')) };
}

export type TokenizerSeed = ReturnType<typeof cutTokenizer>;

export const gpt2Tokenizer = (): TokenizerSeed => once('tok-gpt2', () => cutTokenizer('gpt2', (id) => id < 600));
// [PAD], [unused*], [UNK], [CLS], [SEP], [MASK], single characters, then the most common words
export const bertTokenizer = (): TokenizerSeed => once('tok-bert', () => cutTokenizer('bert-base-uncased', (id) => id < 1100 || (id >= 1996 && id < 2100)));

export function tokenizerFiles(seed: TokenizerSeed): Map<string, Buffer> {
  return new Map([
    ['tokenizer.json', Buffer.from(JSON.stringify(seed.tokenizer))],
    ['tokenizer_config.json', Buffer.from(JSON.stringify(seed.config))],
    ['special_tokens_map.json', Buffer.from(JSON.stringify(seed.specialMap))],
  ]);
}

/** The tiny GPT-2 (two shards and an index) with the cut-down GPT-2 tokenizer. */
export const gpt2Model = (): ModelSeed => once('model-gpt2', () => {
  const files = new Map<string, Buffer>();
  for (const f of ['config.json', 'generation_config.json', 'model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) {
    files.set(f, read('gpt2-tiny', f));
  }
  for (const [f, b] of tokenizerFiles(gpt2Tokenizer())) files.set(f, b);
  return { files };
});

/** The tiny BERT sequence classifier (one safetensors file) with the cut-down bert-base-uncased tokenizer. */
export const bertModel = (): ModelSeed => once('model-bert', () => {
  const files = new Map<string, Buffer>();
  for (const f of ['config.json', 'model.safetensors']) files.set(f, read('bert-tiny', f));
  for (const [f, b] of tokenizerFiles(bertTokenizer())) files.set(f, b);
  return { files };
});

/** Real safetensors files: a GPT-2 shard (F16 weights) and the BERT checkpoint (BF16). */
export const safetensorsSeeds = (): Buffer[] => once('st', () => [read('gpt2-tiny', 'model-00002-of-00002.safetensors'), read('bert-tiny', 'model.safetensors')]);
