// Small fp32 GPT-2 and BERT checkpoints for tests, with any config fields changed, whose weights are kept
// (for the naive reference forwards), all NaN, or edited. Magnitudes are chosen so that every config field
// shows: attention scores of order 1 to 10 (so their scale moves the softmax), LayerNorm inputs of unit
// variance (so a large epsilon moves the norm), MLP inputs spread over the nonlinear part of the activations.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { seededRandom } from '../../src/ops/rng.js';
import { writeSafetensors } from '../../src/loaders/safetensors-write.js';
import { FIXTURES } from './fixtures.js';

export interface Checkpoint {
  dir: string;
  config: Record<string, unknown>;
  /** HF names and layouts */
  weights: Map<string, Float32Array>;
}

export interface WriteOptions {
  /** every weight NaN */
  nan?: boolean;
  seed?: number;
  /** the vocabulary size (default 96; the real tokenizer's, for tests that give text) */
  vocab?: number;
  /** changes the weights before they are written (HF names) */
  edit?: (weights: Map<string, Float32Array>) => void;
}

/** Writes config.json, model.safetensors and the tokenizer files of `tokenizer` (a folder of test/fixtures/tokenizers). */
function write(dir: string, config: Record<string, unknown>, shapes: [string, number[], number, number][], tokenizer: string, o: WriteOptions, seed: number): Checkpoint {
  const rand = seededRandom(o.seed ?? seed);
  const weights = new Map<string, Float32Array>();
  for (const [name, shape, std, mean] of shapes) {
    const n = shape.reduce((a, d) => a * d, 1);
    weights.set(name, Float32Array.from({ length: n }, () => (o.nan ? NaN : mean + (rand() * 2 - 1) * std * Math.sqrt(3))));
  }
  o.edit?.(weights);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  writeSafetensors(join(dir, 'model.safetensors'), shapes.map(([name, shape]) => ({ name, dtype: 'F32', shape, data: weights.get(name)! })), { format: 'pt' });
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(FIXTURES, 'tokenizers', tokenizer, f), join(dir, f));
  return { dir, config, weights };
}

/** GPT-2: vocab 96, n_embd 32, 4 heads, 3 layers (so that layer-wise scales differ), n_inner 48, 32 positions. */
export function writeGpt2(dir: string, changes: Record<string, unknown> = {}, o: WriteOptions = {}): Checkpoint {
  const V = o.vocab ?? 96, H = 32, L = 3, F = 48, P = 32;
  const config = {
    architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', vocab_size: V, n_embd: H, n_head: 4, n_layer: L, n_inner: F,
    n_positions: P, bos_token_id: 0, eos_token_id: 0, ...changes,
  };
  const shapes: [string, number[], number, number][] = [['wte.weight', [V, H], 1, 0], ['wpe.weight', [P, H], 0.5, 0]];
  for (let l = 0; l < L; l++) {
    const p = `h.${l}.`;
    shapes.push(
      [p + 'ln_1.weight', [H], 0.2, 1], [p + 'ln_1.bias', [H], 0.1, 0],
      [p + 'attn.c_attn.weight', [H, 3 * H], 1.5 / Math.sqrt(H), 0], [p + 'attn.c_attn.bias', [3 * H], 0.1, 0],
      [p + 'attn.c_proj.weight', [H, H], 1 / Math.sqrt(H), 0], [p + 'attn.c_proj.bias', [H], 0.1, 0],
      [p + 'ln_2.weight', [H], 0.2, 1], [p + 'ln_2.bias', [H], 0.1, 0],
      [p + 'mlp.c_fc.weight', [H, F], 1.5 / Math.sqrt(H), 0], [p + 'mlp.c_fc.bias', [F], 0.1, 0],
      [p + 'mlp.c_proj.weight', [F, H], 1 / Math.sqrt(F), 0], [p + 'mlp.c_proj.bias', [H], 0.1, 0],
    );
  }
  shapes.push(['ln_f.weight', [H], 0.2, 1], ['ln_f.bias', [H], 0.1, 0]);
  return write(dir, config, shapes, 'gpt2', o, 7);
}

/** BERT: vocab 96, hidden 32, 4 heads, 2 layers, intermediate 48, 32 positions; BertForSequenceClassification ("bert." prefix) with `labels`. */
export function writeBert(dir: string, changes: Record<string, unknown> = {}, labels = 0, o: WriteOptions = {}): Checkpoint {
  const V = o.vocab ?? 96, H = 32, L = 2, F = 48, P = 32;
  const config: Record<string, unknown> = {
    architectures: [labels ? 'BertForSequenceClassification' : 'BertModel'], model_type: 'bert', vocab_size: V, hidden_size: H,
    num_attention_heads: 4, num_hidden_layers: L, intermediate_size: F, max_position_embeddings: P, type_vocab_size: 2, ...changes,
  };
  if (labels) config.id2label = Object.fromEntries(Array.from({ length: labels }, (_, i) => [String(i), `LABEL_${i}`]));
  const pre = labels ? 'bert.' : '';
  const ln = (p: string): [string, number[], number, number][] => [[p + '.weight', [H], 0.2, 1], [p + '.bias', [H], 0.1, 0]];
  const shapes: [string, number[], number, number][] = [
    [pre + 'embeddings.word_embeddings.weight', [V, H], 1, 0], [pre + 'embeddings.position_embeddings.weight', [P, H], 0.5, 0],
    [pre + 'embeddings.token_type_embeddings.weight', [2, H], 0.5, 0], ...ln(pre + 'embeddings.LayerNorm'),
  ];
  for (let l = 0; l < L; l++) {
    const p = `${pre}encoder.layer.${l}.`;
    for (const x of ['query', 'key', 'value']) shapes.push([p + `attention.self.${x}.weight`, [H, H], 1.5 / Math.sqrt(H), 0], [p + `attention.self.${x}.bias`, [H], 0.1, 0]);
    shapes.push(
      [p + 'attention.output.dense.weight', [H, H], 1 / Math.sqrt(H), 0], [p + 'attention.output.dense.bias', [H], 0.1, 0], ...ln(p + 'attention.output.LayerNorm'),
      [p + 'intermediate.dense.weight', [F, H], 1.5 / Math.sqrt(H), 0], [p + 'intermediate.dense.bias', [F], 0.1, 0],
      [p + 'output.dense.weight', [H, F], 1 / Math.sqrt(F), 0], [p + 'output.dense.bias', [H], 0.1, 0], ...ln(p + 'output.LayerNorm'),
    );
  }
  shapes.push([pre + 'pooler.dense.weight', [H, H], 1 / Math.sqrt(H), 0], [pre + 'pooler.dense.bias', [H], 0.1, 0]);
  if (labels) shapes.push(['classifier.weight', [labels, H], 1 / Math.sqrt(H), 0], ['classifier.bias', [labels], 0.1, 0]);
  return write(dir, config, shapes, 'bert-base-uncased', o, 8);
}
