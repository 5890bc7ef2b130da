// Sessions (FasterTransformer's interactive generation, continue_gen): a conversation keeps its tokens
// and their KV-cache blocks between turns, so a turn prefills only the tokens it adds. The blocks go back
// to the pool when the session is closed, or when it is garbage-collected.
import { fail } from '../errors.js';
import type { BlockPool } from './blocks.js';
import type { CallOptions, TextGenerator } from './generation.js';
import type { Carried, GenerationResult, TokenEvent } from './request.js';

export interface SessionOptions {
  /** tokens the conversation may hold, prompts and replies (default: the generator's max sequence length) */
  maxTokens?: number;
}

/** Blocks of dropped sessions go back to their pool. */
const dropped = new FinalizationRegistry<{ pool: BlockPool; carried: Carried }>(({ pool, carried }) => {
  for (const b of carried.blocks) pool.release(b);
  carried.blocks = [];
});

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
    dropped.register(this, { pool: gen.scheduler.pool, carried: this.carried }, this.token);
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
    const first = this.carried.tokens.length === 0;
    const ids = typeof input === 'string' ? this.gen.tokenizer.encode(input, first) : input;
    if (ids.length === 0) fail('bad-request', 'the turn is empty; give at least one token');
    const total = this.carried.tokens.length + ids.length + spec.maxNewTokens;
    if (total > this.maxTokens) {
      fail('bad-request', `the session holds ${this.carried.tokens.length} tokens; this turn's ${ids.length} and ${spec.maxNewTokens} new tokens would make ${total}, beyond its limit of ${this.maxTokens}; start a new session`);
    }
    this.busy = true;
    const before = this.carried.tokens;
    const results: GenerationResult[] = [];
    try {
      yield* this.gen.run([ids], spec, options, typeof input === 'string', results, this.carried, (c) => {
        // the turn hands the conversation back: every token, and the blocks of all but the last one
        this.carried.tokens = c ? c.tokens : [...before, ...ids];
        this.carried.blocks = c ? c.blocks : [];
        this.carried.computed = c ? c.computed : 0;
      });
      done?.(results[0]);
    } finally {
      this.busy = false;
    }
  }

  /** Frees the session's KV-cache blocks; later turns are refused. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    dropped.unregister(this.token);
    for (const b of this.carried.blocks) this.gen.scheduler.pool.release(b);
    this.carried.blocks = [];
    this.carried.computed = 0;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
