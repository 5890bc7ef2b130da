// Text generation: every call (generate, stream, a session's turn), from anywhere, becomes requests to the
// generator's one scheduler, so concurrent calls share the running batch and each gets exactly the tokens
// it would get alone.
import { fail, PeregrineError } from '../errors.js';
import type { CausalRuntime } from '../runtime/causal.js';
import { checkTokenIds } from '../models/vocab.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { checkOptions, type GenerateOptions, type RequestSpec } from './options.js';
import { Request, type Carried, type GenerationResult, type RequestSink, type TokenEvent } from './request.js';
import { Scheduler } from './scheduler.js';
import { withDefaults } from './seq2seq-defaults.js';
import { Session, type SessionOptions } from './session.js';
import { encodeWithin } from './truncate.js';

export type { GenerateOptions } from './options.js';
export type { FinishReason, GenerationResult, TokenEvent, TopLogprob, BeamSequence } from './request.js';

export interface CallOptions extends GenerateOptions {
  /** called for every generated token, as it is produced */
  onToken?: (event: TokenEvent) => void;
  /** aborting cancels the call's sequences (their blocks are freed) and rejects with the signal's reason */
  signal?: AbortSignal;
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new PeregrineError('bad-request', 'the request was aborted');
}

/** An async queue of events that ends with the results, or an error. */
class Collector {
  private events: TokenEvent[] = [];
  private wake: (() => void) | null = null;
  failed: Error | null = null;
  readonly results: (GenerationResult | undefined)[];
  private pending: number;

  constructor(count: number, private readonly onToken?: (e: TokenEvent) => void) {
    this.results = new Array(count);
    this.pending = count;
  }

  /** The sink of request `index`. */
  sinkFor(index: number): RequestSink {
    return { token: (e) => this.token(e), done: (r) => this.done(r, index), error: (err) => this.error(err) };
  }

  token(e: TokenEvent): void {
    this.onToken?.(e);
    this.events.push(e);
    this.notify();
  }

  done(r: GenerationResult, index: number): void {
    this.results[index] = r;
    this.pending--;
    this.notify();
  }

  error(err: Error): void {
    this.failed ??= err;
    this.notify();
  }

  get finished(): boolean {
    return this.pending === 0 || this.failed !== null;
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Waits for events (or the end). */
  async next(): Promise<TokenEvent[]> {
    while (this.events.length === 0 && !this.finished) await new Promise<void>((resolve) => (this.wake = resolve));
    const out = this.events;
    this.events = [];
    return out;
  }
}

export class TextGenerator {
  readonly scheduler: Scheduler;

  /** the options a request leaves out take these (an encoder-decoder's generation config) */
  defaults: GenerateOptions = {};

  /** `swapSpace`: host bytes for the caches of preempted requests (default 4 GiB) */
  constructor(readonly runtime: CausalRuntime, readonly tokenizer: Tokenizer, readonly eosTokenIds: number[], swapSpace?: number) {
    this.scheduler = new Scheduler(runtime, tokenizer, swapSpace);
  }

  get model() {
    return this.runtime.model;
  }

  /** an encoder-decoder model's encoder (its prompts are sources; the decoder starts from decoder_start_token_id) */
  get seq2seq() {
    return this.model.seq2seq ?? null;
  }

  /**
   * Tokenizes prompts, refusing empty ones and ids the model has no embeddings for; with `spec.truncate`, a prompt is
   * cut to leave room for its new tokens (an encoder-decoder's source: to the encoder's length).
   */
  encodePrompts(prompts: string[], spec?: RequestSpec): number[][] {
    if (!Array.isArray(prompts) || prompts.length === 0) fail('bad-request', 'no prompts given; pass at least one prompt');
    const memory = this.runtime.encoderMemory;
    const limit = memory ? memory.limits.maxSourceLen : Math.min(this.model.info.maxPositions, this.runtime.limits.maxSeqLen) - (spec?.maxNewTokens ?? 0);
    return prompts.map((p, i) => {
      const which = prompts.length > 1 ? `prompt ${i}` : 'the prompt';
      if (typeof p !== 'string') fail('bad-request', `${which} is not a string`);
      const ids = encodeWithin(this.tokenizer, p, limit, spec?.truncate);
      if (ids.length === 0) fail('bad-request', `${which} is empty; give at least one token of text`);
      checkTokenIds(ids, this.model.info.vocabSize, which, 'text');
      return ids;
    });
  }

