// A request's options: what the library and the CLI accept, their validation (one-line errors that name
// the option), and the request row the device ops read (src/ops/requests.ts).
import { randomInt } from 'node:crypto';
import { fail } from '../errors.js';
import { LIST_CAPACITY, MAX_CANDIDATES, MAX_TOP_LOGPROBS, MODE, REQ, REQUEST_STRIDE } from '../ops/requests.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import { beamsToKeep } from './beam.js';
import { checkTruncate, type TruncateSide } from './truncate.js';

export interface SamplingOptions {
  /** 0 means greedy. Default: 1 when topK, topP or minP is set, else 0 (greedy). */
  temperature?: number;
  /** keep the k most likely tokens; 0 = off */
  topK?: number;
  /** keep the smallest set of most likely tokens whose probability reaches p; 1 = off */
  topP?: number;
  /** FasterTransformer's top-p decay: after each token, top-p = max(top-p * decay, topPMin) (default 1: off) */
  topPDecay?: number;
  /** the floor of the decayed top-p (default 1e-6) */
  topPMin?: number;
  /** tokens after which top-p goes back to its starting value */
  topPResetIds?: number[];
  /** keep tokens at least minP times as likely as the most likely one; 0 = off */
  minP?: number;
  /** seeds the sampler (0 .. 2^32-1): the same seed gives the same tokens; without it, a random seed */
  seed?: number;
}

export interface GenerateOptions extends SamplingOptions {
  /** tokens to generate per prompt (default 32; 0 only scores the prompt, with promptLogprobs) */
  maxNewTokens?: number;
  /** end tokens are not generated before this many tokens (default 0) */
  minNewTokens?: number;
  /** Hugging Face's repetition penalty over prompt and generated tokens (>= 1e-6; 1 = off) */
  repetitionPenalty?: number;
  /** OpenAI's presence penalty over generated tokens (-2 .. 2; 0 = off) */
  presencePenalty?: number;
  /** OpenAI's frequency penalty over generated tokens (-2 .. 2; 0 = off) */
  frequencyPenalty?: number;
  /** words never generated (a word of several tokens is banned as a sequence; as written and after a space) */
  badWords?: string[];
  /** token sequences never generated */
  badWordsIds?: number[][];
  /** stop when the text contains one of these (the stop string is not returned) */
  stop?: string[];
  /** the end tokens, replacing the model's own */
  eosTokenId?: number | number[];
  /** stop a sequence at an end token (default true) */
  stopAtEos?: boolean;
  /** beam search with this many beams (default 1: no beam search) */
  numBeams?: number;
  /** Hugging Face's length penalty: a finished beam scores sum(log-probs) / length^lengthPenalty (default 1) */
  lengthPenalty?: number;
  /** Hugging Face's early stopping: true, false (default) or 'never' */
  earlyStopping?: boolean | 'never';
  /** beams returned per prompt (default 1, at most numBeams) */
  numReturnSequences?: number;
  /** FasterTransformer's beam_search_diversity_rate: a beam's k-th best continuation is ranked by score + rate * k (default 0) */
  diversityRate?: number;
  /** return each generated token's log-probability under the model's raw distribution */
  logprobs?: boolean;
  /** and this many most likely alternatives per step (0 .. 20) */
  topLogprobs?: number;
  /**
   * also return each prompt token's log-probability given the tokens before it (the first token has none),
   * with topLogprobs alternatives; the whole prompt is computed (the prefix cache is not used for it)
   */
  promptLogprobs?: boolean;
  /** Hugging Face's no_repeat_ngram_size: no n-gram of this size occurs twice in a sequence (0 = off) */
  noRepeatNgramSize?: number;
  /** a token forced as the first generated one (mBART's target language code) */
  forcedBosTokenId?: number;
  /** a token forced as the last one, when a sequence reaches its max new tokens */
  forcedEosTokenId?: number;
  /** encoder-decoder models: the decoder's first token (default: the model's decoder_start_token_id) */
  decoderStartTokenId?: number;
  /**
   * encoder-decoder models: at most floor(maxLengthA * source tokens + maxLengthB) new tokens (fairseq's max_len_a
   * and max_len_b), and never more than maxNewTokens
   */
  maxLengthA?: number;
  maxLengthB?: number;
  /** generate/stream: a prompt too long for the model's positions (with maxNewTokens) is cut, 'left' keeping its end, 'right' its start (default: refused) */
  truncate?: TruncateSide;
}

