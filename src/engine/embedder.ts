// Sentence embeddings, hidden states, sequence and token classification, and masked-token filling over an
// encoder model, from texts (through the tokenizer) or from token ids (checkpoints without tokenizer files).
import { fail } from '../errors.js';
import { checkTokenIds } from '../models/vocab.js';
import type { EncodeWants, EncoderRuntime, Pooling } from '../runtime/encoder.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { checkTruncate, encodeWithin, type TruncateSide } from './truncate.js';

export type { Pooling };
export const POOLINGS: Pooling[] = ['cls', 'mean', 'max'];

export interface EmbedOptions {
  /**
   * 'cls': the first token's last hidden state; 'mean': the mean over the sequence; 'max': the elementwise
   * maximum (default: the sentence-transformers Pooling module's mode, else mean)
   */
  pooling?: Pooling;
  /** scale each vector to unit L2 norm (default: whether a sentence-transformers Normalize module follows) */
  normalize?: boolean;
  /** a text too long for the model's positions is cut: 'right' keeps its start (default: refused) */
  truncate?: TruncateSide;
}

export interface ClassifyOptions {
  /** as in EmbedOptions */
  truncate?: TruncateSide;
}

export interface FillMaskOptions extends ClassifyOptions {
  /** predictions per mask, best first (default 5) */
  topK?: number;
  /** fillMaskIds: the mask token's id (default: the tokenizer's mask_token) */
  maskTokenId?: number;
}

/** What a directory sets for embed (sentence-transformers' modules) when the call does not say. */
export interface EmbedDefaults {
  pooling?: Pooling;
  normalize?: boolean;
  /** tokens a text is cut to or refused beyond, when fewer than the model's positions (sentence_bert_config.json) */
  maxTokens?: number;
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

/** One token's label (token classification), as Hugging Face's token-classification pipeline gives it without aggregation. */
export interface TokenLabel {
  /** the token's position in the input's ids */
  index: number;
  id: number;
  /** the vocabulary's string for the token (when there is a tokenizer) */
  token?: string;
  label: string;
  /** the softmax probability of `label` */
  score: number;
}

export interface MaskPrediction {
  id: number;
  /** the token decoded (when there is a tokenizer) */
  token?: string;
  /** its softmax probability at the mask */
  score: number;
}

/** The predictions for one mask token of an input. */
export interface MaskFill {
  /** the mask's position in the input's ids */
  index: number;
  predictions: MaskPrediction[];
}

type Ids = ArrayLike<number>[];

export class Embedder {
  /**
   * @param tok       null for a checkpoint without tokenizer files: only the ...Ids methods work
   * @param where     the model directory, for the message when there is no tokenizer
   */
  constructor(readonly model: EncoderRuntime, private readonly tok: Tokenizer | null, readonly problemType?: ProblemType,
    readonly defaults: EmbedDefaults = {}, private readonly where = 'this model') {}

  /** The tokenizer; fails for a checkpoint loaded without tokenizer files. */
  get tokenizer(): Tokenizer {
    if (this.tok === null) fail('file-missing', `${this.where} has no tokenizer.json, so it takes token ids only; pass ids (embedIds, classifyIds, classifyTokenIds, fillMaskIds) or add the tokenizer files`);
    return this.tok;
  }

  /** Token ids per text, with the tokenizer's special tokens ([CLS] ... [SEP]); cut to the model's positions with `truncate`. */
  encodeTexts(texts: string[], truncate?: TruncateSide): Int32Array[] {
    if (!Array.isArray(texts) || texts.length === 0) fail('bad-request', 'no inputs given; pass at least one text');
    const { maxPositions, vocabSize } = this.model.info;
    const maxPos = Math.min(maxPositions, this.defaults.maxTokens ?? Infinity);
    const side = checkTruncate(truncate);
    const tokenizer = this.tokenizer;
    return texts.map((t, i) => {
      if (typeof t !== 'string') fail('bad-request', `input ${i} is not a string`);
      const ids = encodeWithin(tokenizer, t, maxPos, side);
      if (ids.length === 0) fail('bad-request', `input ${i} produced no tokens`);
      if (ids.length > maxPos) fail('bad-request', `input ${i} has ${ids.length} tokens, beyond the model's ${maxPos} ${maxPos < maxPositions ? 'tokens (max_seq_length in sentence_bert_config.json)' : 'positions'}; shorten it, or truncate it (--truncate)`);
      checkTokenIds(ids, vocabSize, `input ${i}`, 'text');
      return Int32Array.from(ids);
    });
  }

