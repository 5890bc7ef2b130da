// The per-sequence request table the logits and sampling ops read: one row of REQUEST_STRIDE int32 per
// sequence slot, written by the scheduler when a sequence is admitted, so that one captured decode step
// serves a batch of requests with different options. Float fields hold float32 bits. The exact meaning of
// every field is the CPU reference, src/backends/cpu/sampling.ts; kernels/sampling.cu implements the same.

/** What the ops do for a row of this sequence. */
export const MODE = {
  /** a padding row: nothing is processed or drawn, and the row does not move */
  NONE: 0,
  /** draw a token on the device (temperature 0: greedy) */
  SAMPLE: 1,
  /** beam search: processed log-probs and the best candidates go back to the host, which picks the tokens */
  BEAM: 2,
} as const;

export const REQ = {
  MODE: 0,
  /** f32; 0 = greedy */
  TEMPERATURE: 1,
  /** keep the k most likely tokens (ties: lowest ids); 0 = off */
  TOP_K: 2,
  /** f32 in (0, 1]; 1 = off. The starting value of the sequence's runtime top-p */
  TOP_P: 3,
  /** f32 in [0, 1]; keep tokens whose probability is at least min-p times the most likely one's; 0 = off */
  MIN_P: 4,
  /** f32 in (0, 1]: after each drawn token, runtime top-p = max(top-p * decay, TOP_P_MIN); 1 = off */
  TOP_P_DECAY: 5,
  /** f32: the floor of the decayed top-p */
  TOP_P_MIN: 6,
  /** u32: random numbers are uniform(SEED, STREAM, position of the token drawn) (src/ops/rng.ts) */
  SEED: 7,
  STREAM: 8,
  /** f32; 1 = off. Hugging Face's repetition penalty over every token of the history */
  REPETITION: 9,
  /** f32; 0 = off. OpenAI's penalties over the tokens generated since PROMPT_LEN */
  PRESENCE: 10,
  FREQUENCY: 11,
  /** history tokens before this position are the prompt */
  PROMPT_LEN: 12,
  /** end tokens are banned while fewer than MIN_NEW tokens follow PROMPT_LEN */
  MIN_NEW: 13,
  /** LIST holds EOS_COUNT end ids, then RESET_COUNT top-p reset ids, then BAD_INTS ints of bad words */
  EOS_COUNT: 14,
  RESET_COUNT: 15,
  /** bad words as (length, token ids...) runs; a word is banned as a sequence (its last token after the rest) */
  BAD_INTS: 16,
  /** -1: no log-probs; K in 0 .. MAX_TOP_LOGPROBS: the drawn token's log-prob and the K most likely alternatives */
  LOGPROBS: 17,
  /** beam search: candidates per row (2 x beams), at most MAX_CANDIDATES */
  CANDIDATES: 18,
  /** 1 when any of repetition, presence, frequency, bad words, min-new, no-repeat n-grams or forced tokens applies (else scores are the logits) */
  PROCESS: 19,
  /** Hugging Face's no_repeat_ngram_size over the whole history: a token that would repeat an n-gram of it is banned; 0 = off */
  NO_REPEAT_NGRAM: 20,
  /** a token forced as the first generated one (PROMPT_LEN tokens in the history; mBART's language code); -1 = off */
  FORCED_BOS: 21,
  /** a token forced as the last one (at MAX_NEW - 1 generated tokens); -1 = off */
  FORCED_EOS: 22,
  /** the request's max new tokens (read with FORCED_EOS) */
  MAX_NEW: 23,
  LIST: 24,
} as const;

export const LIST_CAPACITY = 488;
export const REQUEST_STRIDE = REQ.LIST + LIST_CAPACITY; // 512 ints, 2 KiB per sequence

/** The most candidates a row can ask for: top-k <= this uses the candidate path; beams <= this / 2. */
export const MAX_CANDIDATES = 64;
export const MAX_TOP_LOGPROBS = 20;
/**
 * int32 per row of Candidates.scratch: up to 32 partial lists of MAX_CANDIDATES (value, id) pairs, then one
 * flag per list's chunk of the row (whether it holds a NaN or +Infinity: selectCandidates' status)
 */
export const CANDIDATE_SCRATCH = 2 * 32 * MAX_CANDIDATES + 32;
/** out row of the logprobs op: the drawn token's log-prob, then (id, log-prob) for each alternative (f32 bits for log-probs) */
export const LOGPROB_STRIDE = 1 + 2 * MAX_TOP_LOGPROBS;

/** How many candidates the selectCandidates op finds for a request row. */
export function candidatesOf(req: Int32Array, o: number, f: Float32Array): number {
  const mode = req[o + REQ.MODE];
  if (mode === MODE.BEAM) return req[o + REQ.CANDIDATES];
  if (mode !== MODE.SAMPLE) return 0;
  if (f[o + REQ.TEMPERATURE] === 0) return 1;
  const k = req[o + REQ.TOP_K];
  return k >= 1 && k <= MAX_CANDIDATES ? k : 0;
}
