// Perplexity of a causal LM over a text, with Hugging Face's sliding window (the "Perplexity of fixed-length
// models" guide): windows of at most `context` tokens start every `stride` tokens, and each window scores the
// tokens no earlier window scored, with the rest of the window as their context (a window's first token has
// none, so with stride = context one token a window goes unscored, as in the guide); perplexity = exp(mean
// negative log-likelihood over the scored tokens). The windows run as requests with prompt log-probs through the
// generator's scheduler, so they share passes.
import { fail } from '../errors.js';
import type { TextGenerator } from './generation.js';

export interface PerplexityOptions {
  /** tokens per window (default: as many as the model's positions and the generator's sequences allow) */
  context?: number;
  /** tokens between window starts (default: context / 2; at most context) */
  stride?: number;
  /** the call's progress: windows done of all */
  onWindow?: (done: number, total: number) => void;
}

export interface PerplexityResult {
  perplexity: number;
  /** mean negative log-likelihood per scored token, in nats */
  nll: number;
  /** tokens of the text, and those scored (all but the first, unless windows do not overlap) */
  tokens: number;
  scored: number;
  windows: number;
  context: number;
  stride: number;
}

/** One window: tokens [begin, end), scoring the targets from `from` (an index into the window) on. */
export interface Window {
  begin: number;
  end: number;
  from: number;
}

/** The windows over `length` tokens, as Hugging Face's loop makes them. */
export function windows(length: number, context: number, stride: number): Window[] {
  const out: Window[] = [];
  let prevEnd = 0;
  for (let begin = 0; begin < length; begin += stride) {
    const end = Math.min(begin + context, length);
    // the first token of the text has no context, so it is never a target
    out.push({ begin, end, from: Math.max(prevEnd - begin, 1) });
    prevEnd = end;
    if (end === length) break;
  }
  return out;
}

/** The longest window a generator runs: a window and the one token each request generates fit its positions. */
export function maxContext(gen: TextGenerator): number {
  return Math.min(gen.model.info.maxPositions, gen.runtime.limits.maxSeqLen) - 1;
}

/** Perplexity of the model over token ids (at least two). */
export async function perplexity(gen: TextGenerator, ids: number[], options: PerplexityOptions = {}): Promise<PerplexityResult> {
  if (gen.seq2seq) fail('bad-argument', `perplexity needs a decoder-only model; ${gen.model.info.architecture} is an encoder-decoder`);
  if (ids.length < 2) fail('bad-request', `the text has ${ids.length} token${ids.length === 1 ? '' : 's'}; perplexity needs at least two`);
  const limit = maxContext(gen);
  const whole = (v: number | undefined, name: string, max: number): number | undefined => {
    if (v === undefined) return undefined;
    if (!Number.isSafeInteger(v) || v < 2 || v > max) fail('bad-argument', `${name} must be a whole number from 2 to ${max}, got ${v}`);
    return v;
  };
  const context = whole(options.context, 'context', limit) ?? limit;
  const stride = options.stride === undefined ? Math.max(1, context >> 1) : options.stride;
  if (!Number.isSafeInteger(stride) || stride < 1 || stride > context) fail('bad-argument', `stride must be a whole number from 1 to the context (${context}), got ${stride}`);
  const list = windows(ids.length, context, stride);
  let sum = 0, scored = 0, done = 0;
  // windows go to the scheduler in groups, so that a long text does not hold every window's prompt at once
  const group = Math.max(1, gen.runtime.limits.maxBatch);
  for (let first = 0; first < list.length; first += group) {
    const part = list.slice(first, first + group);
    const results = await gen.generateIds(part.map((w) => ids.slice(w.begin, w.end)), { maxNewTokens: 1, stopAtEos: false, promptLogprobs: true, temperature: 0 });
    results.forEach((r, i) => {
      const lps = r.promptLogprobs!;
      for (let t = part[i].from; t < lps.length; t++) {
        sum -= lps[t]!;
        scored++;
      }
    });
    done += part.length;
    options.onWindow?.(done, list.length);
  }
  const nll = sum / scored;
  return { perplexity: Math.exp(nll), nll, tokens: ids.length, scored, windows: list.length, context, stride };
}
