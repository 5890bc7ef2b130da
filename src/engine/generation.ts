// Text generation over a causal LM: prefill the prompts in packed chunks, then decode one token per
// sequence per step until each stops. Buffers are sized once per call; the step loop allocates nothing
// but the events it hands out.
import { fail } from '../errors.js';
import type { CausalLM, StepInput } from '../models/model.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { IncrementalDecoder } from './detokenize.js';
import { seededRandom } from './rng.js';
import { Sampler, samplingParams, type SamplingOptions, type SamplingParams } from './sampling.js';

export interface GenerateOptions extends SamplingOptions {
  /** tokens to generate per prompt (default 32) */
  maxNewTokens?: number;
  /** stop a sequence at the end-of-sequence token (default true) */
  stopAtEos?: boolean;
  /** called for every generated token, as it is produced */
  onToken?: (event: TokenEvent) => void;
}

export interface TokenEvent {
  /** which prompt of the batch */
  index: number;
  id: number;
  /** text that became final with this token (may be '' while a character is incomplete) */
  text: string;
  /** set on a sequence's last event */
  finishReason?: FinishReason;
}

export type FinishReason = 'length' | 'eos';

export interface GenerationResult {
  ids: number[];
  text: string;
  finishReason: FinishReason;
}

interface Sequence {
  index: number;
  tokens: number[];
  promptLength: number;
  rand: () => number;
  decoder: IncrementalDecoder | null;
  finishReason: FinishReason | null;
}

/** Step buffers sized for one call: a prefill chunk or the whole batch, whichever is larger. */
function stepBuffers(rows: number): StepInput {
  return {
    n: 0, outCount: 0,
    ids: new Int32Array(rows), positions: new Int32Array(rows), slots: new Int32Array(rows), outRows: new Int32Array(rows),
  };
}

export function checkGenerateOptions(o: GenerateOptions): { maxNewTokens: number; params: SamplingParams } {
  const maxNewTokens = o.maxNewTokens ?? 32;
  if (!(Number.isSafeInteger(maxNewTokens) && maxNewTokens >= 1)) fail('bad-argument', `max new tokens must be a whole number >= 1, got ${o.maxNewTokens}`);
  return { maxNewTokens, params: samplingParams(o) };
}

export class TextGenerator {
  private sampler: Sampler;

  constructor(readonly model: CausalLM, readonly tokenizer: Tokenizer) {
    this.sampler = new Sampler(model.info.vocabSize);
  }

  /** Tokenizes prompts, refusing empty ones and ones the model cannot hold. */
  encodePrompts(prompts: string[], maxNewTokens: number): number[][] {
    if (prompts.length === 0) fail('bad-request', 'no prompts given; pass at least one prompt');
    const maxPos = this.model.info.maxPositions;
    return prompts.map((p, i) => {
      const which = prompts.length > 1 ? `prompt ${i}` : 'the prompt';
      if (typeof p !== 'string') fail('bad-request', `${which} is not a string`);
      const ids = this.tokenizer.encode(p);
      if (ids.length === 0) fail('bad-request', `${which} is empty; give at least one token of text`);
      if (ids.length + maxNewTokens > maxPos) {
        fail('bad-request', `${which} has ${ids.length} tokens; with ${maxNewTokens} new tokens that is ${ids.length + maxNewTokens} positions, beyond the model's ${maxPos}; shorten the prompt or ask for fewer new tokens`);
      }
      return ids;
    });
  }

  /** Streams tokens of every prompt as they are produced. */
  async *stream(prompts: string | string[], options: GenerateOptions = {}): AsyncGenerator<TokenEvent> {
    const list = typeof prompts === 'string' ? [prompts] : prompts;
    const { maxNewTokens } = checkGenerateOptions(options);
    yield* this.streamIds(this.encodePrompts(list, maxNewTokens), options, true);
  }

  async generate(prompt: string, options?: GenerateOptions): Promise<GenerationResult>;
  async generate(prompts: string[], options?: GenerateOptions): Promise<GenerationResult[]>;
  async generate(prompts: string | string[], options: GenerateOptions = {}): Promise<GenerationResult | GenerationResult[]> {
    const list = typeof prompts === 'string' ? [prompts] : prompts;
    const { maxNewTokens } = checkGenerateOptions(options);
    const results = await this.collect(this.encodePrompts(list, maxNewTokens), options);
    return typeof prompts === 'string' ? results[0] : results;
  }