  checkOptions(options: GenerateOptions): RequestSpec {
    const spec = checkOptions(withDefaults(options, this.defaults), this.model.info.vocabSize, this.eosTokenIds, this.tokenizer);
    if (!this.seq2seq && (spec.decoderStart !== undefined || spec.sourceLength)) {
      fail('bad-argument', `${spec.decoderStart !== undefined ? 'decoder start token id' : 'max length a / b'} applies to encoder-decoder models; ${this.model.info.architecture} is decoder-only`);
    }
    if (this.seq2seq && spec.promptLogprobs) fail('bad-argument', `prompt logprobs apply to decoder-only models; ${this.model.info.architecture}'s prompt is its encoder's source, which is not predicted`);
    return spec;
  }

  /** Checks token-id prompts against the vocabulary and the generator's limits. */
  checkPrompts(prompts: number[][], spec: RequestSpec, carried = 0): void {
    if (!Array.isArray(prompts) || prompts.length === 0) fail('bad-request', 'no prompts given; pass at least one prompt');
    const V = this.model.info.vocabSize, maxPos = this.model.info.maxPositions;
    for (const [i, p] of prompts.entries()) {
      const which = prompts.length > 1 ? `prompt ${i}` : 'the prompt';
      if (!Array.isArray(p) || p.length === 0) fail('bad-request', `${which} has no tokens`);
      checkTokenIds(p, V, which, 'ids');
      if (this.seq2seq) {
        this.checkDecoder(which, spec);
        this.scheduler.check(1, spec, p.length);
        continue;
      }
      const total = carried + p.length + spec.maxNewTokens;
      if (total > maxPos) {
        fail('bad-request', `${which} has ${carried + p.length} tokens; with ${spec.maxNewTokens} new tokens that is ${total} positions, beyond the model's ${maxPos}; shorten the prompt, ask for fewer new tokens, or truncate it (--truncate)`);
      }
      this.scheduler.check(carried + p.length, spec);
    }
  }

  /** The decoder's positions hold its start token and the new tokens. */
  private checkDecoder(which: string, spec: RequestSpec): void {
    const maxPos = this.model.info.maxPositions;
    if (1 + spec.maxNewTokens > maxPos) fail('bad-request', `${which} asks for ${spec.maxNewTokens} new tokens; the decoder holds ${maxPos - 1} after its start token; ask for fewer new tokens`);
  }

  /**
   * A request of prompt `index`: a decoder-only model continues the prompt; an encoder-decoder encodes it as the
   * source, and its decoder starts from decoder_start_token_id.
   */
  private request(index: number, prompt: number[], spec: RequestSpec, sink: RequestSink, withText: boolean, carried?: Carried, onRelease?: (c: Carried | null) => void): Request {
    const s2s = this.seq2seq;
    const sl = spec.sourceLength;
    if (s2s && sl) {
      const most = Math.max(1, Math.min(spec.maxNewTokens, Math.floor(sl.a * prompt.length + sl.b)));
      spec = { ...spec, maxNewTokens: most, minNewTokens: Math.min(spec.minNewTokens, most) };
    }
    const r = new Request(index, s2s ? [spec.decoderStart ?? s2s.decoderStart] : prompt, spec, sink, withText ? this.tokenizer : null, carried ?? null, onRelease ?? null);
    if (s2s) r.source = prompt;
    return r;
  }

  /** Streams the tokens of every prompt as they are produced (events of different prompts interleave). */
  async *stream(prompts: string | string[], options: CallOptions = {}): AsyncGenerator<TokenEvent> {
    const spec = this.checkOptions(options);
    yield* this.run(this.encodePrompts(typeof prompts === 'string' ? [prompts] : prompts, spec), spec, options, true);
  }

  async generate(prompt: string, options?: CallOptions): Promise<GenerationResult>;
  async generate(prompts: string[], options?: CallOptions): Promise<GenerationResult[]>;
  async generate(prompts: string | string[], options: CallOptions = {}): Promise<GenerationResult | GenerationResult[]> {
    const spec = this.checkOptions(options);
    const results = await this.collect(this.encodePrompts(typeof prompts === 'string' ? [prompts] : prompts, spec), spec, options, true);
    return typeof prompts === 'string' ? results[0] : results;
  }

