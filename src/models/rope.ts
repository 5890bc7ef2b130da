// Rotary position embedding parameters from a Llama-family config: rope_theta and rope_scaling (Hugging Face
// transformers 4.x spelling) or rope_parameters (5.x). Each pair's rate is computed here once, in fp32 step by
// step as transformers' modeling_rope_utils computes it, so that angles match Hugging Face's to the last bit
// where fp32 allows. Supported rope types: default, linear, dynamic (NTK), llama3, yarn; others are refused.
import { fail, show } from '../errors.js';

const f = Math.fround;

export interface RopeSpec {
  /** [dims / 2] rates of the pairs */
  invFreq: Float32Array;
  dims: number;
  /** cos/sin factor (YaRN's attention factor) */
  scale: number;
  dynamic: { base: number; factor: number; original: number } | null;
  /** positions the model can take: max_position_embeddings, times the factor under dynamic scaling */
  maxPositions: number;
}

type Params = Record<string, unknown>;

function num(p: Params, key: string, where: string, fallback?: number): number {
  const v = p[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    return fail('bad-config', `${where}: rope scaling field "${key}" is missing; fix config.json`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail('bad-config', `${where}: rope scaling field "${key}" must be a positive number, got ${show(v)}; fix config.json`);
  return v;
}

/** 1 / theta^(2i / dims) for i < dims / 2, in fp32 as torch computes it. */
function defaultRates(theta: number, dims: number): Float32Array {
  return Float32Array.from({ length: dims / 2 }, (_, i) => f(1 / f(theta ** f((2 * i) / dims))));
}

/** The rope parameters of a config (`raw`), for heads of `headDim` and `maxPositions` positions. */
export function readRope(raw: Record<string, unknown>, headDim: number, maxPositions: number, where: string): RopeSpec {
  const nested = raw.rope_parameters ?? raw.rope_scaling;
  if (nested !== undefined && nested !== null && (typeof nested !== 'object' || Array.isArray(nested))) {
    fail('bad-config', `${where}: field "${raw.rope_parameters !== undefined ? 'rope_parameters' : 'rope_scaling'}" must be an object, got ${show(nested)}; fix config.json`);
  }
  const p: Params = { ...((nested as Params | null) ?? {}) };
  const theta = num(p, 'rope_theta', where, num(raw, 'rope_theta', where, 10000));
  const partial = num(p, 'partial_rotary_factor', where, num(raw, 'partial_rotary_factor', where, 1));
  if (partial !== 1) fail('unsupported-config', `${where}: partial_rotary_factor ${partial} is not supported (Llama-family attention turns every dimension of a head); this checkpoint cannot run on Peregrine`);
  const type = p.rope_type ?? p.type ?? 'default';
  const dims = headDim;
  if (dims % 2 !== 0) fail('bad-config', `${where}: the head size ${dims} is odd; rotary embeddings pair dimensions`);
  const base = defaultRates(theta, dims);
  const spec: RopeSpec = { invFreq: base, dims, scale: 1, dynamic: null, maxPositions };
  switch (type) {
    case 'default':
      return spec;
    case 'linear': {
      const factor = num(p, 'factor', where);
      return { ...spec, invFreq: base.map((x) => f(x / factor)) };
    }
    case 'dynamic': {
      const factor = num(p, 'factor', where);
      return { ...spec, dynamic: { base: theta, factor, original: maxPositions }, maxPositions: Math.floor(maxPositions * factor) };
    }
    case 'llama3':
      return { ...spec, invFreq: llama3Rates(base, p, where) };
    case 'yarn':
      return yarn(spec, theta, p, maxPositions, where);
    default:
      return fail('unsupported-config', `${where}: rope type ${show(type)} is not supported (Peregrine computes default, linear, dynamic, llama3 and yarn); this checkpoint cannot run on Peregrine`);
  }
}

function llama3Rates(base: Float32Array, p: Params, where: string): Float32Array {
  const factor = num(p, 'factor', where), low = num(p, 'low_freq_factor', where), high = num(p, 'high_freq_factor', where);
  const old = num(p, 'original_max_position_embeddings', where);
  const lowWavelen = old / low, highWavelen = old / high;
  return base.map((inv) => {
    const wavelen = f((2 * Math.PI) / inv);
    if (wavelen < highWavelen) return inv;
    if (wavelen > lowWavelen) return f(inv / factor);
    const smooth = f(f(f(old / wavelen) - low) / (high - low));
    return f(f(f(f(1 - smooth) * inv) / factor) + f(smooth * inv));
  });
}

function yarn(spec: RopeSpec, theta: number, p: Params, maxPositions: number, where: string): RopeSpec {
  const dims = spec.dims;
  const original = num(p, 'original_max_position_embeddings', where);
  const factor = num(p, 'factor', where, maxPositions / original);
  const mscale = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
  let attention = p.attention_factor === undefined || p.attention_factor === null ? undefined : num(p, 'attention_factor', where);
  if (attention === undefined) {
    const m = p.mscale as number | undefined, mAll = p.mscale_all_dim as number | undefined;
    attention = m && mAll ? mscale(factor, m) / mscale(factor, mAll) : mscale(factor);
  }
  const fast = (p.beta_fast as number | undefined) || 32, slow = (p.beta_slow as number | undefined) || 1;
  const truncate = p.truncate === undefined ? true : p.truncate !== false;
  const correction = (rotations: number) => (dims * Math.log(original / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
  let lo = correction(fast), hi = correction(slow);
  if (truncate) {
    lo = Math.floor(lo);
    hi = Math.ceil(hi);
  }
  lo = Math.max(lo, 0);
  hi = Math.min(hi, dims - 1);
  if (lo === hi) hi += 0.001;
  const invFreq = Float32Array.from({ length: dims / 2 }, (_, i) => {
    const pos = f(theta ** f((2 * i) / dims));
    const extra = f(1 / pos), inter = f(1 / f(factor * pos));
    const ramp = Math.min(1, Math.max(0, f(f(i - lo) / f(hi - lo))));
    const keep = f(1 - ramp); // the share of extrapolation
    return f(f(inter * f(1 - keep)) + f(extra * keep));
  });
  return { ...spec, invFreq, scale: attention };
}

/** The rates divided pair by pair by `factors` (GGUF's rope_freqs tensor, as llama.cpp applies it). */
export function divideRates(spec: RopeSpec, factors: Float32Array): RopeSpec {
  if (factors.length !== spec.invFreq.length) throw new Error(`internal: ${factors.length} rope factors for ${spec.invFreq.length} pairs`);
  return { ...spec, invFreq: spec.invFreq.map((x, i) => f(x / factors[i])) };
}