  /** Generation from token ids (no text decoding in events). */
  async generateIds(prompts: number[][], options: GenerateOptions = {}): Promise<GenerationResult[]> {
    return this.collect(prompts, options, false);
  }

  private async collect(prompts: number[][], options: GenerateOptions, withText = true): Promise<GenerationResult[]> {
    const results: GenerationResult[] = prompts.map(() => ({ ids: [], text: '', finishReason: 'length' }));
    for await (const e of this.streamIds(prompts, options, withText)) {
      const r = results[e.index];
      r.ids.push(e.id);
      if (e.finishReason) r.finishReason = e.finishReason;
    }
    if (withText) for (const r of results) r.text = this.tokenizer.decode(r.ids);
    return results;
  }

  async *streamIds(prompts: number[][], options: GenerateOptions, withText: boolean): AsyncGenerator<TokenEvent> {
    const { maxNewTokens, params } = checkGenerateOptions(options);
    const stopAtEos = options.stopAtEos ?? true;
    const eos = stopAtEos ? this.model.eosTokenId : undefined;
    const longest = Math.max(...prompts.map((p) => p.length));
    for (const [i, p] of prompts.entries()) {
      if (p.length === 0) fail('bad-request', `prompt ${i} has no tokens`);
      if (p.some((id) => !Number.isSafeInteger(id) || id < 0 || id >= this.model.info.vocabSize)) {
        fail('bad-request', `prompt ${i} has a token id outside the vocabulary (0 .. ${this.model.info.vocabSize - 1})`);
      }
    }
    this.model.reserve(prompts.length, longest + maxNewTokens);
    const step = stepBuffers(Math.max(this.model.capacity.chunk, prompts.length));
    const seqs: Sequence[] = prompts.map((p, index) => ({
      index, tokens: [...p], promptLength: p.length, rand: seededRandom(params.seed, index),
      decoder: withText ? new IncrementalDecoder(this.tokenizer) : null, finishReason: null,
    }));

    const emit = (s: Sequence, id: number): TokenEvent => {
      s.tokens.push(id);
      const generated = s.tokens.length - s.promptLength;
      if (eos !== undefined && id === eos) s.finishReason = 'eos';
      else if (generated >= maxNewTokens) s.finishReason = 'length';
      let text = s.decoder ? s.decoder.push(id) : '';
      if (s.finishReason && s.decoder) text += s.decoder.flush();
      const event: TokenEvent = { index: s.index, id, text };
      if (s.finishReason) event.finishReason = s.finishReason;
      options.onToken?.(event);
      return event;
    };

    // prefill: every prompt token, packed across sequences in chunks
    const pending: TokenEvent[] = [];
    const chunk = this.model.capacity.chunk;
    const owners: Sequence[] = [];
    const flush = () => {
      this.run(step, owners, params, emit, pending);
      owners.length = 0;
    };
    for (const s of seqs) {
      for (let p = 0; p < s.promptLength; p++) {
        const r = step.n++;
        step.ids[r] = s.tokens[p];
        step.positions[r] = p;
        step.slots[r] = s.index;
        if (p === s.promptLength - 1) {
          step.outRows[step.outCount++] = r;
          owners.push(s);
        }
        if (step.n === chunk) flush();
      }
    }
    if (step.n > 0) flush();
    yield* pending;

    // decode: one token per unfinished sequence per step
    let active = seqs.filter((s) => !s.finishReason);
    while (active.length > 0) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      for (const [r, s] of active.entries()) {
        step.ids[r] = s.tokens[s.tokens.length - 1];
        step.positions[r] = s.tokens.length - 1;
        step.slots[r] = s.index;
        step.outRows[r] = r;
      }
      step.n = step.outCount = active.length;
      pending.length = 0;
      this.run(step, active, params, emit, pending);
      yield* pending;
      active = active.filter((s) => !s.finishReason);
    }
  }

  /** One forward pass, then a token for each output row (owners[i] owns output row i). */
  private run(step: StepInput, owners: Sequence[], params: SamplingParams, emit: (s: Sequence, id: number) => TokenEvent, out: TokenEvent[]): void {
    const logits = this.model.forward(step);
    const V = this.model.info.vocabSize;
    for (let i = 0; i < step.outCount; i++) {
      const s = owners[i];
      out.push(emit(s, this.sampler.sample(logits, i * V, params, s.rand)));
    }
    step.n = 0;
    step.outCount = 0;
  }
}
