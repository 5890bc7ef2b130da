// Whether a model directory's tokenizer works with its model: it loads, encodes a probe text into token
// ids the model's vocabulary holds, and decodes them. `inspect` reports a tokenizer that does not.
import { fail } from '../errors.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';

// plain words, punctuation, digits, and a character few vocabularies hold (an unknown token for many)
const PROBE = 'Hello, world! The quick brown fox jumps over 13 lazy dogs \u2603.';

export function checkTokenizer(tokenizer: Tokenizer, vocabSize: number, path: string): void {
  const broken = (what: string): never => fail('bad-config', `${path} does not work with this model: ${what}; restore the tokenizer from the model's source`);
  let ids: number[], plain: number[];
  try {
    ids = tokenizer.encode(PROBE);
    plain = tokenizer.encode(PROBE, false);
    tokenizer.decode(ids);
  } catch (err) {
    return broken(`encoding ${JSON.stringify(PROBE)} failed (${(err as Error).message})`);
  }
  if (plain.length === 0) broken(`it encodes ${JSON.stringify(PROBE)} into no tokens`);
  const unk = tokenizer.specialId('unk_token');
  if (unk !== undefined && plain.every((id) => id === unk)) broken(`it encodes ${JSON.stringify(PROBE)} into unknown tokens only (its vocabulary is empty or wrong)`);
  // Tokenizer.encode returns whole non-negative ids or throws (above), so only the upper bound is left
  const outside = ids.find((id) => id >= vocabSize);
  if (outside !== undefined) broken(`it encodes ${JSON.stringify(PROBE)} into token id ${outside}, outside the model's vocabulary (0 .. ${vocabSize - 1}, vocab_size in config.json)`);
}