  /** Generation from token ids (events and results carry no text). */
  async generateIds(prompts: number[][], options: CallOptions = {}): Promise<GenerationResult[]> {
    return this.collect(prompts, this.checkOptions(options), options, false);
  }

  /** Streaming from token ids (no text). */
  streamIds(prompts: number[][], options: CallOptions = {}): AsyncGenerator<TokenEvent> {
    return this.run(prompts, this.checkOptions(options), options, false);
  }

  /** Frees the generator's memory (and its backend's); running requests fail. */
  dispose(): void {
    this.runtime.dispose();
    this.runtime.backend.dispose();
  }

  /** A conversation whose KV cache stays between turns, so each turn prefills only its new tokens. */
  session(options: SessionOptions = {}): Session {
    if (this.seq2seq) fail('bad-request', `${this.model.info.architecture} is an encoder-decoder model; it translates or summarizes each input on its own and has no chat sessions`);
    return new Session(this, options);
  }

  /**
   * Runs token-id prompts under a spec `checkOptions` returned, to the end: tokens (with text when `withText`)
   * go to `options.onToken` as they come, without passing through an iterator (what a server does per choice).
   */
  runToEnd(prompts: number[][], spec: RequestSpec, options: CallOptions, withText = true): Promise<GenerationResult[]> {
    return this.collect(prompts, spec, options, withText);
  }

  /** Runs the prompts to the end: tokens go to onToken as they come, without passing through an iterator. */
  private async collect(prompts: number[][], spec: RequestSpec, options: CallOptions, withText: boolean): Promise<GenerationResult[]> {
    this.checkPrompts(prompts, spec);
    const signal = options.signal;
    if (signal?.aborted) throw abortError(signal);
    const results: GenerationResult[] = new Array(prompts.length);
    let pending = prompts.length;
    let requests: Request[] = [];
    let fail: (err: Error) => void = () => {};
    const done = new Promise<void>((resolve, reject) => {
      fail = (err: Error) => {
        for (const r of requests) r.cancel(err);
        reject(err);
      };
      requests = prompts.map((p, i) => this.request(i, p, spec, {
        token: (e) => options.onToken?.(e),
        done: (r) => {
          results[i] = r;
          if (--pending === 0) resolve();
        },
        error: fail,
      }, withText));
    });
    const abort = () => fail(abortError(signal!));
    signal?.addEventListener('abort', abort, { once: true });
    try {
      for (const r of requests) this.scheduler.submit(r);
      await done;
      return results;
    } finally {
      signal?.removeEventListener('abort', abort);
    }
  }

  /**
   * Submits one request per prompt and yields their events; breaking out of the loop, or aborting the
   * signal, cancels what is still running.
   */
  async *run(prompts: number[][], spec: RequestSpec, options: CallOptions, withText: boolean, results?: GenerationResult[],
    carried?: Carried, onRelease?: (c: Carried | null) => void): AsyncGenerator<TokenEvent> {
    this.checkPrompts(prompts, spec, carried?.tokens.length ?? 0);
    const signal = options.signal;
    if (signal?.aborted) throw abortError(signal);
    const collector = new Collector(prompts.length, options.onToken);
    const requests = prompts.map((p, i) => this.request(i, p, spec, collector.sinkFor(i), withText, carried, onRelease));
    const abort = () => {
      for (const r of requests) r.cancel(abortError(signal!));
    };
    signal?.addEventListener('abort', abort, { once: true });
    try {
      for (const r of requests) this.scheduler.submit(r);
      for (;;) {
        const events = await collector.next();
        if (collector.failed) throw collector.failed;
        yield* events;
        if (collector.finished && events.length === 0) break;
      }
      if (collector.failed) throw collector.failed;
      if (results) results.push(...(collector.results as GenerationResult[]));
    } finally {
      signal?.removeEventListener('abort', abort);
      // a consumer that stopped early (or an error) cancels whatever still runs
      for (const r of requests) r.cancel(new PeregrineError('bad-request', 'the stream was closed'));
    }
  }
}