  /** Token-id inputs as the runtime takes them (the runtime checks their lengths and ids). */
  private idInputs(seqs: Ids): Int32Array[] {
    if (!Array.isArray(seqs) || seqs.length === 0) fail('bad-request', 'no inputs given; pass at least one sequence of token ids');
    return seqs.map((s, i) => {
      if (s === null || typeof s !== 'object' || typeof s.length !== 'number') fail('bad-request', `input ${i} is not a list of token ids`);
      checkTokenIds(s, this.model.info.vocabSize, `input ${i}`, 'ids');
      return Int32Array.from(s);
    });
  }

  /** Frees the embedder's memory (and its backend's). */
  dispose(): void {
    this.model.dispose();
    this.model.backend.dispose();
  }

  embed(texts: string[], options: EmbedOptions = {}): Float32Array[] {
    const pooling = this.pooling(options);
    return this.embedSeqs(this.encodeTexts(texts, options.truncate), pooling, options);
  }

  /** embed() over token ids (special tokens included, as the model takes them). */
  embedIds(seqs: Ids, options: Omit<EmbedOptions, 'truncate'> = {}): Float32Array[] {
    return this.embedSeqs(this.idInputs(seqs), this.pooling(options), options);
  }

  private pooling(options: EmbedOptions): Pooling {
    const pooling = options.pooling ?? this.defaults.pooling ?? 'mean';
    if (!POOLINGS.includes(pooling)) fail('bad-argument', `pooling must be ${POOLINGS.join(', ')}, got ${JSON.stringify(pooling)}`);
    return pooling;
  }

  private embedSeqs(seqs: Int32Array[], pooling: Pooling, options: EmbedOptions): Float32Array[] {
    const H = this.model.info.hidden;
    const out = this.model.encode(seqs, { pooling, hidden: false });
    const normalize = options.normalize ?? this.defaults.normalize ?? false;
    return seqs.map((_, i) => {
      const v = out.pooled!.slice(i * H, (i + 1) * H);
      if (normalize) l2normalize(v);
      return v;
    });
  }

  /** The last hidden state of every token, one [tokens, hidden] array per text. */
  hiddenStates(texts: string[]): Float32Array[] {
    return this.hiddenStatesIds(this.encodeTexts(texts));
  }

  hiddenStatesIds(seqs: Ids): Float32Array[] {
    const H = this.model.info.hidden;
    const out = this.model.encode(this.idInputs(seqs), {});
    return out.starts.map((s, i) => out.hidden.slice(s * H, (s + out.lengths[i]) * H));
  }

  classify(texts: string[], options: ClassifyOptions = {}): Classification[] {
    this.model.checkTask('sequence-classification');
    return this.classifySeqs(this.encodeTexts(texts, options.truncate));
  }

  /** classify() over token ids. */
  classifyIds(seqs: Ids): Classification[] {
    this.model.checkTask('sequence-classification');
    return this.classifySeqs(this.idInputs(seqs));
  }

  private classifySeqs(seqs: Int32Array[]): Classification[] {
    const L = this.model.numLabels;
    const out = this.model.encode(seqs, { classify: true, hidden: false });
    return seqs.map((_, i) => {
      const logits = Array.from(out.logits!.subarray(i * L, (i + 1) * L));
      const scores = this.scores(logits);
      return { label: this.model.labels[scores.indexOf(Math.max(...scores))], scores, logits };
    });
  }

  /** Each token's label (the tokenizer's special tokens left out, as Hugging Face's pipeline does), per text. */
  classifyTokens(texts: string[], options: ClassifyOptions = {}): TokenLabel[][] {
    this.model.checkTask('token-classification');
    const tok = this.tokenizer;
    const labels = this.tokenLabels(this.encodeTexts(texts, options.truncate));
    return labels.map((row) => row.filter((t) => !tok.isSpecial(t.id)).map((t) => ({ index: t.index, id: t.id, token: tok.tokenText(t.id), label: t.label, score: t.score })));
  }

  /** Every token's label, per sequence of ids. */
  classifyTokenIds(seqs: Ids): TokenLabel[][] {
    this.model.checkTask('token-classification');
    return this.tokenLabels(this.idInputs(seqs));
  }

  private tokenLabels(seqs: Int32Array[]): TokenLabel[][] {
    const L = this.model.numLabels;
    const out = this.tokenLogits(seqs, true);
    return seqs.map((s, i) => Array.from(s, (id, index) => {
      const row = out.logits.subarray((out.starts[i] + index) * L, (out.starts[i] + index + 1) * L);
      const probs = softmax(Array.from(row));
      const best = probs.indexOf(Math.max(...probs));
      return { index, id, label: this.model.labels[best], score: probs[best] };
    }));
  }

  private tokenLogits(seqs: Int32Array[], rows: boolean | number[]) {
    const out = this.model.encode(seqs, { tokens: rows, hidden: false } satisfies EncodeWants);
    return { logits: out.tokenLogits!, starts: out.starts };
  }

