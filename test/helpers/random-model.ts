// Random-weight Hugging Face model directories (GPT-2, BERT) for tests and benchmarks. The weights are
// drawn from a seeded generator, so a given config always gives the same checkpoint.
import { randomFillSync } from 'node:crypto';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { seededRandom } from '../../src/ops/rng.js';
import { f32ToBf16Bits, f32ToF16Bits } from '../../src/loaders/dtypes.js';
import { writeSafetensors, writeSafetensorsStreaming, type TensorToWrite } from '../../src/loaders/safetensors-write.js';

export interface RandomGpt2 {
  vocab?: number; hidden?: number; layers?: number; heads?: number; positions?: number;
}

export interface RandomBert extends RandomGpt2 { inner?: number; labels?: number }

export type StoreDType = 'F32' | 'F16' | 'BF16';

/** Uniform values of the given mean and standard deviation. */
function tensor(name: string, shape: number[], rand: () => number, std: number, dtype: StoreDType, mean = 0): TensorToWrite {
  const n = shape.reduce((a, d) => a * d, 1);
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) values[i] = mean + (rand() * 2 - 1) * std * Math.sqrt(3);
  if (dtype === 'F32') return { name, dtype, shape, data: values };
  const bits = new Uint16Array(n);
  const conv = dtype === 'F16' ? f32ToF16Bits : f32ToBf16Bits;
  for (let i = 0; i < n; i++) bits[i] = conv(values[i]);
  return { name, dtype, shape, data: new Uint8Array(bits.buffer) };
}

interface Spec {
  name: string;
  shape: number[];
  std: number;
  /** LayerNorm gains sit around 1, as in trained models */
  mean: number;
}

/** GPT-2's tensors with HF's original names (no "transformer." prefix; Conv1D weights are [in, out]). */
function gpt2Specs(V: number, H: number, L: number, P: number): Spec[] {
  const t = (name: string, shape: number[], std = 0.02, mean = 0): Spec => ({ name, shape, std, mean });
  const specs = [t('wte.weight', [V, H]), t('wpe.weight', [P, H], 0.01)];
  for (let l = 0; l < L; l++) {
    const p = `h.${l}.`;
    specs.push(
      t(p + 'ln_1.weight', [H], 0.1, 1), t(p + 'ln_1.bias', [H]),
      t(p + 'attn.c_attn.weight', [H, 3 * H]), t(p + 'attn.c_attn.bias', [3 * H]),
      t(p + 'attn.c_proj.weight', [H, H]), t(p + 'attn.c_proj.bias', [H]),
      t(p + 'ln_2.weight', [H], 0.1, 1), t(p + 'ln_2.bias', [H]),
      t(p + 'mlp.c_fc.weight', [H, 4 * H]), t(p + 'mlp.c_fc.bias', [4 * H]),
      t(p + 'mlp.c_proj.weight', [4 * H, H]), t(p + 'mlp.c_proj.bias', [H]),
    );
  }
  specs.push(t('ln_f.weight', [H], 0.1, 1), t('ln_f.bias', [H]));
  return specs;
}

function gpt2Config(V: number, H: number, L: number, heads: number, P: number): Record<string, unknown> {
  return {
    architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', vocab_size: V, n_embd: H, n_layer: L, n_head: heads,
    n_positions: P, n_ctx: P, activation_function: 'gelu_new', layer_norm_epsilon: 1e-5, bos_token_id: 50256, eos_token_id: 50256,
  };
}

/** Writes a GPT-2 checkpoint with seeded random weights. */
export function writeRandomGpt2(dir: string, o: RandomGpt2 = {}, tokenizerDir?: string, dtype: StoreDType = 'F32', seed = 1): Record<string, unknown> {
  const V = o.vocab ?? 50257, H = o.hidden ?? 64, L = o.layers ?? 2, heads = o.heads ?? 4, P = o.positions ?? 128;
  const rand = seededRandom(seed);
  const tensors = gpt2Specs(V, H, L, P).map((x) => tensor(x.name, x.shape, rand, x.std, dtype, x.mean));
  const config = gpt2Config(V, H, L, heads, P);
  writeDir(dir, config, tensors, tokenizerDir);
  return config;
}

