// BERT (BertModel, BertForSequenceClassification): post-LayerNorm encoder, bidirectional attention over
// each sequence, exact gelu. Sequences are packed without padding; attention sees only its own sequence.
import { fail } from '../errors.js';
import type { ModelDir } from '../loaders/model-dir.js';
import { dtypeBytes, packSegments, type Backend, type DType, type Tensor } from '../ops/backend.js';
import { allocateArena, planArena, type Arena, type BufferRequest } from '../ops/plan.js';
import { ConfigReader, divides } from './config.js';
import { weightBytes, type Architecture, type EncoderModel, type EncoderOutput, type MemoryReport, type ModelInfo } from './model.js';
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
  labels: string[];
}

function readConfig(raw: Record<string, unknown>, className: string): BertConfig {
  const c = new ConfigReader(raw, 'BERT config');
  const hidden = c.int('hidden_size');
  const heads = c.int('num_attention_heads');
  divides('BERT config', 'hidden_size', hidden, heads);
  const act = c.string('hidden_act', 'gelu');
  if (act !== 'gelu') fail('bad-config', `BERT config: hidden_act ${JSON.stringify(act)} is not supported (Peregrine runs gelu)`);
  const posType = c.string('position_embedding_type', 'absolute');
  if (posType !== 'absolute') fail('bad-config', `BERT config: position_embedding_type ${JSON.stringify(posType)} is not supported (only absolute)`);
  let labels: string[] = [];
  if (className === 'BertForSequenceClassification') {
    const id2label = raw.id2label as Record<string, string> | undefined;
    const count = c.optionalInt('num_labels') ?? (id2label ? Object.keys(id2label).length : 2);
    labels = Array.from({ length: count }, (_, i) => id2label?.[String(i)] ?? `LABEL_${i}`);
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

/** Activation buffers of one pass over T packed tokens of B sequences, with lifetimes in steps of one layer. */
function arenaRequests(cfg: BertConfig, T: number, B: number, act: DType): BufferRequest[] {
  const { hidden: H, inner: F } = cfg;
  const L = Math.max(cfg.labels.length, 1);
  // steps: 0 embed, 1 qkv, 2 writeKV, 3 attend, 4 proj, 5 add+LN, 6 fc, 7 fc2, 8 add+LN, 9 pool, 10 pooler, 11 classifier
  return [
    { name: 'hidden', shape: [T, H], dtype: act, first: 0, last: 12 },
    { name: 'mid', shape: [T, H], dtype: act, first: 0, last: 8 },
    { name: 'qkv', shape: [T, 3 * H], dtype: act, first: 1, last: 3 },
    { name: 'attn', shape: [T, H], dtype: act, first: 3, last: 4 },
    { name: 'proj', shape: [T, H], dtype: act, first: 4, last: 5 },
    { name: 'fc', shape: [T, F], dtype: act, first: 6, last: 7 },
    { name: 'fc2', shape: [T, H], dtype: act, first: 7, last: 8 },
    { name: 'pooled', shape: [B, H], dtype: act, first: 9, last: 12 },
    { name: 'pooler', shape: [B, H], dtype: act, first: 10, last: 11 },
    { name: 'logits', shape: [B, L], dtype: 'f32', first: 11, last: 12 },
    ...['ids', 'positions', 'types', 'slots', 'keyLens'].map((name) => ({ name, shape: [T], dtype: 'i32' as const, first: 0, last: 12 })),
    ...['starts', 'lengths', 'rows'].map((name) => ({ name, shape: [B], dtype: 'i32' as const, first: 0, last: 12 })),
    { name: 'segments', shape: [B, 3], dtype: 'i32', first: 0, last: 12 },
  ];
}

function report(cfg: BertConfig, weights: number, tokens: number, batch: number, seqLen: number, act: DType): MemoryReport {
  const arena = planArena(arenaRequests(cfg, tokens, batch, act));
  return {
    regions: [
      { name: 'weights', bytes: weights },
      { name: 'attention-kv', bytes: 2 * batch * seqLen * cfg.hidden * dtypeBytes(act) },
      { name: 'activations', bytes: tokens ? arena.bytes : 0 },
    ],
    buffers: tokens ? arena.buffers : [],
    capacity: { tokens, batch, seqLen },
  };
}

class Bert implements EncoderModel {
  readonly info: ModelInfo;
  readonly labels: string[];
  private readonly w: ReturnType<typeof loadWeights>;
  private arena: Arena | null = null;
  private kv: { k: Tensor; v: Tensor } | null = null;
  private cap = { tokens: 0, batch: 0, seqLen: 0 };

  constructor(private readonly backend: Backend, private readonly cfg: BertConfig, ckpt: Checkpoint, info: ModelInfo) {
    this.info = info;
    this.labels = cfg.labels;
    this.w = loadWeights(backend, ckpt, cfg, cfg.labels.length > 0);
  }

  get numLabels(): number {
    return this.labels.length;
  }

  private reserve(tokens: number, batch: number, seqLen: number): void {
    const c = this.cap;
    if (tokens <= c.tokens && batch <= c.batch && seqLen <= c.seqLen) return;
    this.release();
    const up = (x: number, have: number) => Math.max(have, 2 ** Math.ceil(Math.log2(Math.max(x, 1))));
    const T = up(tokens, c.tokens), B = up(batch, c.batch), S = Math.min(up(seqLen, c.seqLen), this.cfg.maxPositions);
    const act = this.backend.activationDtype;
    const plan = planArena(arenaRequests(this.cfg, T, B, act));
    this.arena = allocateArena(this.backend, plan);
    const H = this.cfg.hidden;
    this.kv = { k: this.backend.buffer([B, S, H], act), v: this.backend.buffer([B, S, H], act) };
    this.cap = { tokens: T, batch: B, seqLen: S };
  }

  encode(seqs: Int32Array[], want: { pooling?: 'cls' | 'mean'; classify?: boolean }): EncoderOutput {
    if (want.classify && !this.w.head) fail('bad-request', 'this checkpoint has no sequence-classification head (it is not BertForSequenceClassification)');
    const B = seqs.length;
    const lengths = seqs.map((s) => s.length);
    const starts: number[] = [];
    let T = 0;
    for (const len of lengths) {
      starts.push(T);
      T += len;
    }
    const maxLen = Math.max(...lengths);
    this.reserve(T, B, maxLen);
    const host = { ids: new Int32Array(T), positions: new Int32Array(T), types: new Int32Array(T), slots: new Int32Array(T), keyLens: new Int32Array(T) };
    seqs.forEach((s, i) => {
      host.ids.set(s, starts[i]);
      for (let p = 0; p < s.length; p++) {
        host.positions[starts[i] + p] = p;
        host.slots[starts[i] + p] = i;
        host.keyLens[starts[i] + p] = s.length;
      }
    });
    const b = this.backend;
    const a = this.arena!.buffers;
    for (const [name, arr] of Object.entries(host)) b.writeInt(a[name], arr, T);
    b.writeInt(a.starts, Int32Array.from(starts), B);
    b.writeInt(a.lengths, Int32Array.from(lengths), B);
    b.writeInt(a.rows, Int32Array.from({ length: B }, (_, i) => i), B);
    const table = new Int32Array(3 * B);
    const segments = { table: a.segments, ...packSegments(host.slots, T, table) };
    b.writeInt(a.segments, table, 3 * B);

    const { hidden: H, heads, eps } = this.cfg;
    const w = this.w;
    const { k, v } = this.kv!;
    const shape = { heads, headDim: H / heads, scale: 1 / Math.sqrt(H / heads) };
    b.embed(a.mid, a.ids, a.positions, w.tok, w.pos, a.types, w.types, T);
    b.layerNorm(a.hidden, a.mid, w.embLn.g, w.embLn.b, eps, T);
    for (const L of w.layers) {
      b.linear(a.qkv, a.hidden, L.qkvW, L.qkvB, 'none', T);
      b.writeKV(a.qkv, k, v, a.slots, a.positions, T);
      b.attend(a.attn, a.qkv, k, v, a.slots, a.keyLens, shape, T, segments);
      b.linear(a.proj, a.attn, L.projW, null, 'none', T);
      b.addBiasResidualLayerNorm(a.mid, a.mid, a.proj, L.projB, a.hidden, L.ln1.g, L.ln1.b, eps, T);
      b.linear(a.fc, a.mid, L.fcW, L.fcB, 'gelu', T);
      b.linear(a.fc2, a.fc, L.fc2W, null, 'none', T);
      b.addBiasResidualLayerNorm(a.hidden, a.hidden, a.fc2, L.fc2B, a.mid, L.ln2.g, L.ln2.b, eps, T);
    }
    const out: EncoderOutput = { hidden: b.readFloat(a.hidden, T * H).slice(), starts, lengths };
    if (want.pooling === 'mean') b.meanPool(a.pooled, a.hidden, a.starts, a.lengths, B);
    if (want.pooling === 'cls') b.gatherRows(a.pooled, a.hidden, a.starts, a.rows, B);
    if (want.pooling) out.pooled = b.readFloat(a.pooled, B * H).slice();
    if (want.classify) {
      // the classifier reads the [CLS] rows (pooled has been read already)
      if (want.pooling !== 'cls') b.gatherRows(a.pooled, a.hidden, a.starts, a.rows, B);
      const head = w.head!;
      b.linear(a.pooler, a.pooled, head.poolW, head.poolB, 'tanh', B);
      b.linear(a.logits, a.pooler, head.clsW, head.clsB, 'none', B);
      out.logits = b.readFloat(a.logits, B * this.labels.length).slice();
    }
    return out;
  }

  memory(): MemoryReport {
    const w = this.w;
    const tensors = [w.tok, w.pos, w.types, w.embLn.g, w.embLn.b, ...(w.head ? Object.values(w.head) : []),
      ...w.layers.flatMap((L) => [L.qkvW, L.qkvB, L.projW, L.projB, L.ln1.g, L.ln1.b, L.fcW, L.fcB, L.fc2W, L.fc2B, L.ln2.g, L.ln2.b])];
    return report(this.cfg, weightBytes(tensors), this.cap.tokens, this.cap.batch, this.cap.seqLen, this.backend.activationDtype);
  }

  private release(): void {
    if (this.arena) this.backend.free(this.arena.region);
    if (this.kv) {
      this.backend.free(this.kv.k);
      this.backend.free(this.kv.v);
    }
    this.arena = null;
    this.kv = null;
  }

  dispose(): void {
    this.release();
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
  plan(raw: Record<string, unknown>, className: string, batch: number, seqLen: number, dtype: DType): MemoryReport {
    return report(readConfig(raw, className), info(raw, className).parameters * dtypeBytes(dtype), batch * seqLen, batch, seqLen, dtype);
  },
  create(backend: Backend, dir: ModelDir, className: string): EncoderModel {
    const cfg = readConfig(dir.config, className);
    const prefix = detectPrefix(dir.weights, ['bert.', ''], 'embeddings.word_embeddings.weight', 'BERT');
    const ckpt = new Checkpoint(dir.weights, prefix, `hidden_size=${cfg.hidden}, num_hidden_layers=${cfg.layers}, vocab_size=${cfg.vocab}`);
    return new Bert(backend, cfg, ckpt, info(dir.config, className));
  },
};