/** A checked request, ready to pack. */
export interface RequestSpec {
  maxNewTokens: number;
  minNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  topPDecay: number;
  topPMin: number;
  topPResetIds: number[];
  minP: number;
  seed: number;
  repetitionPenalty: number;
  presencePenalty: number;
  frequencyPenalty: number;
  badWords: number[][];
  stop: string[];
  eos: number[];
  /** null: no beam search */
  beam: { beams: number; lengthPenalty: number; earlyStopping: boolean | 'never'; returns: number; diversityRate: number } | null;
  /** -1: none; else the number of alternatives */
  logprobs: number;
  /** log-probs of the prompt's tokens too (with max(logprobs, 0) alternatives) */
  promptLogprobs: boolean;
  /** the side a too-long prompt is cut on (none: refused) */
  truncate?: TruncateSide;
  /** 0: off */
  noRepeatNgram: number;
  /** -1: off */
  forcedBos: number;
  forcedEos: number;
  decoderStart?: number;
  /** new tokens at most floor(a * source + b); null: maxNewTokens alone */
  sourceLength: { a: number; b: number } | null;
}

const bad = (msg: string): never => fail('bad-argument', msg);

function num(v: unknown, name: string, ok: (x: number) => boolean, want: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) bad(`${name} must be ${want}, got ${String(v)}`);
  return v as number;
}

function int(v: unknown, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  return num(v, name, (x) => Number.isSafeInteger(x) && x >= min && x <= max, max === Number.MAX_SAFE_INTEGER ? `a whole number >= ${min}` : `a whole number from ${min} to ${max}`);
}

function ids(v: unknown, name: string, vocab: number): number[] {
  const list = Array.isArray(v) ? v : [v];
  for (const x of list) if (!(typeof x === 'number' && Number.isSafeInteger(x) && x >= 0 && x < vocab)) bad(`${name} must be token ids from 0 to ${vocab - 1}, got ${JSON.stringify(v)}`);
  return list as number[];
}