/** Writes a BERT checkpoint (BertModel names; BertForSequenceClassification when labels is set). */
export function writeRandomBert(dir: string, o: RandomBert = {}, tokenizerDir?: string, dtype: StoreDType = 'F32', seed = 2): Record<string, unknown> {
  const V = o.vocab ?? 30522, H = o.hidden ?? 64, L = o.layers ?? 2, heads = o.heads ?? 4, P = o.positions ?? 128, F = o.inner ?? 4 * H;
  const rand = seededRandom(seed);
  const t = (name: string, shape: number[], std = 0.02, mean = 0) => tensor(name, shape, rand, std, dtype, mean);
  const pre = o.labels ? 'bert.' : '';
  // LayerNorm gains around 1, as trained models have them
  const ln = (p: string) => [t(p + '.weight', [H], 0.1, 1), t(p + '.bias', [H], 0.02)];
  const tensors: TensorToWrite[] = [
    t(pre + 'embeddings.word_embeddings.weight', [V, H]), t(pre + 'embeddings.position_embeddings.weight', [P, H]),
    t(pre + 'embeddings.token_type_embeddings.weight', [2, H]), ...ln(pre + 'embeddings.LayerNorm'),
  ];
  for (let l = 0; l < L; l++) {
    const p = `${pre}encoder.layer.${l}.`;
    for (const x of ['query', 'key', 'value']) tensors.push(t(p + `attention.self.${x}.weight`, [H, H]), t(p + `attention.self.${x}.bias`, [H]));
    tensors.push(
      t(p + 'attention.output.dense.weight', [H, H]), t(p + 'attention.output.dense.bias', [H]), ...ln(p + 'attention.output.LayerNorm'),
      t(p + 'intermediate.dense.weight', [F, H]), t(p + 'intermediate.dense.bias', [F]),
      t(p + 'output.dense.weight', [H, F]), t(p + 'output.dense.bias', [H]), ...ln(p + 'output.LayerNorm'),
    );
  }
  tensors.push(t(pre + 'pooler.dense.weight', [H, H]), t(pre + 'pooler.dense.bias', [H]));
  if (o.labels) tensors.push(t('classifier.weight', [o.labels, H]), t('classifier.bias', [o.labels]));
  const config: Record<string, unknown> = {
    architectures: [o.labels ? 'BertForSequenceClassification' : 'BertModel'], model_type: 'bert', vocab_size: V, hidden_size: H,
    num_hidden_layers: L, num_attention_heads: heads, intermediate_size: F, max_position_embeddings: P, type_vocab_size: 2,
    hidden_act: 'gelu', layer_norm_eps: 1e-12, pad_token_id: 0,
  };
  if (o.labels) config.id2label = Object.fromEntries(Array.from({ length: o.labels }, (_, i) => [String(i), `LABEL_${i}`]));
  writeDir(dir, config, tensors, tokenizerDir);
  return config;
}

function writeDir(dir: string, config: object, tensors: TensorToWrite[], tokenizerDir?: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  if (tokenizerDir) for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(tokenizerDir, f), join(dir, f));
}

/**
 * A GPT-2 checkpoint of any size with random fp16 weights, written tensor by tensor (a 1.5B model is 3 GB):
 * values are drawn as random fp16 bit patterns of magnitude about 2^-9 .. 2^-5, LayerNorm gains are 1.
 */
export function writeRandomGpt2Large(dir: string, o: Required<RandomGpt2>, tokenizerDir?: string): Record<string, unknown> {
  const { vocab: V, hidden: H, layers: L, heads, positions: P } = o;
  mkdirSync(dir, { recursive: true });
  writeSafetensorsStreaming(join(dir, 'model.safetensors'), gpt2Specs(V, H, L, P).map((x) => ({ ...x, dtype: 'F16' })), (spec, bytes) => {
    const bits = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
    if (spec.mean === 1) {
      bits.fill(0x3c00);
      return;
    }
    randomFillSync(bits);
    // keep sign and mantissa, set the exponent to 6..9 below the bias: |x| in [2^-9, 2^-5)
    for (let i = 0; i < bits.length; i++) bits[i] = (bits[i] & 0x83ff) | ((6 + (bits[i] & 0x3)) << 10);
  });
  const config = gpt2Config(V, H, L, heads, P);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  if (tokenizerDir) for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(tokenizerDir, f), join(dir, f));
  return config;
}
