// T5 (T5ForConditionalGeneration): v1.0 (relu, LM head tied to the embeddings and fed the decoder output times
// d_model^-0.5) and v1.1 / Flan-T5 (gated-gelu, untied head, no scaling). Pre-RMSNorm layers ("T5LayerNorm",
// scale only), no biases, no position embeddings: each stack's first layer holds a table of relative position
// buckets added to every layer's attention scores (bidirectional in the encoder, causal in the decoder; none in
// cross-attention), and the scores are not scaled.
import type { ModelDir } from '../loaders/model-dir.js';
import type { Activation, AttentionShape, Backend, Norm, RelativeBias, Tensor } from '../ops/backend.js';
import { HF_ACTIVATIONS } from './activations.js';
import { ConfigReader } from './config.js';
import type { Architecture, CausalLM, ModelInfo, Pass, Seq2Seq } from './model.js';
import { loadScaled, memoryKV, seq2seqInfo, type Seq2SeqDims } from './seq2seq.js';
import { Checkpoint, weightTensors } from './weights.js';

interface T5Config extends Seq2SeqDims {
  heads: number;
  dKv: number;
  inner: number;
  act: Activation;
  gated: boolean;
  buckets: number;
  maxDistance: number;
  eps: number;
  /** the decoder output times d_model^-0.5 before the head (v1.0) */
  scaleOutput: boolean;
  tied: boolean;
}

/** Positions a sequence may use: T5 has no table of them, so this is only the runtime's bound. */
const T5_POSITIONS = 512;

/**
 * Every field of T5Config that changes what is computed: d_model, d_kv, d_ff, num_layers, num_decoder_layers,
 * num_heads, relative_attention_num_buckets, relative_attention_max_distance, layer_norm_epsilon,
 * feed_forward_proj ("relu", "gated-gelu", "gated-<act>"), tie_word_embeddings and scale_decoder_outputs
 * (transformers 5 writes the latter and always ties), vocab_size, decoder_start_token_id, eos_token_id.
 */
function readConfig(raw: Record<string, unknown>): T5Config {
  const c = new ConfigReader(raw, 'T5 config');
  const proj = c.string('feed_forward_proj', 'relu');
  const parts = proj.split('-');
  if (parts.length > 2 || (parts.length === 2 && parts[0] !== 'gated')) c.unsupported('feed_forward_proj', 'T5 takes "<act>" or "gated-<act>"');
  const actName = proj === 'gated-gelu' ? 'gelu_new' : parts[parts.length - 1];
  const act = Object.hasOwn(HF_ACTIVATIONS, actName) ? HF_ACTIVATIONS[actName] : c.unsupported('feed_forward_proj', `Peregrine computes ${Object.keys(HF_ACTIVATIONS).join(', ')}`);
  const tiedField = raw.tie_word_embeddings;
  const layers = c.int('num_layers');
  return {
    vocab: c.int('vocab_size'), hidden: c.int('d_model'), heads: c.int('num_heads'), dKv: c.int('d_kv'), inner: c.int('d_ff'),
    encLayers: layers, decLayers: c.int('num_decoder_layers', layers), act, gated: parts.length === 2,
    buckets: c.int('relative_attention_num_buckets', 32), maxDistance: c.int('relative_attention_max_distance', 128),
    eps: c.number('layer_norm_epsilon', 1e-6),
    scaleOutput: c.bool('scale_decoder_outputs', tiedField !== false),
    tied: tiedField !== false,
    maxPositions: T5_POSITIONS,
    decoderStart: c.optionalInt('decoder_start_token_id') ?? 0,
    eos: c.tokenIds('eos_token_id'),
  };
}