/** Checks every option and resolves the defaults; `eos` are the model's end tokens. */
export function checkOptions(o: GenerateOptions, vocab: number, eos: number[], tokenizer: Tokenizer | null): RequestSpec {
  if (typeof o !== 'object' || o === null) bad('options must be an object');
  const maxNewTokens = o.maxNewTokens === undefined ? 32 : int(o.maxNewTokens, 'max new tokens', 0);
  const minNewTokens = o.minNewTokens === undefined ? 0 : int(o.minNewTokens, 'min new tokens', 0);
  if (minNewTokens > maxNewTokens) bad(`min new tokens (${minNewTokens}) is above max new tokens (${maxNewTokens})`);
  const topK = o.topK === undefined ? 0 : int(o.topK, 'top-k', 0);
  const topP = o.topP === undefined ? 1 : num(o.topP, 'top-p', (x) => x > 0 && x <= 1, 'in (0, 1]');
  const topPDecay = o.topPDecay === undefined ? 1 : num(o.topPDecay, 'top-p decay', (x) => x > 0 && x <= 1, 'in (0, 1]');
  const topPMin = o.topPMin === undefined ? 1e-6 : num(o.topPMin, 'top-p min', (x) => x > 0 && x <= 1, 'in (0, 1]');
  const topPResetIds = o.topPResetIds === undefined ? [] : ids(o.topPResetIds, 'top-p reset ids', vocab);
  const minP = o.minP === undefined ? 0 : num(o.minP, 'min-p', (x) => x >= 0 && x <= 1, 'in [0, 1]');
  if (o.temperature !== undefined) num(o.temperature, 'temperature', (x) => x >= 0, 'a number >= 0 (0 is greedy)');
  const temperature = o.temperature ?? (topK > 0 || topP < 1 || minP > 0 ? 1 : 0);
  const seed = o.seed === undefined ? randomInt(2 ** 32) : int(o.seed, 'seed', 0, 2 ** 32 - 1);
  // a penalty below 1e-6 divides logits past the float range (the request row holds it as f32, where 1e-46 is 0)
  const repetitionPenalty = o.repetitionPenalty === undefined ? 1 : num(o.repetitionPenalty, 'repetition penalty', (x) => x >= 1e-6, 'a number >= 1e-6 (1 is off; below 1 favours repeats)');
  const presencePenalty = o.presencePenalty === undefined ? 0 : num(o.presencePenalty, 'presence penalty', (x) => x >= -2 && x <= 2, 'in [-2, 2]');
  const frequencyPenalty = o.frequencyPenalty === undefined ? 0 : num(o.frequencyPenalty, 'frequency penalty', (x) => x >= -2 && x <= 2, 'in [-2, 2]');
  const stop = o.stop ?? [];
  if (!Array.isArray(stop) || !stop.every((s) => typeof s === 'string' && s.length > 0)) bad('stop must be a list of non-empty strings');
  const badWords = (o.badWordsIds ?? []).map((w) => {
    if (!Array.isArray(w) || w.length === 0) bad('bad words ids must be non-empty lists of token ids');
    return ids(w, 'bad words ids', vocab);
  });
  for (const word of o.badWords ?? []) {
    if (typeof word !== 'string' || word.trim() === '') bad(`bad words must be non-empty strings, got ${JSON.stringify(word)}`);
    if (!tokenizer) bad('bad words need a tokenizer; pass badWordsIds');
    for (const form of new Set([word, ` ${word.trimStart()}`])) {
      const t = tokenizer!.encode(form, false);
      if (t.length > 0 && !badWords.some((w) => w.length === t.length && w.every((x, i) => x === t[i]))) badWords.push(t);
    }
  }
  const stopAtEos = o.stopAtEos ?? true;
  if (typeof stopAtEos !== 'boolean') bad('stopAtEos must be true or false');
  const endIds = o.eosTokenId === undefined ? eos : ids(o.eosTokenId, 'eos token id', vocab);
  // the end tokens that stop this request
  const eosList = stopAtEos ? endIds : [];
  const logprobs = o.topLogprobs !== undefined ? int(o.topLogprobs, 'top logprobs', 0, MAX_TOP_LOGPROBS) : o.logprobs ? 0 : -1;
  if (o.logprobs !== undefined && typeof o.logprobs !== 'boolean') bad('logprobs must be true or false');
  if (o.logprobs === false && o.topLogprobs !== undefined) bad('top logprobs needs logprobs');
  const promptLogprobs = o.promptLogprobs ?? false;
  if (typeof promptLogprobs !== 'boolean') bad('prompt logprobs must be true or false');
  if (maxNewTokens === 0 && !promptLogprobs) bad('max new tokens must be at least 1 (0 only scores a prompt, with prompt logprobs)');

  const beams = o.numBeams === undefined ? 1 : int(o.numBeams, 'num beams', 1, MAX_CANDIDATES / 2);
  let beam: RequestSpec['beam'] = null;
  const beamOnly: [string, unknown][] = [['length penalty', o.lengthPenalty], ['early stopping', o.earlyStopping], ['diversity rate', o.diversityRate]];
  if (beams > 1) {
    for (const [name, v] of [['temperature', o.temperature && o.temperature > 0 ? o.temperature : undefined], ['top-k', o.topK || undefined], ['top-p', o.topP !== undefined && o.topP < 1 ? o.topP : undefined],
      ['min-p', o.minP || undefined], ['top-p decay', o.topPDecay], ['logprobs', logprobs >= 0 ? true : undefined]] as [string, unknown][]) {
      if (v !== undefined) bad(`${name} cannot be combined with num beams (${beams}): beam search is deterministic and returns scores`);
    }
    if (maxNewTokens === 0) bad('beam search needs max new tokens of at least 1');
    const earlyStopping = o.earlyStopping ?? false;
    if (earlyStopping !== true && earlyStopping !== false && earlyStopping !== 'never') bad(`early stopping must be true, false or "never", got ${JSON.stringify(earlyStopping)}`);
    const returns = o.numReturnSequences === undefined ? 1 : int(o.numReturnSequences, 'num return sequences', 1);
    if (returns > beams) bad(`num return sequences (${returns}) is above num beams (${beams})`);
    beam = {
      beams, returns, earlyStopping,
      lengthPenalty: o.lengthPenalty === undefined ? 1 : num(o.lengthPenalty, 'length penalty', () => true, 'a finite number'),
      diversityRate: o.diversityRate === undefined ? 0 : num(o.diversityRate, 'diversity rate', () => true, 'a finite number'),
    };
  } else {
    for (const [name, v] of beamOnly) if (v !== undefined) bad(`${name} applies to beam search; add num beams > 1`);
    if (o.numReturnSequences !== undefined && int(o.numReturnSequences, 'num return sequences', 1) > 1) {
      bad(`num return sequences (${o.numReturnSequences}) is above num beams (1)`);
    }
  }
  if (beam && beamsToKeep(beam.beams, eosList.length) > MAX_CANDIDATES) {
    bad(`num beams (${beam.beams}) with ${eosList.length} end tokens keeps ${beamsToKeep(beam.beams, eosList.length)} continuations per beam, beyond the ${MAX_CANDIDATES} Peregrine selects; use fewer beams`);
  }
  // as transformers does, a bad word that is a single end token is dropped (min new tokens governs end tokens)
  for (let i = badWords.length - 1; i >= 0; i--) if (badWords[i].length === 1 && eosList.includes(badWords[i][0])) badWords.splice(i, 1);
  const listInts = endIds.length + topPResetIds.length + badWords.reduce((a, w) => a + 1 + w.length, 0);
  if (listInts > LIST_CAPACITY) bad(`eos token ids, top-p reset ids and bad words take ${listInts} token slots, beyond the ${LIST_CAPACITY} a request can hold; use fewer bad words`);
  const noRepeatNgram = o.noRepeatNgramSize === undefined ? 0 : int(o.noRepeatNgramSize, 'no repeat ngram size', 0);
  const forced = (v: unknown, name: string) => (v === undefined || v === null ? -1 : ids(v, name, vocab).length === 1 ? (v as number) : bad(`${name} must be one token id`));
  const forcedBos = forced(o.forcedBosTokenId, 'forced bos token id'), forcedEos = forced(o.forcedEosTokenId, 'forced eos token id');
  const decoderStart = o.decoderStartTokenId === undefined ? undefined : ids(o.decoderStartTokenId, 'decoder start token id', vocab)[0];
  let sourceLength: RequestSpec['sourceLength'] = null;
  if (o.maxLengthA !== undefined || o.maxLengthB !== undefined) {
    sourceLength = {
      a: o.maxLengthA === undefined ? 0 : num(o.maxLengthA, 'max length a', (x) => x >= 0, 'a number >= 0'),
      b: o.maxLengthB === undefined ? 0 : num(o.maxLengthB, 'max length b', () => true, 'a finite number'),
    };
  }
  return {
    noRepeatNgram, forcedBos, forcedEos, decoderStart, sourceLength,
    maxNewTokens, minNewTokens, temperature, topK, topP, topPDecay, topPMin, topPResetIds, minP, seed, repetitionPenalty, presencePenalty,
    frequencyPenalty, badWords, stop, eos: eosList, beam, logprobs, promptLogprobs, truncate: checkTruncate(o.truncate),
  };
}

