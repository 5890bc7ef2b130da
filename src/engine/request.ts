// Requests as the scheduler holds them: one prompt with its options, the sequences that carry it (one, or
// a beam group), what it has generated so far, and where its events go.
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import type { RequestSpec } from './options.js';
import { TextStream } from './text.js';

export type FinishReason = 'length' | 'eos' | 'stop';

export interface TopLogprob {
  id: number;
  logprob: number;
  /** the token's text (when the generator has a tokenizer) */
  text?: string;
}

export interface TokenEvent {
  /** which prompt of the call */
  index: number;
  id: number;
  /** text that became final with this token (may be '' while a character is incomplete or a stop string may start) */
  text: string;
  /** the token's log-probability under the model's raw distribution (with logprobs) */
  logprob?: number;
  /** the most likely tokens at this step (with topLogprobs) */
  topLogprobs?: TopLogprob[];
  /** set on a sequence's last event */
  finishReason?: FinishReason;
}

export interface BeamSequence {
  ids: number[];
  text: string;
  /** the beam's score: sum of log-probs / length ^ length penalty */
  score: number;
}

export interface GenerationResult {
  ids: number[];
  text: string;
  finishReason: FinishReason;
  logprobs?: number[];
  cumLogprob?: number;
  topLogprobs?: TopLogprob[][];
  /** with promptLogprobs: each prompt token's log-prob given the tokens before it (null for the first) */
  promptLogprobs?: (number | null)[];
  /** with promptLogprobs and topLogprobs: the alternatives at each prompt position (empty for the first) */
  promptTopLogprobs?: TopLogprob[][];
  /** beam search: the numReturnSequences best beams, best first */
  sequences?: BeamSequence[];
}

export interface RequestSink {
  token(e: TokenEvent): void;
  done(r: GenerationResult): void;
  error(err: Error): void;
}

/** A sequence of tokens with its KV blocks; `slot` is its row of the device tables while it runs. */
export class Sequence {
  slot = -1;
  /** tokens whose keys and values are in the cache (positions 0 .. computed - 1) */
  computed = 0;
  blocks: number[] = [];
  /** blocks whose table entries the device has */
  uploaded = 0;
  /** the chain hash of each full block, in order (the prefix cache's names) */
  hashes: string[] = [];
  /** the sampler's runtime top-p (mirrors the device) */
  topP: number;

  constructor(public tokens: number[], topP: number) {
    this.topP = Math.fround(topP);
  }

  get length(): number {
    return this.tokens.length;
  }
}

/** A preempted sequence's cache, kept in host memory until the request runs again. */
export interface Swapped {
  /** the cache of its first `blocks` blocks (every layer) */
  data: Uint8Array;
  blocks: number;
  /** positions whose keys and values it holds */
  computed: number;
}

/** What a session hands a turn: its tokens and the blocks that hold them. */
export interface Carried {
  tokens: number[];
  blocks: number[];
  computed: number;
}

let nextId = 0;

export class Request {
  readonly id = nextId++;
  readonly seqs: Sequence[] = [];
  /** slots held for the beams of a beam group */
  readonly reserved: number[] = [];
  cancelled: Error | null = null;
  /** set while preempted with its cache swapped out */
  swapped: Swapped | null = null;
  /** generated so far (kept across preemption) */
  readonly generated: number[] = [];
  readonly logprobs: number[] = [];
  readonly topLogprobs: TopLogprob[][] = [];
  /** with promptLogprobs: by prompt position (filled as prefill passes compute them; null for position 0) */
  readonly promptLogprobs: (number | null)[];
  readonly promptTop: TopLogprob[][];
  /** prompt positions (after the first) whose log-prob no pass has computed yet */
  private unscored: number;
  readonly text: TextStream | null;
  /** tokens before generation (the prompt, after a session's earlier turns) */
  promptLen: number;
  /** an encoder-decoder request's source tokens (the prompt is then the decoder's start) */
  source: number[] | null = null;
  /** the blocks of its encoder memory while it runs */
  memoryBlocks: number[] = [];

  constructor(
    readonly index: number,
    readonly prompt: number[],
    readonly spec: RequestSpec,
    readonly sink: RequestSink,
    readonly tokenizer: Tokenizer | null,
    /** a session turn: the session's earlier tokens and blocks, and where they go back */
    readonly carried: Carried | null = null,
    readonly onRelease: ((c: Carried | null) => void) | null = null,
  ) {
    this.text = tokenizer ? new TextStream(tokenizer, spec.stop) : null;
    this.promptLogprobs = spec.promptLogprobs ? new Array<number | null>(prompt.length).fill(null) : [];
    this.promptTop = spec.promptLogprobs ? Array.from({ length: prompt.length }, () => []) : [];
    this.unscored = spec.promptLogprobs ? prompt.length - 1 : 0;
    this.promptLen = (carried?.tokens.length ?? 0) + prompt.length;
  }

  /** Whether some prompt position still needs its log-prob (its prefill rows are then scored, none taken from the cache). */
  get scoringPrompt(): boolean {
    return this.unscored > 0;
  }

  /** Records the log-prob of prompt position `position` (1 ..) and its alternatives. */
  scored(position: number, logprob: number, top: TopLogprob[] | null): void {
    if (this.promptLogprobs[position] === null) this.unscored--;
    this.promptLogprobs[position] = logprob;
    if (top) this.promptTop[position] = top;
  }

  /** The tokens a (re)started sequence holds: earlier turns, the prompt, and what was generated. */
  allTokens(): number[] {
    return [...(this.carried?.tokens ?? []), ...this.prompt, ...this.generated];
  }

  cancel(reason: Error): void {
    if (!this.cancelled) this.cancelled = reason;
  }
}
