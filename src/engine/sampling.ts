// Choosing the next token from a row of logits: greedy, or sampling with temperature, top-k and top-p
// (applied in that order, as Hugging Face does). The reference for the GPU samplers.
import { fail } from '../errors.js';

export interface SamplingOptions {
  /** 0 means greedy. Default: 1 when topK or topP is set, else 0 (greedy). */
  temperature?: number;
  /** keep the k most likely tokens; 0 = off */
  topK?: number;
  /** keep the smallest set of most likely tokens whose probability reaches p; 1 = off */
  topP?: number;
  /** seeds the sampler: the same seed gives the same tokens */
  seed?: number;
}

export interface SamplingParams {
  greedy: boolean;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
}

export function samplingParams(o: SamplingOptions): SamplingParams {
  const { temperature, topK = 0, topP = 1, seed = 0 } = o;
  if (temperature !== undefined && !(Number.isFinite(temperature) && temperature >= 0)) {
    fail('bad-argument', `temperature must be a number >= 0 (0 is greedy), got ${temperature}`);
  }
  if (!(Number.isSafeInteger(topK) && topK >= 0)) fail('bad-argument', `top-k must be a whole number >= 0 (0 turns it off), got ${topK}`);
  if (!(Number.isFinite(topP) && topP > 0 && topP <= 1)) fail('bad-argument', `top-p must be in (0, 1] (1 turns it off), got ${topP}`);
  if (!(Number.isSafeInteger(seed) && seed >= 0)) fail('bad-argument', `seed must be a whole number >= 0, got ${seed}`);
  const t = temperature ?? (topK > 0 || topP < 1 ? 1 : 0);
  return { greedy: t === 0, temperature: t, topK, topP, seed };
}

export function argmax(logits: Float32Array, offset: number, V: number): number {
  let best = 0;
  let max = -Infinity;
  for (let i = 0; i < V; i++) {
    const x = logits[offset + i];
    if (x > max) {
      max = x;
      best = i;
    }
  }
  return best;
}

/** Samples from logits[offset .. offset + V); scratch arrays are the sampler's own, sized once. */
export class Sampler {
  private readonly idx: Int32Array;
  private readonly prob: Float64Array;

  constructor(readonly vocab: number) {
    this.idx = new Int32Array(vocab);
    this.prob = new Float64Array(vocab);
  }

  sample(logits: Float32Array, offset: number, p: SamplingParams, rand: () => number): number {
    const V = this.vocab;
    if (p.greedy) return argmax(logits, offset, V);
    const idx = this.idx, prob = this.prob;
    const max = logits[offset + argmax(logits, offset, V)];
    // candidates: with top-k, the k largest; otherwise every token, narrowed below for top-p
    let n = V;
    for (let i = 0; i < V; i++) idx[i] = i;
    if (p.topK > 0 && p.topK < V) n = selectTop(idx, logits, offset, V, p.topK);
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const e = Math.exp((logits[offset + idx[i]] - max) / p.temperature);
      prob[i] = e;
      sum += e;
    }
    if (p.topP < 1) {
      n = nucleus(idx, prob, n, sum, p.topP);
      sum = 0;
      for (let i = 0; i < n; i++) sum += prob[i];
    }
    let r = rand() * sum;
    for (let i = 0; i < n; i++) {
      r -= prob[i];
      if (r < 0) return idx[i];
    }
    return idx[n - 1];
  }
}

/** Moves the k largest logits' ids to idx[0..k) (any order). Quickselect, O(V). */
function selectTop(idx: Int32Array, logits: Float32Array, offset: number, V: number, k: number): number {
  let lo = 0, hi = V - 1;
  while (lo < hi) {
    const pivot = logits[offset + idx[(lo + hi) >> 1]];
    let i = lo, j = hi;
    while (i <= j) {
      while (logits[offset + idx[i]] > pivot) i++;
      while (logits[offset + idx[j]] < pivot) j--;
      if (i <= j) {
        const t = idx[i]; idx[i] = idx[j]; idx[j] = t;
        i++; j--;
      }
    }
    if (k - 1 <= j) hi = j;
    else if (k - 1 >= i) lo = i;
    else break;
  }
  return k;
}

/**
 * Keeps, in idx/prob[0..), the most likely tokens until their mass reaches topP of `sum` (at least one),
 * sorted by probability. Only tokens above a threshold are sorted: lowering the threshold until the kept
 * mass reaches topP guarantees the nucleus lies among them.
 */
function nucleus(idx: Int32Array, prob: Float64Array, n: number, sum: number, topP: number): number {
  let maxP = 0;
  for (let i = 0; i < n; i++) if (prob[i] > maxP) maxP = prob[i];
  let threshold = maxP / 16;
  for (;;) {
    let mass = 0;
    for (let i = 0; i < n; i++) if (prob[i] >= threshold) mass += prob[i];
    if (mass >= topP * sum || threshold === 0) break;
    threshold = threshold < 1e-30 ? 0 : threshold / 16;
  }
  // compact the candidates to the front
  let m = 0;
  for (let i = 0; i < n; i++) {
    if (prob[i] >= threshold) {
      const ti = idx[i], tp = prob[i];
      idx[i] = idx[m]; prob[i] = prob[m];
      idx[m] = ti; prob[m] = tp;
      m++;
    }
  }
  sortByProb(idx, prob, 0, m - 1);
  let cum = 0;
  let keep = 0;
  while (keep < m) {
    cum += prob[keep];
    keep++;
    if (cum >= topP * sum) break;
  }
  return keep;
}

/** In-place quicksort of idx/prob[lo..hi] by probability, descending; ties by token id. */
function sortByProb(idx: Int32Array, prob: Float64Array, lo: number, hi: number): void {
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const pp = prob[mid], pi = idx[mid];
    let i = lo, j = hi;
    while (i <= j) {
      while (prob[i] > pp || (prob[i] === pp && idx[i] < pi)) i++;
      while (prob[j] < pp || (prob[j] === pp && idx[j] > pi)) j--;
      if (i <= j) {
        const ti = idx[i]; idx[i] = idx[j]; idx[j] = ti;
        const tp = prob[i]; prob[i] = prob[j]; prob[j] = tp;
        i++; j--;
      }
    }
    // recurse into the smaller side, loop on the larger
    if (j - lo < hi - i) {
      sortByProb(idx, prob, lo, j);
      lo = i;
    } else {
      sortByProb(idx, prob, i, hi);
      hi = j;
    }
  }
}
