// The generation defaults an encoder-decoder checkpoint ships (generation_config.json, else config.json), as
// Hugging Face's generate() applies them: the options a request leaves out take these values. mBART forces its
// target language code, BART summarizers set beams, lengths and no_repeat_ngram_size, Marian bans <pad>.
import { ConfigReader } from '../models/config.js';
import type { GenerateOptions } from './options.js';

/** Defaults from a generation config; `decoderStart` is the model's own decoder_start_token_id. */
export function seq2seqDefaults(raw: Record<string, unknown>, where: string): GenerateOptions {
  const c = new ConfigReader(raw, where);
  const out: GenerateOptions = {};
  const one = (key: string) => {
    const ids = c.tokenIds(key);
    return ids.length === 1 ? ids[0] : undefined;
  };
  const forcedBos = one('forced_bos_token_id'), forcedEos = one('forced_eos_token_id'), start = one('decoder_start_token_id');
  if (forcedBos !== undefined) out.forcedBosTokenId = forcedBos;
  if (forcedEos !== undefined) out.forcedEosTokenId = forcedEos;
  if (start !== undefined) out.decoderStartTokenId = start;
  const ngram = c.optionalInt('no_repeat_ngram_size');
  if (ngram) out.noRepeatNgramSize = ngram;
  const bad = raw.bad_words_ids;
  if (Array.isArray(bad) && bad.every((w) => Array.isArray(w) && w.every((x) => Number.isSafeInteger(x)))) out.badWordsIds = bad as number[][];
  // max_length and min_length count the decoder's start token
  const maxLength = c.optionalInt('max_length'), minLength = c.optionalInt('min_length');
  if (maxLength && maxLength > 1) out.maxNewTokens = maxLength - 1;
  if (minLength && minLength > 1) out.minNewTokens = minLength - 1;
  const beams = c.optionalInt('num_beams');
  if (beams && beams > 1) {
    out.numBeams = beams;
    const lp = raw.length_penalty, es = raw.early_stopping;
    if (typeof lp === 'number' && Number.isFinite(lp)) out.lengthPenalty = lp;
    if (es === true || es === false || es === 'never') out.earlyStopping = es;
  }
  return out;
}

/** The request's options over the defaults: beam settings apply only to a request that samples or picks no decoding of its own. */
export function withDefaults(o: GenerateOptions, d: GenerateOptions): GenerateOptions {
  const own = o.numBeams !== undefined || o.temperature !== undefined || o.topK !== undefined || o.topP !== undefined || o.minP !== undefined
    || o.logprobs !== undefined || o.topLogprobs !== undefined;
  const base = own ? { ...d, numBeams: undefined, lengthPenalty: undefined, earlyStopping: undefined } : d;
  const merged: GenerateOptions = { ...base };
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (merged as Record<string, unknown>)[k] = v;
  if (merged.minNewTokens !== undefined && merged.maxNewTokens !== undefined && o.minNewTokens === undefined) merged.minNewTokens = Math.min(merged.minNewTokens, merged.maxNewTokens);
  return merged;
}
