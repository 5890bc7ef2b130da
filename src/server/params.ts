// OpenAI request fields (and the runtime's own, as vLLM names them) as the runtime's GenerateOptions. Fields
// that would change what is computed in a way Peregrine does not do are refused by name.
import type { GenerateOptions } from '../engine/options.js';
import type { TextGenerator } from '../engine/generation.js';
import { badRequest } from './errors.js';

/** The body fields shared by completions and chat completions (validated by schemas.ts). */
export interface GenerationBody {
  model: string;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  n?: number | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  stop?: string | string[] | null;
  seed?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  logit_bias?: Record<string, number> | null;
  user?: string;
  top_k?: number;
  min_p?: number;
  top_p_decay?: number;
  top_p_min?: number;
  top_p_reset_ids?: number[];
  repetition_penalty?: number;
  min_tokens?: number;
  ignore_eos?: boolean;
  stop_token_ids?: number[];
  bad_words?: string[];
  num_beams?: number;
  length_penalty?: number;
  early_stopping?: boolean | 'never';
  diversity_rate?: number;
  truncate?: 'left' | 'right';
}

const given = <T>(v: T | null | undefined): v is T => v !== undefined && v !== null;

/**
 * The runtime options of one choice. OpenAI's defaults hold where the body is silent: temperature 1 and top-p 1
 * (sampling), where the library's default is greedy. `maxTokens` is the resolved max_tokens.
 */
export function generateOptions(b: GenerationBody, gen: TextGenerator, maxTokens: number, topLogprobs: number | null): GenerateOptions {
  const o: GenerateOptions = {
    maxNewTokens: maxTokens,
    temperature: b.temperature ?? 1,
    topP: b.top_p ?? undefined,
    presencePenalty: b.presence_penalty ?? undefined,
    frequencyPenalty: b.frequency_penalty ?? undefined,
    seed: b.seed ?? undefined,
    stop: typeof b.stop === 'string' ? [b.stop] : b.stop ?? undefined,
    topK: b.top_k, minP: b.min_p, topPDecay: b.top_p_decay, topPMin: b.top_p_min, topPResetIds: b.top_p_reset_ids,
    repetitionPenalty: b.repetition_penalty, minNewTokens: b.min_tokens, badWords: b.bad_words,
    lengthPenalty: b.length_penalty, earlyStopping: b.early_stopping, diversityRate: b.diversity_rate, truncate: b.truncate,
  };
  if (topLogprobs !== null) {
    o.logprobs = true;
    o.topLogprobs = topLogprobs;
  }
  if (b.ignore_eos) {
    if (b.stop_token_ids?.length) throw badRequest('ignore_eos cannot be combined with stop_token_ids (both decide which end tokens stop a sequence)', 'ignore_eos');
    o.stopAtEos = false;
  }
  if (b.stop_token_ids?.length) o.eosTokenId = [...new Set([...gen.eosTokenIds, ...b.stop_token_ids])];
  if (given(b.logit_bias)) {
    // OpenAI: "-100 should result in a ban"; other biases would need a per-token logit offset the runtime does not have
    const banned: number[][] = [];
    for (const [k, v] of Object.entries(b.logit_bias)) {
      if (!/^\d+$/.test(k)) throw badRequest(`logit_bias keys must be token ids, got ${JSON.stringify(k)}`, 'logit_bias');
      if (v !== -100) throw badRequest(`logit_bias ${v} for token ${k} is not supported: Peregrine applies only -100, which bans the token`, 'logit_bias');
      banned.push([Number(k)]);
    }
    if (banned.length) o.badWordsIds = banned;
  }
  const beams = b.num_beams ?? 1;
  if (beams > 1) {
    // beam search is deterministic: the n best beams are the n choices
    o.numBeams = beams;
    o.numReturnSequences = b.n ?? 1;
    if (b.temperature === undefined || b.temperature === null) o.temperature = undefined;
    if (b.stream) throw badRequest('stream cannot be combined with num_beams: beams are only known when the search ends', 'stream');
  }
  return o;
}

/** How many requests a body makes per prompt: n, except under beam search (one search returns the n best). */
export function requestsPerPrompt(b: GenerationBody): number {
  return (b.num_beams ?? 1) > 1 ? 1 : b.n ?? 1;
}
