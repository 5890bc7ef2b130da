// Logits to tokens, the reference definition that kernels/sampling.cu implements. Each row belongs to a
// sequence slot whose request row (src/ops/requests.ts) says what to do:
//
// processLogits: scores = logits (beam rows: log-softmax of the logits), then, in this order,
//   repetition penalty p over every distinct token t of the history: s[t] = s[t] < 0 ? s[t] * p : s[t] / p;
//   frequency f and presence q over the tokens generated since PROMPT_LEN (count c > 0): s[t] = (s[t] - f*c) - q;
//   bad words: a word of one token is always banned; a longer word bans its last token when the history
//   ends with the rest of it; end tokens are banned while fewer than MIN_NEW tokens were generated
//   (banned: -Infinity). Arithmetic is float32, step by step.
// selectCandidates: the k best scores of a row, by value, ties to the lowest id (k: beams x 2, top-k,
//   or 1 for greedy); and the row's status: 1 when it holds a NaN or +Infinity, else 0.
// sample: temperature 0 takes the best candidate. Otherwise the kept tokens are the top-k candidates (or
//   the k best of the row for k > MAX_CANDIDATES, or every token), with p_i = exp((s_i - max) / T); the
//   runtime top-p keeps p_i >= t, t the largest threshold whose kept mass reaches top-p of the total;
//   min-p keeps p_i >= min-p (the most likely token has p = 1). r = u * (kept mass), with
//   u = uniform(SEED, STREAM, position drawn), is walked through the kept tokens in id order. After the
//   draw the runtime top-p becomes TOP_P again if the token is a reset id, else max(top-p * decay, TOP_P_MIN).
// logprobs: log-softmax of the raw logits at the drawn token, and the K best raw logits as (id, log-prob).
import { uniform } from '../../ops/rng.js';
import { LIST_CAPACITY, LOGPROB_STRIDE, MAX_CANDIDATES, MODE, REQ, REQUEST_STRIDE, candidatesOf } from '../../ops/requests.js';

/** The sequence tables and row tensors of one call, as CPU arrays. */
export interface SeqArrays {
  requests: Int32Array;
  /** float view of requests */
  requestsF: Float32Array;
  history: Int32Array;
  maxSeq: number;
  topP: Float32Array;
}

const f32 = Math.fround;

export function processLogits(scores: Float32Array, logits: Float32Array, V: number, slots: Int32Array, lengths: Int32Array,
  t: SeqArrays, n: number, seen: Uint8Array): void {
  for (let r = 0; r < n; r++) {
    const o = slots[r] * REQUEST_STRIDE, req = t.requests, rf = t.requestsF;
    const mode = req[o + REQ.MODE];
    if (mode === MODE.NONE) continue;
    const x = scores.subarray(r * V, (r + 1) * V);
    x.set(logits.subarray(r * V, (r + 1) * V));
    if (mode === MODE.BEAM) logSoftmax(x);
    if (!req[o + REQ.PROCESS]) continue;
    const L = lengths[r];
    const hist = t.history.subarray(slots[r] * t.maxSeq, slots[r] * t.maxSeq + L);
    const promptLen = Math.min(req[o + REQ.PROMPT_LEN], L);
    const rep = rf[o + REQ.REPETITION];
    if (rep !== 1) {
      seen.fill(0);
      for (const tok of hist) {
        if (seen[tok]) continue;
        seen[tok] = 1;
        x[tok] = x[tok] < 0 ? f32(x[tok] * rep) : f32(x[tok] / rep);
      }
    }
    const freq = rf[o + REQ.FREQUENCY], presence = rf[o + REQ.PRESENCE];
    if (freq !== 0 || presence !== 0) {
      const counts = new Map<number, number>();
      for (let i = promptLen; i < L; i++) counts.set(hist[i], (counts.get(hist[i]) ?? 0) + 1);
      for (const [tok, c] of counts) x[tok] = f32(f32(x[tok] - f32(freq * c)) - presence);
    }
    const ngram = req[o + REQ.NO_REPEAT_NGRAM];
    if (ngram > 0) banRepeatedNgrams(x, hist, ngram);
    const list = req.subarray(o + REQ.LIST, o + REQ.LIST + LIST_CAPACITY);
    const eosCount = req[o + REQ.EOS_COUNT], resetCount = req[o + REQ.RESET_COUNT], badInts = req[o + REQ.BAD_INTS];
    for (let i = eosCount + resetCount; i < eosCount + resetCount + badInts;) {
      const m = list[i];
      if (endsWith(hist, list, i + 1, m - 1)) x[list[i + m]] = -Infinity;
      i += 1 + m;
    }
    if (L - promptLen < req[o + REQ.MIN_NEW]) for (let i = 0; i < eosCount; i++) x[list[i]] = -Infinity;
    const bos = req[o + REQ.FORCED_BOS], eos = req[o + REQ.FORCED_EOS];
    if (bos >= 0 && L === promptLen) force(x, bos);
    else if (eos >= 0 && L - promptLen === req[o + REQ.MAX_NEW] - 1) force(x, eos);
  }
}

