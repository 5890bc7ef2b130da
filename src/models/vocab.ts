// Token ids against a model's vocabulary. An id past the embedding table would read memory that is not the
// table (NaN on the CPU, other weights on the GPU), so every entry point, from text or from ids, for
// generators and encoders alike, checks its ids before anything runs.
import { fail } from '../errors.js';

/** Where the ids came from, which decides what the user should do about a bad one. */
export type IdSource = 'text' | 'ids';

/** Refuses ids that are not whole numbers in 0 .. vocabSize - 1, naming the first and what to do. */
export function checkTokenIds(ids: ArrayLike<number>, vocabSize: number, which: string, source: IdSource): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (Number.isSafeInteger(id) && id >= 0 && id < vocabSize) continue;
    const fix = source === 'text'
      ? ': the tokenizer does not match this checkpoint; use the tokenizer saved with it'
      : `; pass ids from 0 to ${vocabSize - 1}`;
    fail('bad-request', `${which} has token id ${JSON.stringify(id)} at position ${i}, outside the vocabulary (${vocabSize} ids, vocab_size in config.json)${fix}`);
  }
}
