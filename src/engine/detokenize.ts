// Streaming detokenization: text is emitted only once it is stable. A token may end inside a UTF-8
// character (byte-level BPE), and decoding a suffix alone can differ from decoding it in context,
// so each step decodes a short window and emits what it adds beyond the already-emitted prefix.
import type { Tokenizer } from '../tokenizers/tokenizer.js';

export class IncrementalDecoder {
  private ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;

  constructor(private readonly tok: Tokenizer) {}

  /** Adds a token and returns the text that became final (possibly ''). */
  push(id: number): string {
    this.ids.push(id);
    const prefix = this.tok.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const text = this.tok.decode(this.ids.slice(this.prefixOffset));
    if (text.length > prefix.length && !text.endsWith('\uFFFD')) {
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      return text.slice(prefix.length);
    }
    return '';
  }

  /** The text held back at the end (an incomplete character). */
  flush(): string {
    const prefix = this.tok.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const text = this.tok.decode(this.ids.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.ids.length;
    return text.length > prefix.length ? text.slice(prefix.length) : '';
  }
}
