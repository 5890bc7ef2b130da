// The encoder BERT, RoBERTa, XLM-RoBERTa and DistilBERT share: word + position (+ token type) embeddings and
// a LayerNorm, then post-LayerNorm layers (attention, then the MLP, each added to its input before a
// LayerNorm), and the head the checkpoint carries. Each family's file maps its config and weight names onto
// this one forward, written once for every backend.
import { fail } from '../errors.js';
import type { Activation, Backend, Tensor } from '../ops/backend.js';
import type { Encoder, EncoderTask, ModelInfo, Pass } from './model.js';
import { weightTensors, type Checkpoint } from './weights.js';

export interface StackConfig {
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  inner: number;
  /** rows of the position table */
  positionRows: number;
  /** leading rows of the position table no token uses (RoBERTa: padding_idx + 1, its first position) */
  positionOffset: number;
  /** rows of the token-type table; 0: none (DistilBERT) */
  typeVocab: number;
  eps: number;
  /** the intermediate layer's activation */
  act: Activation;
  task: EncoderTask | null;
  /** the classifier's label names (token or sequence classification) */
  labels: string[];
  causal: boolean;
}

/** A layer's weights, by name without ".weight"/".bias". */
export interface LayerNames {
  q: string;
  k: string;
  v: string;
  attnOut: string;
  attnNorm: string;
  fc1: string;
  fc2: string;
  outNorm: string;
}

/** Where a family keeps each weight (full names, without ".weight"/".bias"). */
export interface StackNames {
  word: string;
  position: string;
  types: string | null;
  embNorm: string;
  layer(l: number): LayerNames;
  /** sequence classification: act(dense(first token)) through `out` (BERT's pooler and classifier, RoBERTa's classifier.dense and out_proj) */
  sequence: { dense: string; act: Activation; out: string };
  /** token classification: one linear over every token */
  tokens: string;
  /** LM head: act(dense(x)), LayerNorm, then the decoder (the word embeddings when `decoder` is null) plus a bias */
  lm: { dense: string; act: Activation; norm: string; eps: number; decoder: string | null; bias: string[] };
}

/** The head a Hugging Face class name carries (BertForMaskedLM: masked-lm); null for the bare model and heads Peregrine does not run. */
export function taskOf(className: string): EncoderTask | null {
  if (className.endsWith('ForSequenceClassification')) return 'sequence-classification';
  if (className.endsWith('ForTokenClassification')) return 'token-classification';
  if (/(ForMaskedLM|LMHeadModel|ForCausalLM|ForPreTraining)$/.test(className)) return 'masked-lm';
  return null;
}

/** The class names of a family: its bare model and every head, "Bert" + "ForMaskedLM" and so on. */
export function familyClasses(stem: string, heads: string[]): string[] {
  return [stem + 'Model', ...heads.map((h) => stem + h)];
}

/** Logical parameters: the embeddings, the layers and the head (a tied decoder once). */
export function stackParameters(c: StackConfig, untiedDecoder: boolean): number {
  const { vocab: V, hidden: H, inner: F, labels } = c;
  const perLayer = 4 * (H * H + H) + 2 * (F * H) + F + H + 4 * H;
  const head = c.task === 'sequence-classification' ? H * H + H + labels.length * (H + 1)
    : c.task === 'token-classification' ? labels.length * (H + 1)
      : c.task === 'masked-lm' ? H * H + 3 * H + V + (untiedDecoder ? V * H : 0) : 0;
  return (V + c.positionRows + c.typeVocab) * H + 2 * H + c.layers * perLayer + head;
}

function loadWeights(backend: Backend, ckpt: Checkpoint, c: StackConfig, n: StackNames) {
  const { hidden: H, inner: F, vocab: V } = c;
  const L = c.labels.length;
  const W = (name: string, shape: number[]) => ckpt.load(backend, name + '.weight', shape);
  const B = (name: string, size: number) => ckpt.load(backend, name + '.bias', [size]);
  // old checkpoints (bert-base-uncased) name LayerNorm parameters gamma and beta
  const ln = (p: string) => ({ g: ckpt.load(backend, [p + '.weight', p + '.gamma'], [H]), b: ckpt.load(backend, [p + '.bias', p + '.beta'], [H]) });
  const layers = [];
  for (let l = 0; l < c.layers; l++) {
    const x = n.layer(l);
    const qkv = [x.q, x.k, x.v];
    layers.push({
      // fused QKV: one GEMM instead of three
      qkvW: ckpt.loadStacked(backend, qkv.map((p) => p + '.weight'), [H, H]),
      qkvB: ckpt.loadStacked(backend, qkv.map((p) => p + '.bias'), [H]),
      projW: W(x.attnOut, [H, H]), projB: B(x.attnOut, H), ln1: ln(x.attnNorm),
      fcW: W(x.fc1, [F, H]), fcB: B(x.fc1, F),
      fc2W: W(x.fc2, [H, F]), fc2B: B(x.fc2, H), ln2: ln(x.outNorm),
    });
  }
  const tok = W(n.word, [V, H]);
  let sequence = null, tokens = null, lm = null;
  if (c.task === 'sequence-classification') {
    const s = n.sequence;
    sequence = { denseW: W(s.dense, [H, H]), denseB: B(s.dense, H), outW: W(s.out, [L, H]), outB: B(s.out, L) };
  } else if (c.task === 'token-classification') {
    tokens = { w: W(n.tokens, [L, H]), b: B(n.tokens, L) };
  } else if (c.task === 'masked-lm') {
    const m = n.lm;
    lm = {
      denseW: W(m.dense, [H, H]), denseB: B(m.dense, H), norm: ln(m.norm),
      decoder: m.decoder === null ? tok : W(m.decoder, [V, H]), bias: ckpt.load(backend, m.bias, [V]),
    };
  }
  return {
    tok,
    pos: ckpt.loadRows(backend, n.position + '.weight', [c.positionRows, H], c.positionOffset),
    types: n.types === null ? null : W(n.types, [c.typeVocab, H]),
    embLn: ln(n.embNorm),
    layers, sequence, tokens, lm,
  };
}

