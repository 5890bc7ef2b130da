// Translation and summarization: an encoder-decoder model's generator, each text a source. translate() returns
// the best beam's text per input (or the whole results), stream() yields the best beam's tokens as they come
// (with beam search, when the search ends).
import { fail } from '../errors.js';
import type { CallOptions, GenerationResult, TextGenerator, TokenEvent } from './generation.js';
import { loadGenerator, type LoadOptions } from './load.js';

export class Translator {
  constructor(readonly generator: TextGenerator) {}

  /** The text made of each input, in order. */
  async translate(texts: string[], options?: CallOptions): Promise<string[]> {
    return (await this.results(texts, options)).map((r) => r.text);
  }

  /** Each input's whole result: ids, text, finish reason, and the beams with their scores under beam search. */
  results(texts: string[], options: CallOptions = {}): Promise<GenerationResult[]> {
    return this.generator.generate(texts, options);
  }

  /** The tokens of one input's best beam (or sample), as they are produced. */
  stream(text: string, options: CallOptions = {}): AsyncGenerator<TokenEvent> {
    return this.generator.stream([text], options);
  }

  dispose(): void {
    this.generator.dispose();
  }
}

/** Loads an encoder-decoder model (BART, mBART, Marian, T5) as a translator; a decoder-only model is refused. */
export async function loadTranslator(nameOrPath: string, options: LoadOptions = {}): Promise<Translator> {
  const g = await loadGenerator(nameOrPath, options);
  if (!g.seq2seq) {
    const arch = g.model.info.architecture;
    g.dispose();
    fail('bad-request', `${nameOrPath} is a decoder-only model (${arch}); translate and summarize need an encoder-decoder model such as Marian, mBART, BART or T5 (use generate)`);
  }
  return new Translator(g);
}
