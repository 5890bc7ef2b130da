// A copy of a fixture checkpoint with `extra` more vocabulary rows (zeros) in its embedding and LM head, so that its
// vocabulary divides by a tensor-parallel size (the fixtures' 951 and 815 divide by none).
import { DTYPE_BYTES } from '../../src/loaders/safetensors.js';
import { copyFixture } from './fixture-copy.js';

/** A copy of a fixture with `extra` zero rows in its token embedding (Llama's embed_tokens, GPT-2's wte) and untied LM head. */
export function widenVocab(fixtureDir: string, extra: number): string {
  return copyFixture(fixtureDir, 'peregrine-vocab-', (store, config) => {
    const V = config.vocab_size as number;
    const tensors = store.names().map((name) => {
      const info = store.info(name), bytes = store.readBytes(name);
      if (!/(^|\.)(embed_tokens|wte)\.weight$|^lm_head\.weight$/.test(name)) return { name, dtype: info.dtype, shape: info.shape, data: bytes };
      const data = new Uint8Array(bytes.length + extra * info.shape[1] * DTYPE_BYTES[info.dtype]);
      data.set(bytes);
      return { name, dtype: info.dtype, shape: [V + extra, info.shape[1]], data };
    });
    return { tensors, config: { vocab_size: V + extra } };
  });
}
