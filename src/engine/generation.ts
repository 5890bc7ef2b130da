// Text generation over a causal LM: prefill the prompts in packed chunks, then decode one token per
// sequence per step until each stops. A decode step (forward, advance, sample) runs on the backend as one
// graph; only the sampled ids come back to the host.
import { fail } from '../errors.js';
import type { CausalLM, StepInput } from '../models/model.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { IncrementalDecoder } from './detokenize.js';
import { SAMPLING_FIELDS } from '../ops/backend.js';
import { packSampling, samplingParams, type SamplingOptions, type SamplingParams } from './sampling.js';

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
  generated: number;
  decoder: IncrementalDecoder | null;
  finishReason: FinishReason | null;
}

export function checkGenerateOptions(o: GenerateOptions): { maxNewTokens: number; params: SamplingParams } {
  const maxNewTokens = o.maxNewTokens ?? 32;
  if (!(Number.isSafeInteger(maxNewTokens) && maxNewTokens >= 1)) fail('bad-argument', `max new tokens must be a whole number >= 1, got ${o.maxNewTokens}`);
  return { maxNewTokens, params: samplingParams(o) };
}

export class TextGenerator {
  constructor(readonly model: CausalLM, readonly tokenizer: Tokenizer) {}

  /** Tokenizes prompts, refusing empty ones (streamIds checks the rest). */
  encodePrompts(prompts: string[]): number[][] {
    if (prompts.length === 0) fail('bad-request', 'no prompts given; pass at least one prompt');
    return prompts.map((p, i) => {
      const which = prompts.length > 1 ? `prompt ${i}` : 'the prompt';
      if (typeof p !== 'string') fail('bad-request', `${which} is not a string`);
      const ids = this.tokenizer.encode(p);
      if (ids.length === 0) fail('bad-request', `${which} is empty; give at least one token of text`);
      return ids;
    });
  }

  /** Streams tokens of every prompt as they are produced. */
  async *stream(prompts: string | string[], options: GenerateOptions = {}): AsyncGenerator<TokenEvent> {
    checkGenerateOptions(options);
    yield* this.streamIds(this.encodePrompts(typeof prompts === 'string' ? [prompts] : prompts), options, true);
  }

  async generate(prompt: string, options?: GenerateOptions): Promise<GenerationResult>;
  async generate(prompts: string[], options?: GenerateOptions): Promise<GenerationResult[]>;
  async generate(prompts: string | string[], options: GenerateOptions = {}): Promise<GenerationResult | GenerationResult[]> {
    checkGenerateOptions(options);
    const results = await this.collect(this.encodePrompts(typeof prompts === 'string' ? [prompts] : prompts), options);
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
    const V = this.model.info.vocabSize, maxPos = this.model.info.maxPositions;
    if (prompts.length === 0) fail('bad-request', 'no prompts given; pass at least one prompt');
    for (const [i, p] of prompts.entries()) {
      const which = prompts.length > 1 ? `prompt ${i}` : 'the prompt';
      if (p.length === 0) fail('bad-request', `${which} has no tokens`);
      if (p.some((id) => !Number.isSafeInteger(id) || id < 0 || id >= V)) {
        fail('bad-request', `${which} has a token id outside the vocabulary (0 .. ${V - 1})`);
      }
      if (p.length + maxNewTokens > maxPos) {
        fail('bad-request', `${which} has ${p.length} tokens; with ${maxNewTokens} new tokens that is ${p.length + maxNewTokens} positions, beyond the model's ${maxPos}; shorten the prompt or ask for fewer new tokens`);
      }
    }
    const B = prompts.length;
    const model = this.model;
    model.reserve(B, Math.max(...prompts.map((p) => p.length)) + maxNewTokens);
    const backend = model.backend;
    const io = model.io;
    backend.writeInt(io.sampling, packSampling(params, B), B * SAMPLING_FIELDS);

    const seqs: Sequence[] = prompts.map((_, index) => ({
      index, generated: 0, decoder: withText ? new IncrementalDecoder(this.tokenizer) : null, finishReason: null,
    }));
    const events: TokenEvent[] = [];
    /** One event per unfinished sequence for the ids the sampler wrote. */
    const collect = (): void => {
      events.length = 0;
      const ids = backend.readInt(io.ids, B);
      for (const s of seqs) {
        if (s.finishReason) continue;
        const id = ids[s.index];
        s.generated++;
        if (eos !== undefined && id === eos) s.finishReason = 'eos';
        else if (s.generated >= maxNewTokens) s.finishReason = 'length';
        let text = s.decoder ? s.decoder.push(id) : '';
        if (s.finishReason && s.decoder) text += s.decoder.flush();
        const event: TokenEvent = { index: s.index, id, text };
        if (s.finishReason) event.finishReason = s.finishReason;
        options.onToken?.(event);
        events.push(event);
      }
    };

    this.prefill(prompts);
    const lengths = Int32Array.from(prompts, (p) => p.length);
    backend.writeInt(io.positions, lengths, B);
    backend.writeInt(io.keyLens, lengths.map((l) => l + 1), B);
    backend.sample(io.ids, io.logits, io.sampling, io.slots, io.positions, B);
    collect();
    yield* events;

    // decode: every sequence of the batch steps together (finished ones are ignored) so the step is one graph
    const key = `decode:${B}`;
    const decodeStep = () => {
      model.decode(B);
      backend.advance(io.positions, io.keyLens, B);
      backend.sample(io.ids, io.logits, io.sampling, io.slots, io.positions, B);
    };
    while (seqs.some((s) => !s.finishReason)) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      backend.graph(key, decodeStep);
      collect();
      yield* events;
    }
  }

  /** Every prompt token through the model, packed across sequences in chunks; then the first logits. */
  private prefill(prompts: number[][]): void {
    const chunk = this.model.capacity.chunk;
    const step: StepInput = {
      n: 0, outCount: 0, ids: new Int32Array(chunk), positions: new Int32Array(chunk), slots: new Int32Array(chunk),
      outRows: new Int32Array(chunk), outSlots: new Int32Array(chunk),
    };
    const flush = () => {
      this.model.prefill(step);
      step.n = step.outCount = 0;
    };
    prompts.forEach((p, slot) => {
      for (let pos = 0; pos < p.length; pos++) {
        const r = step.n++;
        step.ids[r] = p[pos];
        step.positions[r] = pos;
        step.slots[r] = slot;
        if (pos === p.length - 1) {
          step.outRows[step.outCount] = r;
          step.outSlots[step.outCount++] = slot;
        }
        if (step.n === chunk) flush();
      }
    });
    if (step.n > 0) flush();
    this.model.prefillLogits(prompts.length);
  }
}
