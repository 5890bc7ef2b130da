// Sessions (FasterTransformer's interactive generation, continue_gen): a conversation keeps its tokens
// and their KV-cache blocks between turns, so a turn prefills only the tokens it adds. The blocks go back
// to the pool when the session is closed or garbage-collected, or when the pool needs them for running
// requests (the session's next turn then computes its conversation again).
import { fail } from '../errors.js';
import { checkTokenIds } from '../models/vocab.js';
import type { CallOptions, TextGenerator } from './generation.js';
import type { Carried, GenerationResult, TokenEvent } from './request.js';
import type { Scheduler } from './scheduler.js';

export interface SessionOptions {
  /** tokens the conversation may hold, prompts and replies (default: the generator's max sequence length) */
  maxTokens?: number;
}

/** Blocks of sessions that were garbage-collected go back to their pool. */
const dropped = new FinalizationRegistry<{ scheduler: Scheduler; carried: Carried }>(({ scheduler, carried }) => scheduler.drop(carried));

export class Session {
  private carried: Carried = { tokens: [], blocks: [], computed: 0 };
  private busy = false;
  private closed = false;
  readonly maxTokens: number;
  private readonly token = {};

  constructor(private readonly gen: TextGenerator, options: SessionOptions = {}) {
    const limit = gen.runtime.limits.maxSeqLen;
    const m = options.maxTokens ?? limit;
    if (!Number.isSafeInteger(m) || m < 2 || m > limit) fail('bad-argument', `session max tokens must be a whole number from 2 to ${limit} (the generator's max sequence length), got ${options.maxTokens}`);
    this.maxTokens = m;
    dropped.register(this, { scheduler: gen.scheduler, carried: this.carried }, this.token);
  }

  /** The conversation so far, as token ids. */
  get tokens(): readonly number[] {
    return this.carried.tokens;
  }

  /** Tokens whose keys and values are kept (the rest are computed by the next turn). */
  get cachedTokens(): number {
    return this.carried.computed;
  }

  /** One turn: `input` (text, or token ids) joins the conversation and the reply is generated and kept. */
  async send(input: string | number[], options: CallOptions = {}): Promise<GenerationResult> {
    let result: GenerationResult | undefined;
    for await (const _ of this.turn(input, options, (r) => (result = r))) {
      // events went to onToken
    }
    return result!;
  }

  /** A turn whose tokens stream as they are produced. */
  stream(input: string | number[], options: CallOptions = {}): AsyncGenerator<TokenEvent> {
    return this.turn(input, options);
  }

  private async *turn(input: string | number[], options: CallOptions, done?: (r: GenerationResult) => void): AsyncGenerator<TokenEvent> {
    if (this.closed) fail('bad-request', 'the session is closed');
    if (this.busy) fail('bad-request', 'the session is already generating; wait for its turn to finish');
    const spec = this.gen.checkOptions(options);
    if (spec.beam) fail('bad-argument', 'sessions generate one sequence; num beams must be 1');
    if (spec.promptLogprobs) fail('bad-argument', 'prompt logprobs are not available in a session turn (its earlier tokens are cached); use generate');
    const first = this.carried.tokens.length === 0;
    const ids = typeof input === 'string' ? this.gen.tokenizer.encode(input, first) : input;
    if (ids.length === 0) fail('bad-request', 'the turn is empty; give at least one token');
    checkTokenIds(ids, this.gen.model.info.vocabSize, 'the turn', typeof input === 'string' ? 'text' : 'ids');
    const total = this.carried.tokens.length + ids.length + spec.maxNewTokens;
    if (total > this.maxTokens) {
      fail('bad-request', `the session holds ${this.carried.tokens.length} tokens; this turn's ${ids.length} and ${spec.maxNewTokens} new tokens would make ${total}, beyond its limit of ${this.maxTokens}; start a new session`);
    }
    this.busy = true;
    const before = this.carried.tokens;
    const results: GenerationResult[] = [];
    try {
      yield* this.gen.run([ids], spec, options, typeof input === 'string', results, this.carried, (c) => {
        // a finished turn hands the conversation back (every token, and the blocks of all but the last);
        // a failed one leaves it as it was, less the cache its blocks held
        this.carried.tokens = c ? c.tokens : before;
        this.carried.blocks = c ? c.blocks : [];
        this.carried.computed = c ? c.computed : 0;
        // closed while the turn ran: nothing will use the cache
        if (this.closed) this.gen.scheduler.drop(this.carried);
      });
      done?.(results[0]);
    } finally {
      this.busy = false;
    }
  }

  /** Frees the session's KV-cache blocks (those of a running turn when it ends); later turns are refused. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    dropped.unregister(this.token);
    this.gen.scheduler.drop(this.carried);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