/** Every score -Infinity but the token's, which is 0 (Hugging Face's forced BOS and EOS processors). */
function force(x: Float32Array, id: number): void {
  x.fill(-Infinity);
  x[id] = 0;
}

/**
 * Hugging Face's NoRepeatNGramLogitsProcessor: the token after every earlier occurrence of the history's last
 * n - 1 tokens is banned, so that no n-gram appears twice.
 */
function banRepeatedNgrams(x: Float32Array, hist: Int32Array, n: number): void {
  const L = hist.length;
  if (L + 1 < n) return;
  for (let i = 0; i + n <= L; i++) {
    let same = true;
    for (let j = 0; j < n - 1 && same; j++) same = hist[i + j] === hist[L - n + 1 + j];
    if (same) x[hist[i + n - 1]] = -Infinity;
  }
}

/** Whether hist ends with the m tokens list[at .. at + m). */
function endsWith(hist: Int32Array, list: Int32Array, at: number, m: number): boolean {
  if (m > hist.length) return false;
  for (let i = 0; i < m; i++) if (hist[hist.length - m + i] !== list[at + i]) return false;
  return true;
}

/** x = x - logsumexp(x), in place. */
export function logSoftmax(x: Float32Array): void {
  const lse = logSumExp(x);
  for (let i = 0; i < x.length; i++) x[i] = x[i] - lse;
}

export function logSumExp(x: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i] > max) max = x[i];
  if (max === -Infinity) return max;
  let s = 0;
  for (let i = 0; i < x.length; i++) s += Math.exp(x[i] - max);
  return max + Math.log(s);
}

/** The k best entries of x (value descending, ties to the lowest id) into vals/ids. */
export function topK(x: Float32Array, k: number, vals: Float32Array, ids: Int32Array): void {
  const V = x.length;
  k = Math.min(k, V);
  if (k > MAX_CANDIDATES) return topKLarge(x, k, vals, ids);
  let have = 0;
  for (let i = 0; i < V; i++) {
    const v = x[i];
    if (have === k && !(v > vals[k - 1])) continue; // not better than the worst kept (later ids lose ties)
    let j = have < k ? have++ : k - 1;
    while (j > 0 && v > vals[j - 1]) {
      vals[j] = vals[j - 1];
      ids[j] = ids[j - 1];
      j--;
    }
    vals[j] = v;
    ids[j] = i;
  }
}

/** topK for large k: the k-th value by a typed sort, then the values above it and the lowest-id ties, sorted. */
function topKLarge(x: Float32Array, k: number, vals: Float32Array, ids: Int32Array): void {
  const V = x.length;
  const kth = Float32Array.from(x).sort()[V - k];
  let above = 0;
  for (let i = 0; i < V; i++) if (x[i] > kth) above++;
  let n = 0, ties = k - above;
  for (let i = 0; i < V && n < k; i++) {
    if (x[i] > kth || (x[i] === kth && ties-- > 0)) ids[n++] = i;
  }
  const order = ids.subarray(0, k).sort((a, b) => x[b] - x[a] || a - b);
  for (let i = 0; i < k; i++) vals[i] = x[order[i]];
}

/** 1 when x holds a NaN or +Infinity (!(v < Infinity) is true for exactly those), else 0. */
export function rowStatus(x: Float32Array): number {
  for (let i = 0; i < x.length; i++) if (!(x[i] < Infinity)) return 1;
  return 0;
}

export function selectCandidates(values: Float32Array, ids: Int32Array, scores: Float32Array, V: number, slots: Int32Array, t: SeqArrays, n: number,
  status: Int32Array): void {
  for (let r = 0; r < n; r++) {
    const o = slots[r] * REQUEST_STRIDE;
    if (t.requests[o + REQ.MODE] === MODE.NONE) continue;
    status[r] = rowStatus(scores.subarray(r * V, (r + 1) * V));
    const k = candidatesOf(t.requests, o, t.requestsF);
    if (k === 0) continue;
    topK(scores.subarray(r * V, (r + 1) * V), k, values.subarray(r * MAX_CANDIDATES, (r + 1) * MAX_CANDIDATES), ids.subarray(r * MAX_CANDIDATES, (r + 1) * MAX_CANDIDATES));
  }
}

export class CpuSampler {
  private prob = new Float64Array(0);
  private sorted = new Float64Array(0);
  private kth = new Float32Array(0);
  private kthIds = new Int32Array(0);