class EncoderStack implements Encoder {
  readonly labels: string[];
  readonly task: EncoderTask | null;
  readonly causal: boolean;
  private readonly w: ReturnType<typeof loadWeights>;

  constructor(backend: Backend, private readonly cfg: StackConfig, private readonly names: StackNames, ckpt: Checkpoint, readonly info: ModelInfo) {
    this.labels = cfg.labels;
    this.task = cfg.task;
    this.causal = cfg.causal;
    this.w = loadWeights(backend, ckpt, cfg, names);
  }

  forward(p: Pass): Tensor {
    const b = p.ops, n = p.n, T = p.capacity;
    const { hidden: H, inner: F, heads, eps, act } = this.cfg;
    const w = this.w;
    const shape = { heads, kvHeads: heads, headDim: H / heads, scale: 1 / Math.sqrt(H / heads), window: 0 };
    const hidden = p.buffer('hidden', [T, H]), mid = p.buffer('mid', [T, H]);
    const qkv = p.buffer('qkv', [T, 3 * H]), attn = p.buffer('attn', [T, H]), proj = p.buffer('proj', [T, H]);
    const fc = p.buffer('fc', [T, F]), fc2 = p.buffer('fc2', [T, H]);
    // every layer attends within its own sequence (through one scratch cache where the backend needs one)
    const { k, v } = p.cache(0);
    b.embed(mid, p.ids, p.positions, w.tok, w.pos, w.types ? p.typeIds : null, w.types, n);
    b.layerNorm(hidden, mid, w.embLn.g, w.embLn.b, eps, n);
    for (const L of w.layers) {
      b.linear(qkv, hidden, L.qkvW, L.qkvB, 'none', n);
      b.attendEncoder(attn, qkv, k, v, p.blockTables, p.slots, p.positions, p.keyLens, shape, n, p.segments!);
      b.linear(proj, attn, L.projW, null, 'none', n);
      b.addBiasResidualLayerNorm(mid, mid, proj, L.projB, hidden, L.ln1.g, L.ln1.b, eps, n);
      b.linear(fc, mid, L.fcW, L.fcB, act, n);
      b.linear(fc2, fc, L.fc2W, null, 'none', n);
      b.addBiasResidualLayerNorm(hidden, hidden, fc2, L.fc2B, mid, L.ln2.g, L.ln2.b, eps, n);
    }
    return hidden;
  }

  head(p: Pass, x: Tensor, out: Tensor, count: number): void {
    const { sequence, tokens, lm } = this.w;
    const b = p.ops, rows = x.shape[0], H = this.cfg.hidden;
    if (sequence) {
      const pooler = p.buffer('pooler', [rows, H]);
      b.linear(pooler, x, sequence.denseW, sequence.denseB, this.names.sequence.act, count);
      b.linear(out, pooler, sequence.outW, sequence.outB, 'none', count);
    } else if (tokens) {
      b.linear(out, x, tokens.w, tokens.b, 'none', count);
    } else if (lm) {
      const t = p.buffer('lm-transform', [rows, H]), normed = p.buffer('lm-norm', [rows, H]);
      b.linear(t, x, lm.denseW, lm.denseB, this.names.lm.act, count);
      b.layerNorm(normed, t, lm.norm.g, lm.norm.b, this.names.lm.eps, count);
      b.linear(out, normed, lm.decoder, lm.bias, 'none', count);
    } else {
      fail('bad-request', `${this.info.architecture} has no head; use a checkpoint with one (...ForSequenceClassification, ...ForTokenClassification, ...ForMaskedLM)`);
    }
  }

  weights(): Tensor[] {
    return weightTensors([this.w]);
  }
}

export function createStack(backend: Backend, ckpt: Checkpoint, cfg: StackConfig, names: StackNames, info: ModelInfo): Encoder {
  return new EncoderStack(backend, cfg, names, ckpt, info);
}

/** The ModelInfo of a stack. */
export function stackInfo(className: string, c: StackConfig, untiedDecoder: boolean): ModelInfo {
  return {
    architecture: className, kind: 'encoder', vocabSize: c.vocab, hidden: c.hidden, layers: c.layers, heads: c.heads,
    maxPositions: c.positionRows - c.positionOffset, parameters: stackParameters(c, untiedDecoder),
  };
}
