// Sentence embeddings, hidden states and sequence classification over an encoder model.
import { fail } from '../errors.js';
import { checkTokenIds } from '../models/vocab.js';
import type { EncoderRuntime } from '../runtime/encoder.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { checkTruncate, encodeWithin, type TruncateSide } from './truncate.js';

export type Pooling = 'cls' | 'mean';

export interface EmbedOptions {
  /** 'cls': the first token's last hidden state; 'mean': the mean over the sequence (default) */
  pooling?: Pooling;
  /** scale each vector to unit L2 norm */
  normalize?: boolean;
  /** a text too long for the model's positions is cut: 'right' keeps its start (default: refused) */
  truncate?: TruncateSide;
}

export interface ClassifyOptions {
  /** as in EmbedOptions */
  truncate?: TruncateSide;
}

/** config.json's problem_type, as Hugging Face's text-classification pipeline reads it. */
export type ProblemType = 'single_label_classification' | 'multi_label_classification' | 'regression';
export const PROBLEM_TYPES: ProblemType[] = ['single_label_classification', 'multi_label_classification', 'regression'];

export interface Classification {
  /** the label with the highest score */
  label: string;
  /** the logits (problem_type regression), the sigmoid of each (multi_label_classification, or a single label), else their softmax */
  scores: number[];
  logits: number[];
}

export class Embedder {
  constructor(readonly model: EncoderRuntime, readonly tokenizer: Tokenizer, readonly problemType?: ProblemType) {}

  /** Token ids per text, with the tokenizer's special tokens ([CLS] ... [SEP]); cut to the model's positions with `truncate`. */
  encodeTexts(texts: string[], truncate?: TruncateSide): Int32Array[] {
    if (!Array.isArray(texts) || texts.length === 0) fail('bad-request', 'no inputs given; pass at least one text');
    const { maxPositions: maxPos, vocabSize } = this.model.info;
    const side = checkTruncate(truncate);
    return texts.map((t, i) => {
      if (typeof t !== 'string') fail('bad-request', `input ${i} is not a string`);
      const ids = encodeWithin(this.tokenizer, t, maxPos, side);
      if (ids.length === 0) fail('bad-request', `input ${i} produced no tokens`);
      if (ids.length > maxPos) fail('bad-request', `input ${i} has ${ids.length} tokens, beyond the model's ${maxPos} positions; shorten it, or truncate it (--truncate)`);
      checkTokenIds(ids, vocabSize, `input ${i}`, 'text');
      return Int32Array.from(ids);
    });
  }

  /** Frees the embedder's memory (and its backend's). */
  dispose(): void {
    this.model.dispose();
    this.model.backend.dispose();
  }

  embed(texts: string[], options: EmbedOptions = {}): Float32Array[] {
    const pooling = options.pooling ?? 'mean';
    if (pooling !== 'cls' && pooling !== 'mean') fail('bad-argument', `pooling must be cls or mean, got ${JSON.stringify(pooling)}`);
    const H = this.model.info.hidden;
    const out = this.model.encode(this.encodeTexts(texts, options.truncate), { pooling });
    return texts.map((_, i) => {
      const v = out.pooled!.slice(i * H, (i + 1) * H);
      if (options.normalize) l2normalize(v);
      return v;
    });
  }

  /** The last hidden state of every token, one [tokens, hidden] array per text. */
  hiddenStates(texts: string[]): Float32Array[] {
    const H = this.model.info.hidden;
    const out = this.model.encode(this.encodeTexts(texts), {});
    return out.starts.map((s, i) => out.hidden.slice(s * H, (s + out.lengths[i]) * H));
  }

  classify(texts: string[], options: ClassifyOptions = {}): Classification[] {
    const L = this.model.numLabels;
    if (L === 0) fail('bad-request', `${this.model.info.architecture} has no classification head; use a ...ForSequenceClassification checkpoint`);
    const out = this.model.encode(this.encodeTexts(texts, options.truncate), { classify: true });
    return texts.map((_, i) => {
      const logits = Array.from(out.logits!.subarray(i * L, (i + 1) * L));
      const scores = this.scores(logits);
      return { label: this.model.labels[scores.indexOf(Math.max(...scores))], scores, logits };
    });
  }

  /** What Hugging Face's text-classification pipeline applies to the logits: none for regression, sigmoid for multi-label or one label, else softmax. */
  private scores(logits: number[]): number[] {
    if (this.problemType === 'regression') return logits;
    if (this.problemType === 'multi_label_classification' || logits.length === 1) return logits.map((x) => 1 / (1 + Math.exp(-x)));
    const max = Math.max(...logits);
    const exps = logits.map((x) => Math.exp(x - max));
    const sum = exps.reduce((a, b) => a + b, 0);
    return exps.map((e) => e / sum);
  }
}

export function l2normalize(v: Float32Array): void {
  let ss = 0;
  for (let i = 0; i < v.length; i++) ss += v[i] * v[i];
  const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
  for (let i = 0; i < v.length; i++) v[i] *= inv;
}
