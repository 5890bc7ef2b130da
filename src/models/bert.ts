// BERT (BertModel, BertForSequenceClassification): post-LayerNorm encoder, bidirectional attention over
// each sequence, exact gelu (by default). Sequences are packed without padding; attention sees only its own sequence.
import { fail, show } from '../errors.js';
import type { ModelDir } from '../loaders/model-dir.js';
import type { Activation, Backend, Tensor } from '../ops/backend.js';
import { ConfigReader, divides } from './config.js';
import type { Architecture, Encoder, ModelInfo, Pass } from './model.js';
import { Checkpoint, detectPrefix } from './weights.js';

interface BertConfig {
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  inner: number;
  maxPositions: number;
  typeVocab: number;
  eps: number;
  /** the intermediate layer's activation (hidden_act) */
  act: Activation;
  labels: string[];
}

const MAX_LABELS = 2 ** 20;

/**
 * Every field of BertConfig that changes what is computed (dropout does not at inference; add_cross_attention
 * does not without encoder states): layer_norm_eps, hidden_act (any name in activations.ts),
 * type_vocab_size; refused: position_embedding_type other than absolute (relative_key and
 * relative_key_query add learned distance embeddings to the scores), is_decoder (causal attention), and a
 * non-empty pruned_heads.
 */
function readConfig(raw: Record<string, unknown>, className: string): BertConfig {
  const c = new ConfigReader(raw, 'BERT config');
  const hidden = c.int('hidden_size');
  const heads = c.int('num_attention_heads');
  divides('BERT config', 'hidden_size', hidden, heads);
  if (c.string('position_embedding_type', 'absolute') !== 'absolute') c.unsupported('position_embedding_type', 'only absolute position embeddings');
  if (c.bool('is_decoder', false)) c.unsupported('is_decoder', 'BERT runs as a bidirectional encoder');
  c.noPrunedHeads();
  let labels: string[] = [];
  if (className === 'BertForSequenceClassification') {
    const id2label = raw.id2label ?? undefined;
    if (id2label !== undefined && (typeof id2label !== 'object' || Array.isArray(id2label) || !Object.values(id2label).every((v) => typeof v === 'string'))) {
      fail('bad-config', `BERT config: field "id2label" must map label ids to label names (strings), got ${show(id2label)}; fix config.json`);
    }
    const names = id2label as Record<string, string> | undefined;
    const count = c.optionalInt('num_labels') ?? (names ? Object.keys(names).length : 2);
    // the list of names is made here, before the classifier's shape is checked against the weights
    if (count > MAX_LABELS) fail('bad-config', `BERT config: field "num_labels" is ${count}, more labels than Peregrine loads (at most ${MAX_LABELS}); fix config.json`);
    labels = Array.from({ length: count }, (_, i) => names?.[String(i)] ?? `LABEL_${i}`);
  }
  return {
    vocab: c.int('vocab_size'),
    hidden,
    layers: c.int('num_hidden_layers'),
    heads,
    inner: c.int('intermediate_size'),
    maxPositions: c.int('max_position_embeddings'),
    typeVocab: c.int('type_vocab_size', 2),
    eps: c.number('layer_norm_eps', 1e-12),
    act: c.activation('hidden_act', 'gelu'),
    labels,
  };
}

function loadWeights(backend: Backend, ckpt: Checkpoint, cfg: BertConfig, classify: boolean) {
  const { hidden: H, inner: F } = cfg;
  // old checkpoints (bert-base-uncased) name LayerNorm parameters gamma and beta
  const ln = (p: string) => ({
    g: ckpt.load(backend, [p + '.weight', p + '.gamma'], [H]),
    b: ckpt.load(backend, [p + '.bias', p + '.beta'], [H]),
  });
  const layers = [];
  for (let l = 0; l < cfg.layers; l++) {
    const p = `encoder.layer.${l}.`;
    const qkv = ['query', 'key', 'value'].map((x) => p + 'attention.self.' + x);
    layers.push({
      // fused QKV: one GEMM instead of three
      qkvW: ckpt.loadStacked(backend, qkv.map((n) => n + '.weight'), [H, H]),
      qkvB: ckpt.loadStacked(backend, qkv.map((n) => n + '.bias'), [H]),
      projW: ckpt.load(backend, p + 'attention.output.dense.weight', [H, H]),
      projB: ckpt.load(backend, p + 'attention.output.dense.bias', [H]),
      ln1: ln(p + 'attention.output.LayerNorm'),
      fcW: ckpt.load(backend, p + 'intermediate.dense.weight', [F, H]),
      fcB: ckpt.load(backend, p + 'intermediate.dense.bias', [F]),
      fc2W: ckpt.load(backend, p + 'output.dense.weight', [H, F]),
      fc2B: ckpt.load(backend, p + 'output.dense.bias', [H]),
      ln2: ln(p + 'output.LayerNorm'),
    });
  }
  let head = null;
  if (classify) {
    const root = new Checkpoint(ckpt.store, '', `hidden_size=${H}, num_labels=${cfg.labels.length}`);
    head = {
      poolW: ckpt.load(backend, 'pooler.dense.weight', [H, H]),
      poolB: ckpt.load(backend, 'pooler.dense.bias', [H]),
      clsW: root.load(backend, 'classifier.weight', [cfg.labels.length, H]),
      clsB: root.load(backend, 'classifier.bias', [cfg.labels.length]),
    };
  }
  return {
    tok: ckpt.load(backend, 'embeddings.word_embeddings.weight', [cfg.vocab, H]),
    pos: ckpt.load(backend, 'embeddings.position_embeddings.weight', [cfg.maxPositions, H]),
    types: ckpt.load(backend, 'embeddings.token_type_embeddings.weight', [cfg.typeVocab, H]),
    embLn: ln('embeddings.LayerNorm'),
    layers,
    head,
  };
}

