// BERT's forward pass as Hugging Face's BertModel / BertForSequenceClassification define it, in float64, for
// one sequence, reading every config field that changes the computation (naive-gpt2.ts does GPT-2).
import { add, attention, dense, HF_ACT, layerNorm } from './naive-ops.js';

export interface NaiveBertOutput {
  /** last hidden states [token][hidden] */
  hidden: Float64Array[];
  /** classification logits when the weights have a classifier */
  logits: Float64Array | null;
}

/** `prefix`: "bert." for a ...ForSequenceClassification checkpoint, "" for BertModel. */
export function naiveBert(config: Record<string, unknown>, weights: Map<string, Float32Array>, ids: number[], prefix = ''): NaiveBertOutput {
  const w = (name: string) => {
    const t = weights.get(name.startsWith('classifier') ? name : prefix + name);
    if (!t) throw new Error(`no weight ${name}`);
    return t;
  };
  const H = config.hidden_size as number, heads = config.num_attention_heads as number, layers = config.num_hidden_layers as number;
  const eps = (config.layer_norm_eps as number | undefined) ?? 1e-12;
  const act = HF_ACT[(config.hidden_act as string | undefined) ?? 'gelu'];
  const tok = w('embeddings.word_embeddings.weight'), pos = w('embeddings.position_embeddings.weight'), types = w('embeddings.token_type_embeddings.weight');
  let x: Float64Array[] = ids.map((id, t) => layerNorm(Float64Array.from({ length: H }, (_, i) => tok[id * H + i] + pos[t * H + i] + types[i]),
    w('embeddings.LayerNorm.weight'), w('embeddings.LayerNorm.bias'), eps));
  for (let l = 0; l < layers; l++) {
    const p = `encoder.layer.${l}.`;
    const proj = (name: string) => x.map((r) => dense(r, w(`${p}attention.self.${name}.weight`), w(`${p}attention.self.${name}.bias`)));
    const ctx = attention(proj('query'), proj('key'), proj('value'), heads, 1 / Math.sqrt(H / heads), () => ids.length);
    const mid = x.map((r, t) => layerNorm(add(dense(ctx[t], w(p + 'attention.output.dense.weight'), w(p + 'attention.output.dense.bias')), r),
      w(p + 'attention.output.LayerNorm.weight'), w(p + 'attention.output.LayerNorm.bias'), eps));
    x = mid.map((r) => {
      const f = dense(r, w(p + 'intermediate.dense.weight'), w(p + 'intermediate.dense.bias')).map(act);
      return layerNorm(add(dense(f, w(p + 'output.dense.weight'), w(p + 'output.dense.bias')), r), w(p + 'output.LayerNorm.weight'), w(p + 'output.LayerNorm.bias'), eps);
    });
  }
  let logits: Float64Array | null = null;
  if (weights.has('classifier.weight')) {
    const pooled = dense(x[0], w('pooler.dense.weight'), w('pooler.dense.bias')).map(Math.tanh);
    logits = dense(pooled, w('classifier.weight'), w('classifier.bias'));
  }
  return { hidden: x, logits };
}
