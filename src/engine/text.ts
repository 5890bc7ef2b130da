// A sequence's text as it streams: stable text from the incremental decoder, cut at the first stop string.
// Text that could be the start of a stop string is held back until the next tokens tell, so no part of a
// stop string is ever emitted.
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { IncrementalDecoder } from './detokenize.js';

export class TextStream {
  private readonly decoder: IncrementalDecoder;
  private full = '';
  private emitted = 0;
  private readonly hold: number;
  stopped = false;

  constructor(tokenizer: Tokenizer, private readonly stops: string[]) {
    this.decoder = new IncrementalDecoder(tokenizer);
    this.hold = stops.reduce((m, s) => Math.max(m, s.length - 1), 0);
  }

  /** The text emitted so far (the whole output once finished). */
  get text(): string {
    return this.full.slice(0, this.emitted);
  }

  /** Adds a token; returns the text to emit now. `checkStops` is false while stop strings may not end generation yet. */
  push(id: number, checkStops = true): string {
    if (this.stopped) return '';
    this.full += this.decoder.push(id);
    return this.advance(checkStops, false);
  }

  /** The rest of the text at the end of the sequence. */
  finish(checkStops = true): string {
    if (this.stopped) return '';
    this.full += this.decoder.flush();
    return this.advance(checkStops, true);
  }

  private advance(checkStops: boolean, final: boolean): string {
    if (checkStops && this.stops.length) {
      // a stop string may start in held-back text; search from the first character not yet emitted
      let cut = -1;
      for (const s of this.stops) {
        const at = this.full.indexOf(s, Math.max(0, this.emitted - s.length + 1));
        if (at >= 0 && (cut < 0 || at < cut)) cut = at;
      }
      if (cut >= 0) {
        this.stopped = true;
        this.full = this.full.slice(0, Math.max(cut, this.emitted));
        return this.emit(this.full.length);
      }
    }
    return this.emit(final || !this.stops.length ? this.full.length : Math.max(this.emitted, this.full.length - this.hold));
  }

  private emit(upTo: number): string {
    // never end inside a surrogate pair
    if (upTo < this.full.length && upTo > this.emitted && /[\uD800-\uDBFF]/.test(this.full[upTo - 1])) upTo--;
    const out = this.full.slice(this.emitted, upTo);
    this.emitted = upTo;
    return out;
  }
}
