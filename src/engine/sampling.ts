// Sampling options: validation, and packing into the rows the backend's sample op reads
// (the op itself, and the exact definition of top-k / top-p, are in backends/cpu/sampling.ts).
import { fail } from '../errors.js';
import { SAMPLING_FIELDS } from '../ops/backend.js';

export interface SamplingOptions {
  /** 0 means greedy. Default: 1 when topK or topP is set, else 0 (greedy). */
  temperature?: number;
  /** keep the k most likely tokens; 0 = off */
  topK?: number;
  /** keep the smallest set of most likely tokens whose probability reaches p; 1 = off */
  topP?: number;
  /** seeds the sampler (0 .. 2^32-1): the same seed gives the same tokens */
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
  if (!(Number.isSafeInteger(seed) && seed >= 0 && seed < 2 ** 32)) fail('bad-argument', `seed must be a whole number from 0 to 4294967295, got ${seed}`);
  const t = temperature ?? (topK > 0 || topP < 1 ? 1 : 0);
  return { greedy: t === 0, temperature: t, topK, topP, seed };
}

/** The same parameters for `rows` rows, as the sample op reads them. */
export function packSampling(p: SamplingParams, rows: number): Int32Array {
  const out = new Int32Array(rows * SAMPLING_FIELDS);
  const f = new Float32Array(out.buffer);
  for (let i = 0; i < rows; i++) {
    out[i * SAMPLING_FIELDS] = p.topK;
    out[i * SAMPLING_FIELDS + 1] = p.seed | 0;
    f[i * SAMPLING_FIELDS + 2] = p.greedy ? 0 : p.temperature;
    f[i * SAMPLING_FIELDS + 3] = p.topP;
  }
  return out;
}
