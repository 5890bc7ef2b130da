// The sampling op: one token per row of logits, chosen by the row's own parameters. This is the exact
// definition the GPU kernel (kernels/sampling.cu) implements:
//   temperature 0: argmax (lowest id among ties);
//   otherwise p_i = exp((l_i - max) / T); top-k keeps logits >= the k-th largest; top-p keeps, among those,
//   p_i >= t where t is the largest threshold whose kept mass reaches topP of the total; then
//   r = u * (kept mass) is walked through the kept tokens in id order. u = uniform(seed, row's stream, counter).
import { uniform } from '../../engine/rng.js';

export class CpuSampler {
  private prob = new Float64Array(0);
  private keys = new Float64Array(0);

  /**
   * ids[i] = token for logits row i; params [n, 4] int32 (float bits for temperature and top-p);
   * streams[i] and counters[i] select the random number (sequence slot and position).
   */
  sample(ids: Int32Array, logits: Float32Array, V: number, params: Int32Array, streams: Int32Array, counters: Int32Array, n: number): void {
    if (this.prob.length < V) {
      this.prob = new Float64Array(V);
      this.keys = new Float64Array(V);
    }
    const f = new Float32Array(params.buffer, params.byteOffset, params.length);
    for (let i = 0; i < n; i++) {
      const o = i * V;
      const topK = params[i * 4], seed = params[i * 4 + 1] >>> 0, temperature = f[i * 4 + 2], topP = f[i * 4 + 3];
      ids[i] = temperature === 0 ? argmax(logits, o, V) : this.draw(logits, o, V, temperature, topK, topP, uniform(seed, streams[i], counters[i]));
    }
  }

  private draw(logits: Float32Array, o: number, V: number, temperature: number, topK: number, topP: number, u: number): number {
    const prob = this.prob;
    const max = logits[o + argmax(logits, o, V)];
    const kth = topK > 0 && topK < V ? kthLargest(logits, o, V, topK, this.keys) : -Infinity;
    let total = 0;
    for (let j = 0; j < V; j++) {
      const l = logits[o + j];
      const p = l >= kth ? Math.exp((l - max) / temperature) : 0;
      prob[j] = p;
      total += p;
    }
    if (topP < 1) {
      const t = nucleusThreshold(prob, V, topP * total, this.keys);
      total = 0;
      for (let j = 0; j < V; j++) {
        if (prob[j] < t) prob[j] = 0;
        total += prob[j];
      }
    }
    let r = u * total;
    let last = 0;
    for (let j = 0; j < V; j++) {
      if (prob[j] === 0) continue;
      last = j;
      r -= prob[j];
      if (r < 0) return j;
    }
    return last;
  }
}

export function argmax(x: Float32Array, offset: number, V: number): number {
  let best = 0;
  let max = -Infinity;
  for (let i = 0; i < V; i++) {
    if (x[offset + i] > max) {
      max = x[offset + i];
      best = i;
    }
  }
  return best;
}

/** The k-th largest of x[offset .. offset + V). */
function kthLargest(x: Float32Array, offset: number, V: number, k: number, scratch: Float64Array): number {
  for (let i = 0; i < V; i++) scratch[i] = x[offset + i];
  return scratch.subarray(0, V).sort().at(V - k)!;
}

/** The largest t such that the sum of prob[j] >= t reaches `target`. */
function nucleusThreshold(prob: Float64Array, V: number, target: number, scratch: Float64Array): number {
  scratch.set(prob.subarray(0, V));
  const sorted = scratch.subarray(0, V).sort();
  let mass = 0;
  for (let i = V - 1; i >= 0; i--) {
    mass += sorted[i];
    if (mass >= target) return sorted[i];
  }
  return 0;
}