class Bert implements Encoder {
  readonly labels: string[];
  private readonly w: ReturnType<typeof loadWeights>;

  constructor(backend: Backend, private readonly cfg: BertConfig, ckpt: Checkpoint, readonly info: ModelInfo) {
    this.labels = cfg.labels;
    this.w = loadWeights(backend, ckpt, cfg, cfg.labels.length > 0);
  }

  forward(p: Pass): Tensor {
    const b = p.ops, n = p.n, T = p.capacity;
    const { hidden: H, inner: F, heads, eps, act } = this.cfg;
    const w = this.w;
    const shape = { heads, kvHeads: heads, headDim: H / heads, scale: 1 / Math.sqrt(H / heads), window: 0 };
    const hidden = p.buffer('hidden', [T, H]), mid = p.buffer('mid', [T, H]);
    const qkv = p.buffer('qkv', [T, 3 * H]), attn = p.buffer('attn', [T, H]), proj = p.buffer('proj', [T, H]);
    const fc = p.buffer('fc', [T, F]), fc2 = p.buffer('fc2', [T, H]);
    // every layer attends within its own sequence, through one scratch cache
    const { k, v } = p.cache(0);
    b.embed(mid, p.ids, p.positions, w.tok, w.pos, p.typeIds, w.types, n);
    b.layerNorm(hidden, mid, w.embLn.g, w.embLn.b, eps, n);
    for (const L of w.layers) {
      b.linear(qkv, hidden, L.qkvW, L.qkvB, 'none', n);
      b.writeKV(qkv, k, v, p.blockTables, p.slots, p.positions, n);
      b.attend(attn, qkv, k, v, p.blockTables, p.slots, p.keyLens, shape, n, p.segments!);
      b.linear(proj, attn, L.projW, null, 'none', n);
      b.addBiasResidualLayerNorm(mid, mid, proj, L.projB, hidden, L.ln1.g, L.ln1.b, eps, n);
      b.linear(fc, mid, L.fcW, L.fcB, act, n);
      b.linear(fc2, fc, L.fc2W, null, 'none', n);
      b.addBiasResidualLayerNorm(hidden, hidden, fc2, L.fc2B, mid, L.ln2.g, L.ln2.b, eps, n);
    }
    return hidden;
  }

  classify(p: Pass, cls: Tensor, out: Tensor, count: number): void {
    const head = this.w.head;
    if (!head) fail('bad-request', 'this checkpoint has no sequence-classification head (it is not BertForSequenceClassification)');
    const pooler = p.buffer('pooler', [cls.shape[0], this.cfg.hidden]);
    p.ops.linear(pooler, cls, head.poolW, head.poolB, 'tanh', count);
    p.ops.linear(out, pooler, head.clsW, head.clsB, 'none', count);
  }

  weights(): Tensor[] {
    const w = this.w;
    return [w.tok, w.pos, w.types, w.embLn.g, w.embLn.b, ...(w.head ? Object.values(w.head) : []),
      ...w.layers.flatMap((L) => [L.qkvW, L.qkvB, L.projW, L.projB, L.ln1.g, L.ln1.b, L.fcW, L.fcB, L.fc2W, L.fc2B, L.ln2.g, L.ln2.b])];
  }
}

function info(raw: Record<string, unknown>, className: string): ModelInfo {
  const c = readConfig(raw, className);
  const { vocab: V, hidden: H, inner: F, maxPositions: P, layers, typeVocab: TV, labels } = c;
  const perLayer = (3 * H * H + 3 * H) + (H * H + H) + 2 * H + (F * H + F) + (F * H + H) + 2 * H;
  const head = labels.length ? H * H + H + labels.length * (H + 1) : 0;
  return {
    architecture: className, kind: 'encoder', vocabSize: V, hidden: H, layers, heads: c.heads, maxPositions: P,
    parameters: (V + P + TV) * H + 2 * H + layers * perLayer + head,
  };
}

export const bert: Architecture = {
  classNames: ['BertModel', 'BertForSequenceClassification'],
  modelTypes: ['bert'],
  kind: 'encoder',
  info,
  cacheWidth: (raw) => readConfig(raw, 'BertModel').hidden,
  create(backend: Backend, dir: ModelDir, className: string): Encoder {
    const cfg = readConfig(dir.config, className);
    const prefix = detectPrefix(dir.weights, ['bert.', ''], 'embeddings.word_embeddings.weight', 'BERT');
    const ckpt = new Checkpoint(dir.weights, prefix, `hidden_size=${cfg.hidden}, num_hidden_layers=${cfg.layers}, vocab_size=${cfg.vocab}`);
    return new Bert(backend, cfg, ckpt, info(dir.config, className));
  },
};