function loadWeights(backend: Backend, ckpt: Checkpoint, c: T5Config) {
  const { hidden: H, inner: F } = c;
  const A = c.heads * c.dKv;
  const rms = (name: string): Norm => ({ kind: 'rms', gamma: ckpt.load(backend, name + '.weight', [H]), beta: null, eps: c.eps });
  const W = (name: string, shape: number[]) => ckpt.load(backend, name + '.weight', shape);
  const attnW = (p: string) => ({
    qkvW: ckpt.loadStacked(backend, ['q', 'k', 'v'].map((x) => `${p}.${x}.weight`), [A, H]),
    oW: W(p + '.o', [H, A]),
  });
  const ffn = (p: string) => ({
    // gate | up, as gatedActivation takes them
    inW: c.gated ? ckpt.loadStacked(backend, [p + '.DenseReluDense.wi_0.weight', p + '.DenseReluDense.wi_1.weight'], [F, H]) : W(p + '.DenseReluDense.wi', [F, H]),
    outW: W(p + '.DenseReluDense.wo', [H, F]),
    norm: rms(p + '.layer_norm'),
  });
  const encoder = Array.from({ length: c.encLayers }, (_, l) => {
    const p = `encoder.block.${l}.layer`;
    return { self: { ...attnW(p + '.0.SelfAttention'), norm: rms(p + '.0.layer_norm') }, ffn: ffn(p + '.1') };
  });
  const decoder = Array.from({ length: c.decLayers }, (_, l) => {
    const p = `decoder.block.${l}.layer`, x = p + '.1.EncDecAttention';
    const cross = {
      qW: W(x + '.q', [A, H]), kvW: ckpt.loadStacked(backend, [x + '.k.weight', x + '.v.weight'], [A, H]), kvB: null,
      oW: W(x + '.o', [H, A]), norm: rms(p + '.1.layer_norm'),
    };
    return { self: { ...attnW(p + '.0.SelfAttention'), norm: rms(p + '.0.layer_norm') }, cross, ffn: ffn(p + '.2') };
  });
  const table = (stack: string) => ckpt.load(backend, `${stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight`, [c.buckets, c.heads]);
  const shared = ['shared.weight', 'encoder.embed_tokens.weight'];
  const untied = !c.tied && ckpt.store.has('lm_head.weight');
  const decNorm = 'decoder.final_layer_norm.weight';
  return {
    tok: ckpt.load(backend, shared, [c.vocab, H]),
    encBias: table('encoder'), decBias: table('decoder'),
    encoder, decoder,
    encFinal: rms('encoder.final_layer_norm'),
    // v1.0 scales the decoder output by d_model^-0.5 before the head: folded into the final norm's gains
    decFinal: { kind: 'rms', gamma: c.scaleOutput ? loadScaled(backend, ckpt, [decNorm], [H], H ** -0.5) : ckpt.load(backend, decNorm, [H]), beta: null, eps: c.eps } as Norm,
    lmHead: untied ? W('lm_head', [c.vocab, H]) : null,
  };
}

type Weights = ReturnType<typeof loadWeights>;

class T5 implements CausalLM, Seq2Seq {
  readonly eosTokenIds: number[];
  readonly cacheWidth: number;
  readonly memoryWidth: number;
  readonly prefixCacheable = false;
  readonly decoderStart: number;
  readonly maxSourcePositions = T5_POSITIONS;
  readonly seq2seq: Seq2Seq = this;
  private readonly w: Weights;

  constructor(backend: Backend, private readonly cfg: T5Config, ckpt: Checkpoint, readonly info: ModelInfo) {
    this.eosTokenIds = cfg.eos;
    this.cacheWidth = this.memoryWidth = cfg.heads * cfg.dKv;
    this.decoderStart = cfg.decoderStart;
    this.w = loadWeights(backend, ckpt, cfg);
  }

  /** T5 does not scale scores; `table` null: no bias (cross-attention). */
  private shape(p: Pass, table: Tensor | null, bidirectional: boolean): AttentionShape {
    const c = this.cfg;
    const bias: RelativeBias | null = table && { table, buckets: c.buckets, maxDistance: c.maxDistance, bidirectional, positions: p.positions };
    return { heads: c.heads, kvHeads: c.heads, headDim: c.dKv, scale: 1, window: 0, bias };
  }

  private ffn(p: Pass, x: Tensor, f: Weights['encoder'][number]['ffn']): void {
    const b = p.ops, n = p.n, T = p.capacity, F = this.cfg.inner, normed = p.buffer('normed', [T, this.cfg.hidden]);
    const fc = p.buffer('fc', [T, F]), out = p.buffer('proj', [T, this.cfg.hidden]);
    if (this.cfg.gated) {
      const both = p.buffer('gate-up', [T, 2 * F]);
      b.normLinear(both, x, f.norm, f.inW, null, 'none', n, normed);
      b.gatedActivation(fc, both, this.cfg.act, n);
    } else {
      b.normLinear(fc, x, f.norm, f.inW, null, this.cfg.act, n, normed);
    }
    b.linearResidual(x, fc, f.outW, null, n, out);
  }