  /** The topK most likely tokens at each mask token of each text (Hugging Face's fill-mask pipeline). */
  fillMask(texts: string[], options: FillMaskOptions = {}): MaskFill[][] {
    this.model.checkTask('masked-lm');
    const mask = this.tokenizer.specialId('mask_token');
    const text = this.tokenizer.specialToken('mask_token');
    if (mask === undefined) fail('bad-config', `the tokenizer of ${this.where} names no mask_token in tokenizer_config.json; fill-mask needs one`);
    const seqs = this.encodeTexts(texts, options.truncate);
    seqs.forEach((ids, i) => {
      if (options.truncate && text !== undefined && !ids.includes(mask) && texts[i].includes(text)) {
        const keep = options.truncate === 'left' ? 'end' : 'start';
        fail('bad-request', `input ${i} is longer than the model's positions, and truncating it (--truncate ${options.truncate}, which keeps the ${keep}) cut away its mask token ${text}; shorten the text around the mask, or truncate from the other side`);
      }
    });
    const fills = this.fill(seqs, mask, options.topK, `the mask token ${text}`);
    return fills.map((f) => f.map((m) => ({ ...m, predictions: m.predictions.map((p) => ({ id: p.id, token: this.tokenizer.decode([p.id], false), score: p.score })) })));
  }

  /** fillMask() over token ids; the mask is options.maskTokenId, else the tokenizer's mask_token. */
  fillMaskIds(seqs: Ids, options: Omit<FillMaskOptions, 'truncate'> = {}): MaskFill[][] {
    this.model.checkTask('masked-lm');
    let mask = options.maskTokenId;
    if (mask === undefined) {
      if (this.tok === null) fail('bad-argument', `${this.where} has no tokenizer to name its mask token; pass maskTokenId`);
      mask = this.tok.specialId('mask_token');
      if (mask === undefined) fail('bad-argument', `the tokenizer of ${this.where} names no mask_token; pass maskTokenId`);
    }
    if (!Number.isSafeInteger(mask) || mask < 0 || mask >= this.model.info.vocabSize) fail('bad-argument', `maskTokenId must be a token id from 0 to ${this.model.info.vocabSize - 1}, got ${JSON.stringify(mask)}`);
    return this.fill(this.idInputs(seqs), mask, options.topK, `the mask token id ${mask}`);
  }

  private fill(seqs: Int32Array[], mask: number, topK = 5, what: string): MaskFill[][] {
    const V = this.model.info.vocabSize;
    if (!Number.isSafeInteger(topK) || topK < 1) fail('bad-argument', `top-k must be a whole number >= 1, got ${JSON.stringify(topK)}`);
    const rows: number[] = [];
    const where: { input: number; index: number }[] = [];
    let start = 0;
    seqs.forEach((s, i) => {
      const before = rows.length;
      s.forEach((id, index) => {
        if (id !== mask) return;
        rows.push(start + index);
        where.push({ input: i, index });
      });
      if (rows.length === before) fail('bad-request', `input ${i} has no mask token; put ${what} where a token should be predicted`);
      start += s.length;
    });
    const out = this.tokenLogits(seqs, rows);
    const fills: MaskFill[][] = seqs.map(() => []);
    where.forEach(({ input, index }, r) => {
      const probs = softmax(Array.from(out.logits.subarray(r * V, (r + 1) * V)));
      const order = topIndices(probs, Math.min(topK, V));
      fills[input].push({ index, predictions: order.map((id) => ({ id, score: probs[id] })) });
    });
    return fills;
  }

  /** What Hugging Face's text-classification pipeline applies to the logits: none for regression, sigmoid for multi-label or one label, else softmax. */
  private scores(logits: number[]): number[] {
    if (this.problemType === 'regression') return logits;
    if (this.problemType === 'multi_label_classification' || logits.length === 1) return logits.map((x) => 1 / (1 + Math.exp(-x)));
    return softmax(logits);
  }
}

function softmax(logits: number[]): number[] {
  // not Math.max(...logits): a vocabulary of 250k would overflow the call's arguments
  const max = logits.reduce((a, b) => (b > a ? b : a), -Infinity);
  const exps = logits.map((x) => Math.exp(x - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

/** The indices of the k largest values, largest first (ties: the lower index first). */
function topIndices(values: number[], k: number): number[] {
  return values.map((v, i) => [v, i]).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, k).map(([, i]) => i);
}

export function l2normalize(v: Float32Array): void {
  let ss = 0;
  for (let i = 0; i < v.length; i++) ss += v[i] * v[i];
  const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
  for (let i = 0; i < v.length; i++) v[i] *= inv;
}