  sample(ids: Int32Array, scores: Float32Array, V: number, candValues: Float32Array, candIds: Int32Array,
    slots: Int32Array, lengths: Int32Array, t: SeqArrays, n: number): void {
    if (this.prob.length < V) {
      this.prob = new Float64Array(V);
      this.sorted = new Float64Array(V);
      this.kth = new Float32Array(V);
      this.kthIds = new Int32Array(V);
    }
    for (let r = 0; r < n; r++) {
      const slot = slots[r], o = slot * REQUEST_STRIDE, req = t.requests, rf = t.requestsF;
      if (req[o + REQ.MODE] !== MODE.SAMPLE) continue;
      const L = lengths[r];
      const T = rf[o + REQ.TEMPERATURE];
      let id: number;
      if (T === 0) {
        id = candIds[r * MAX_CANDIDATES];
      } else {
        const u = uniform(req[o + REQ.SEED] >>> 0, req[o + REQ.STREAM], L);
        id = this.draw(scores.subarray(r * V, (r + 1) * V), candValues, candIds, r, req[o + REQ.TOP_K], T, t.topP[slot], rf[o + REQ.MIN_P], u);
      }
      ids[r] = id;
      if (L < t.maxSeq) t.history[slot * t.maxSeq + L] = id;
      const list = req.subarray(o + REQ.LIST);
      let reset = false;
      for (let i = 0; i < req[o + REQ.RESET_COUNT]; i++) if (list[req[o + REQ.EOS_COUNT] + i] === id) reset = true;
      t.topP[slot] = reset ? rf[o + REQ.TOP_P] : Math.max(f32(t.topP[slot] * rf[o + REQ.TOP_P_DECAY]), rf[o + REQ.TOP_P_MIN]);
    }
  }

  private draw(x: Float32Array, candValues: Float32Array, candIds: Int32Array, r: number, topK: number, T: number, topP: number, minP: number, u: number): number {
    const V = x.length, prob = this.prob;
    prob.fill(0, 0, V);
    // the kept tokens before top-p and min-p
    let max = -Infinity;
    if (topK >= 1 && topK < V) {
      let vals = candValues.subarray(r * MAX_CANDIDATES), ids = candIds.subarray(r * MAX_CANDIDATES);
      if (topK > MAX_CANDIDATES) {
        topK_(x, topK, this.kth, this.kthIds);
        vals = this.kth;
        ids = this.kthIds;
      }
      max = vals[0];
      for (let i = 0; i < topK; i++) prob[ids[i]] = Math.exp((vals[i] - max) / T);
    } else {
      for (let i = 0; i < V; i++) if (x[i] > max) max = x[i];
      for (let i = 0; i < V; i++) prob[i] = Math.exp((x[i] - max) / T);
    }
    let total = 0;
    for (let i = 0; i < V; i++) total += prob[i];
    if (topP < 1) {
      const threshold = nucleusThreshold(prob, V, topP * total, this.sorted);
      for (let i = 0; i < V; i++) if (prob[i] < threshold) prob[i] = 0;
    }
    if (minP > 0) for (let i = 0; i < V; i++) if (prob[i] < minP) prob[i] = 0;
    total = 0;
    for (let i = 0; i < V; i++) total += prob[i];
    let rest = u * total, last = 0;
    for (let i = 0; i < V; i++) {
      if (prob[i] === 0) continue;
      last = i;
      rest -= prob[i];
      if (rest < 0) return i;
    }
    return last;
  }
}

const topK_ = topK;

/** The largest t such that the sum of prob[j] >= t reaches `target`. */
function nucleusThreshold(prob: Float64Array, V: number, target: number, scratch: Float64Array): number {
  let n = 0;
  for (let i = 0; i < V; i++) if (prob[i] > 0) scratch[n++] = prob[i];
  const sorted = scratch.subarray(0, n).sort();
  let mass = 0;
  for (let i = n - 1; i >= 0; i--) {
    mass += sorted[i];
    if (mass >= target) return sorted[i];
  }
  return 0;
}

export function logprobs(out: Int32Array, logits: Float32Array, V: number, ids: Int32Array, slots: Int32Array, t: SeqArrays, n: number,
  vals: Float32Array, top: Int32Array): void {
  const outF = new Float32Array(out.buffer, out.byteOffset, out.length);
  for (let r = 0; r < n; r++) {
    const o = slots[r] * REQUEST_STRIDE;
    const K = t.requests[o + REQ.LOGPROBS];
    if (K < 0 || t.requests[o + REQ.MODE] === MODE.NONE) continue;
    const x = logits.subarray(r * V, (r + 1) * V);
    const lse = logSumExp(x);
    const w = r * LOGPROB_STRIDE;
    outF[w] = x[ids[r]] - lse;
    if (K === 0) continue;
    topK(x, K, vals, top);
    for (let i = 0; i < Math.min(K, V); i++) {
      out[w + 1 + 2 * i] = top[i];
      outF[w + 2 + 2 * i] = vals[i] - lse;
    }
  }
}

export function advance(positions: Int32Array, keyLens: Int32Array, slots: Int32Array, requests: Int32Array, n: number): void {
  for (let r = 0; r < n; r++) {
    if (requests[slots[r] * REQUEST_STRIDE + REQ.MODE] !== MODE.SAMPLE) continue;
    positions[r]++;
    keyLens[r]++;
  }
}