  encode(p: Pass): void {
    const b = p.ops, n = p.n, T = p.capacity, H = this.cfg.hidden, A = this.memoryWidth, w = this.w;
    const x = p.buffer('enc-residual', [T, H]);
    const qkv = p.buffer('qkv', [T, 3 * A]), attn = p.buffer('attn', [T, A]);
    const normed = p.buffer('normed', [T, H]), proj = p.buffer('proj', [T, H]);
    const shape = this.shape(p, w.encBias, true);
    const { k, v } = p.cache(0);
    b.embed(x, p.ids, p.positions, w.tok, null, null, null, n);
    for (const L of w.encoder) {
      b.normLinear(qkv, x, L.self.norm, L.self.qkvW, null, 'none', n, normed);
      b.attendEncoder(attn, qkv, k, v, p.blockTables, p.slots, p.positions, p.keyLens, shape, n, p.segments!);
      b.linearResidual(x, attn, L.self.oW, null, n, proj);
      this.ffn(p, x, L.ffn);
    }
    memoryKV(p, x, w.encFinal, w.decoder.map((L) => L.cross), A);
  }

  forward(p: Pass): Tensor {
    const b = p.ops, n = p.n, T = p.capacity, H = this.cfg.hidden, A = this.memoryWidth, w = this.w;
    const memory = p.memory!;
    const x = p.buffer('dec-residual', [T, H]);
    const qkv = p.buffer('qkv', [T, 3 * A]), attn = p.buffer('attn', [T, A]), q = p.buffer('q', [T, A]);
    const normed = p.buffer('normed', [T, H]), proj = p.buffer('proj', [T, H]);
    const self = this.shape(p, w.decBias, false), cross = this.shape(p, null, false);
    b.embed(x, p.ids, p.positions, w.tok, null, null, null, n);
    w.decoder.forEach((L, l) => {
      const { k, v } = p.cache(l);
      b.normLinear(qkv, x, L.self.norm, L.self.qkvW, null, 'none', n, normed);
      if (p.segments) {
        b.writeKV(qkv, k, v, p.blockTables, p.slots, p.positions, n);
        b.attend(attn, qkv, k, v, p.blockTables, p.slots, p.keyLens, self, n, p.segments);
      } else {
        b.decodeAttention(attn, qkv, k, v, p.blockTables, p.slots, p.keyLens, self, n);
      }
      b.linearResidual(x, attn, L.self.oW, null, n, proj);
      b.normLinear(q, x, L.cross.norm, L.cross.qW, null, 'none', n, normed);
      const m = memory.cache(l);
      b.crossAttention(attn, q, m.k, m.v, memory.blockTables, p.slots, memory.lengths, cross, n);
      b.linearResidual(x, attn, L.cross.oW, null, n, proj);
      this.ffn(p, x, L.ffn);
    });
    return x;
  }

  logits(p: Pass, x: Tensor, out: Tensor, n: number): void {
    const w = this.w;
    p.ops.normLinear(out, x, w.decFinal, w.lmHead ?? w.tok, null, 'none', n, p.buffer('finalNormed', [p.capacity, this.cfg.hidden]));
  }

  weights(): Tensor[] {
    return weightTensors([this.w]);
  }
}

function info(raw: Record<string, unknown>, className: string): ModelInfo {
  const c = readConfig(raw);
  const H = c.hidden, A = c.heads * c.dKv, F = c.inner;
  const attn = 4 * A * H + H, ffn = (c.gated ? 3 : 2) * F * H + H;
  const parameters = c.vocab * H * (c.tied ? 1 : 2) + 2 * c.buckets * c.heads + 2 * H + c.encLayers * (attn + ffn) + c.decLayers * (2 * attn + ffn);
  return seq2seqInfo(className, c, c.heads, parameters);
}

export const t5: Architecture = {
  classNames: ['T5ForConditionalGeneration'],
  modelTypes: ['t5'],
  kind: 'causal-lm',
  info,
  cacheWidth: (raw) => {
    const c = readConfig(raw);
    return c.heads * c.dKv;
  },
  create(backend: Backend, dir: ModelDir, className: string): CausalLM {
    const cfg = readConfig(dir.config);
    const ckpt = new Checkpoint(dir.weights, '', `d_model=${cfg.hidden}, d_kv=${cfg.dKv}, num_heads=${cfg.heads}, d_ff=${cfg.inner}, vocab_size=${cfg.vocab}`);
    return new T5(backend, cfg, ckpt, info(dir.config, className));
  },
};