/** Whether the logits processors have anything to do for this request. */
export function processes(s: RequestSpec): boolean {
  return s.repetitionPenalty !== 1 || s.presencePenalty !== 0 || s.frequencyPenalty !== 0 || s.badWords.length > 0 || (s.minNewTokens > 0 && s.eos.length > 0)
    || s.noRepeatNgram > 0 || s.forcedBos >= 0 || s.forcedEos >= 0;
}

/** The request row of one sequence: `promptLen` tokens of its history are prompt; `stream` picks its random numbers. */
export function requestRow(s: RequestSpec, promptLen: number, stream: number): Int32Array {
  const row = new Int32Array(REQUEST_STRIDE);
  const f = new Float32Array(row.buffer);
  row[REQ.MODE] = s.beam ? MODE.BEAM : MODE.SAMPLE;
  f[REQ.TEMPERATURE] = s.temperature;
  row[REQ.TOP_K] = s.topK;
  f[REQ.TOP_P] = s.topP;
  f[REQ.MIN_P] = s.minP;
  f[REQ.TOP_P_DECAY] = s.topPDecay;
  f[REQ.TOP_P_MIN] = s.topPMin;
  row[REQ.SEED] = s.seed | 0;
  row[REQ.STREAM] = stream;
  f[REQ.REPETITION] = s.repetitionPenalty;
  f[REQ.PRESENCE] = s.presencePenalty;
  f[REQ.FREQUENCY] = s.frequencyPenalty;
  row[REQ.PROMPT_LEN] = promptLen;
  row[REQ.MIN_NEW] = s.minNewTokens;
  // prompt log-probs are computed by the logprobs op too, so the row asks for at least the token's own
  row[REQ.LOGPROBS] = s.logprobs >= 0 || !s.promptLogprobs ? s.logprobs : 0;
  row[REQ.CANDIDATES] = s.beam ? beamsToKeep(s.beam.beams, s.eos.length) : 0;
  row[REQ.PROCESS] = processes(s) ? 1 : 0;
  row[REQ.NO_REPEAT_NGRAM] = s.noRepeatNgram;
  row[REQ.FORCED_BOS] = s.forcedBos;
  row[REQ.FORCED_EOS] = s.forcedEos;
  row[REQ.MAX_NEW] = s.maxNewTokens;
  let at: number = REQ.LIST;
  for (const id of s.eos) row[at++] = id;
  for (const id of s.topPResetIds) row[at++] = id;
  for (const w of s.badWords) {
    row[at++] = w.length;
    for (const id of w) row[at++] = id;
  }
  row[REQ.EOS_COUNT] = s.eos.length;
  row[REQ.RESET_COUNT] = s.topPResetIds.length;
  row[REQ.BAD_INTS] = at - REQ.LIST - s.eos.length - s.topPResetIds.length;
  return row;
}

/** The runtime top-p after drawing `id` (the device does the same in float32). */
export function nextTopP(s: RequestSpec, topP: number, id: number): number {
  if (s.topPResetIds.includes(id)) return Math.fround(s.topP);
  return Math.max(Math.fround(topP * Math.fround(s.topPDecay)), Math.fround(s.topPMin));
}
