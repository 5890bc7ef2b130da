// GPT-2's forward pass as Hugging Face's GPT2LMHeadModel defines it, in float64, one token row at a time,
// reading every config field that changes the computation: the reference the config tests hold the op set to.
import { add, attention, conv1d, HF_ACT, layerNorm } from './naive-ops.js';

type Weights = Map<string, Float32Array>;

/** Logits [position][vocab] of `ids` under the config and weights (HF names, Conv1D [in, out], head tied to wte). */
export function naiveGpt2Logits(config: Record<string, unknown>, weights: Weights, ids: number[]): Float64Array[] {
  const w = (name: string) => {
    const t = weights.get(name);
    if (!t) throw new Error(`no weight ${name}`);
    return t;
  };
  const H = config.n_embd as number, heads = config.n_head as number, layers = config.n_layer as number, V = config.vocab_size as number;
  const eps = (config.layer_norm_epsilon as number | undefined) ?? 1e-5;
  const act = HF_ACT[(config.activation_function as string | undefined) ?? 'gelu_new'];
  const scaleWeights = (config.scale_attn_weights as boolean | undefined) ?? true;
  const byLayer = (config.scale_attn_by_inverse_layer_idx as boolean | undefined) ?? false;
  const wte = w('wte.weight'), wpe = w('wpe.weight');
  let x: Float64Array[] = ids.map((id, t) => Float64Array.from({ length: H }, (_, i) => wte[id * H + i] + wpe[t * H + i]));
  for (let l = 0; l < layers; l++) {
    const p = `h.${l}.`;
    const qkv = x.map((r) => conv1d(layerNorm(r, w(p + 'ln_1.weight'), w(p + 'ln_1.bias'), eps), w(p + 'attn.c_attn.weight'), w(p + 'attn.c_attn.bias')));
    const part = (i: number) => qkv.map((r) => r.slice(i * H, (i + 1) * H));
    const scale = (scaleWeights ? 1 / Math.sqrt(H / heads) : 1) / (byLayer ? l + 1 : 1);
    const attn = attention(part(0), part(1), part(2), heads, scale, (t) => t + 1);
    x = x.map((r, t) => add(r, conv1d(attn[t], w(p + 'attn.c_proj.weight'), w(p + 'attn.c_proj.bias'))));
    x = x.map((r) => {
      const f = conv1d(layerNorm(r, w(p + 'ln_2.weight'), w(p + 'ln_2.bias'), eps), w(p + 'mlp.c_fc.weight'), w(p + 'mlp.c_fc.bias')).map(act);
      return add(r, conv1d(f, w(p + 'mlp.c_proj.weight'), w(p + 'mlp.c_proj.bias')));
    });
  }
  return x.map((r) => {
    const f = layerNorm(r, w('ln_f.weight'), w('ln_f.bias'), eps);
    return Float64Array.from({ length: V }, (_, v) => {
      let s = 0;
      for (let i = 0; i < H; i++) s += f[i] * wte[v * H + i];
      return s;
    });
  });
}

function argmax(x: Float64Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** `steps` greedy tokens after `ids`, each from a full forward over the sequence so far. */
export function naiveGpt2Greedy(config: Record<string, unknown>, weights: Weights, ids: number[], steps: number): number[] {
  const seq = [...ids];
  for (let s = 0; s < steps; s++) seq.push(argmax(naiveGpt2Logits(config, weights, seq).at(-1)!));
  return seq.slice(ids.length);
}
