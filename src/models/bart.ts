// BART (BartForConditionalGeneration), mBART (MBartForConditionalGeneration) and Marian (MarianMTModel): one
// encoder-decoder with three variants. BART and Marian are post-LayerNorm (each sublayer is added to its input,
// then normalized); mBART is pre-LayerNorm with a final LayerNorm after each stack. BART and mBART learn their
// positions (table rows offset by 2) and normalize the embeddings (layernorm_embedding); Marian adds fixed
// sinusoidal positions. The LM head is the shared embedding (or lm_head.weight, untied) plus final_logits_bias.
import type { ModelDir } from '../loaders/model-dir.js';
import type { Activation, AttentionShape, Backend, Norm, Tensor } from '../ops/backend.js';
import { ConfigReader, divides } from './config.js';
import type { Architecture, CausalLM, ModelInfo, Pass, Seq2Seq } from './model.js';
import { loadScaled, memoryKV, seq2seqInfo, sinusoidTable, type Seq2SeqDims } from './seq2seq.js';
import { Checkpoint, weightTensors } from './weights.js';

type Variant = 'bart' | 'mbart' | 'marian';

interface BartConfig extends Seq2SeqDims {
  variant: Variant;
  encHeads: number;
  decHeads: number;
  encInner: number;
  decInner: number;
  act: Activation;
  /** sqrt(d_model) with scale_embedding, else 1 */
  embedScale: number;
  tied: boolean;
}

const EPS = 1e-5;

/**
 * Every field of BartConfig / MBartConfig / MarianConfig that changes what is computed: d_model, the layer,
 * head and FFN sizes of each stack, activation_function, max_position_embeddings, scale_embedding,
 * tie_word_embeddings, vocab_size (Marian: decoder_vocab_size must equal it, share_encoder_decoder_embeddings
 * must be true), decoder_start_token_id and eos_token_id. Dropouts do nothing at inference.
 */
function readConfig(raw: Record<string, unknown>, variant: Variant): BartConfig {
  const c = new ConfigReader(raw, `${variant === 'marian' ? 'Marian' : variant === 'mbart' ? 'mBART' : 'BART'} config`);
  const hidden = c.int('d_model');
  const encHeads = c.int('encoder_attention_heads'), decHeads = c.int('decoder_attention_heads');
  divides('config', 'd_model', hidden, encHeads);
  divides('config', 'd_model', hidden, decHeads);
  const vocab = c.int('vocab_size');
  if (variant === 'marian') {
    if (c.int('decoder_vocab_size', vocab) !== vocab) c.unsupported('decoder_vocab_size', 'a decoder vocabulary other than the encoder\'s');
    if (!c.bool('share_encoder_decoder_embeddings', true)) c.unsupported('share_encoder_decoder_embeddings', 'separate encoder and decoder embeddings');
  }
  return {
    variant, vocab, hidden, encHeads, decHeads,
    encLayers: c.int('encoder_layers'), decLayers: c.int('decoder_layers'),
    encInner: c.int('encoder_ffn_dim'), decInner: c.int('decoder_ffn_dim'),
    maxPositions: c.int('max_position_embeddings'),
    act: c.activation('activation_function', 'gelu'),
    embedScale: c.bool('scale_embedding', false) ? Math.sqrt(hidden) : 1,
    tied: c.bool('tie_word_embeddings', true),
    decoderStart: c.optionalInt('decoder_start_token_id') ?? (variant === 'marian' ? c.optionalInt('pad_token_id') ?? 0 : 2),
    eos: c.tokenIds('eos_token_id'),
  };
}

interface Attn {
  qkvW: Tensor; qkvB: Tensor; // [3H, H]
  oW: Tensor; oB: Tensor;
  norm: Norm;
}

interface CrossAttn {
  qW: Tensor; qB: Tensor;
  kvW: Tensor; kvB: Tensor; // [2H, H]: applied to the encoder output once per request
  oW: Tensor; oB: Tensor;
  norm: Norm;
}

interface Ffn {
  fc1W: Tensor; fc1B: Tensor;
  fc2W: Tensor; fc2B: Tensor;
  norm: Norm;
}

function loadWeights(backend: Backend, ckpt: Checkpoint, c: BartConfig) {
  const H = c.hidden;
  const norm = (name: string): Norm => ({ kind: 'layer', gamma: ckpt.load(backend, name + '.weight', [H]), beta: ckpt.load(backend, name + '.bias', [H]), eps: EPS });
  const W = (name: string, shape: number[]) => ckpt.load(backend, name + '.weight', shape);
  const B = (name: string, n: number) => ckpt.load(backend, name + '.bias', [n]);
  const stacked = (p: string, parts: string[]) => ({
    w: ckpt.loadStacked(backend, parts.map((x) => `${p}.${x}.weight`), [H, H]),
    b: ckpt.loadStacked(backend, parts.map((x) => `${p}.${x}.bias`), [H]),
  });
  const attn = (p: string, normName: string): Attn => {
    const qkv = stacked(p, ['q_proj', 'k_proj', 'v_proj']);
    return { qkvW: qkv.w, qkvB: qkv.b, oW: W(p + '.out_proj', [H, H]), oB: B(p + '.out_proj', H), norm: norm(normName) };
  };
  const ffn = (p: string, F: number): Ffn => ({
    fc1W: W(p + '.fc1', [F, H]), fc1B: B(p + '.fc1', F), fc2W: W(p + '.fc2', [H, F]), fc2B: B(p + '.fc2', H), norm: norm(p + '.final_layer_norm'),
  });
  const encoder = Array.from({ length: c.encLayers }, (_, l) => {
    const p = `model.encoder.layers.${l}`;
    return { self: attn(p + '.self_attn', p + '.self_attn_layer_norm'), ffn: ffn(p, c.encInner) };
  });
  const decoder = Array.from({ length: c.decLayers }, (_, l) => {
    const p = `model.decoder.layers.${l}`;
    const kv = stacked(p + '.encoder_attn', ['k_proj', 'v_proj']);
    const cross: CrossAttn = {
      qW: W(p + '.encoder_attn.q_proj', [H, H]), qB: B(p + '.encoder_attn.q_proj', H), kvW: kv.w, kvB: kv.b,
      oW: W(p + '.encoder_attn.out_proj', [H, H]), oB: B(p + '.encoder_attn.out_proj', H), norm: norm(p + '.encoder_attn_layer_norm'),
    };
    return { self: attn(p + '.self_attn', p + '.self_attn_layer_norm'), cross, ffn: ffn(p, c.decInner) };
  });
  const shared = ['model.shared.weight', 'model.encoder.embed_tokens.weight'];
  const tok = ckpt.load(backend, shared, [c.vocab, H]);
  // the embeddings times sqrt(d_model) (scale_embedding): a scaled copy, since the tied head reads them unscaled
  const input = c.embedScale === 1 ? tok : loadScaled(backend, ckpt, shared, [c.vocab, H], c.embedScale);
  const learned = c.variant !== 'marian';
  const positions = (stack: string) => learned
    ? ckpt.loadRows(backend, `model.${stack}.embed_positions.weight`, [c.maxPositions + 2, H], 2)
    : null;
  const sinusoids = learned ? null : sinusoidTable(backend, c.maxPositions, H);
  const embNorm = (stack: string) => (learned ? norm(`model.${stack}.layernorm_embedding`) : null);
  const finalNorm = (stack: string) => (c.variant === 'mbart' ? norm(`model.${stack}.layer_norm`) : null);
  return {
    input, encPos: positions('encoder') ?? sinusoids!, decPos: positions('decoder') ?? sinusoids!,
    encEmbNorm: embNorm('encoder'), decEmbNorm: embNorm('decoder'), encFinal: finalNorm('encoder'), decFinal: finalNorm('decoder'),
    encoder, decoder,
    lmHead: c.tied ? tok : ckpt.load(backend, 'lm_head.weight', [c.vocab, H]),
    logitsBias: ckpt.store.has('final_logits_bias') ? backend.weight(ckpt.raw('final_logits_bias', [1, c.vocab]), [c.vocab]) : null,
  };
}

type Weights = ReturnType<typeof loadWeights>;

class Bart implements CausalLM, Seq2Seq {
  readonly eosTokenIds: number[];
  readonly cacheWidth: number;
  readonly memoryWidth: number;
  /** every decoder sequence starts with the same token, but its keys depend on its own source */
  readonly prefixCacheable = false;
  readonly decoderStart: number;
  readonly maxSourcePositions: number;
  readonly seq2seq: Seq2Seq = this;
  private readonly w: Weights;
  private readonly encShape: AttentionShape;
  private readonly decShape: AttentionShape;
  private readonly pre: boolean;

  constructor(backend: Backend, private readonly cfg: BartConfig, ckpt: Checkpoint, readonly info: ModelInfo) {
    this.eosTokenIds = cfg.eos;
    this.cacheWidth = this.memoryWidth = cfg.hidden;
    this.decoderStart = cfg.decoderStart;
    this.maxSourcePositions = cfg.maxPositions;
    this.w = loadWeights(backend, ckpt, cfg);
    const shape = (heads: number): AttentionShape => ({ heads, kvHeads: heads, headDim: cfg.hidden / heads, scale: 1 / Math.sqrt(cfg.hidden / heads), window: 0 });
    this.encShape = shape(cfg.encHeads);
    this.decShape = shape(cfg.decHeads);
    this.pre = cfg.variant === 'mbart';
  }

  /** Embedding (times embedScale) + positions, then layernorm_embedding where the variant has it; returns the residual stream. */
  private embed(p: Pass, pos: Tensor, norm: Norm | null, prefix: string): Tensor {
    const b = p.ops, T = p.capacity, H = this.cfg.hidden;
    const x = p.buffer(prefix + 'residual', [T, H]);
    if (!norm) {
      b.embed(x, p.ids, p.positions, this.w.input, pos, null, null, p.n);
      return x;
    }
    const e = p.buffer(prefix + 'embedded', [T, H]);
    b.embed(e, p.ids, p.positions, this.w.input, pos, null, null, p.n);
    b.layerNorm(x, e, norm.gamma, norm.beta!, EPS, p.n);
    return x;
  }

  /**
   * One sublayer around x: pre-LN adds f(LN(x)) to x; post-LN makes x = LN(x + f(x)). `body` computes from x
   * (given the norm to fuse into its first GEMM under pre-LN) and returns the output projection's input and weights.
   */
  private sublayer(p: Pass, x: Tensor, norm: Norm, body: (input: Tensor | null, normed: Norm | null) => { y: Tensor; w: Tensor; bias: Tensor }): void {
    const b = p.ops, n = p.n, T = p.capacity, H = this.cfg.hidden;
    if (this.pre) {
      const { y, w, bias } = body(null, norm);
      b.linearResidual(x, y, w, bias, n, p.buffer('proj', [T, H]));
      return;
    }
    const { y, w, bias } = body(x, null);
    const proj = p.buffer('proj', [T, H]);
    b.linear(proj, y, w, null, 'none', n);
    b.addBiasResidualLayerNorm(x, x, proj, bias, x, norm.gamma, norm.beta!, EPS, n);
  }

  /** out = act(LN?(x) w^T + bias): a GEMM whose input is normalized first under pre-LN. */
  private project(p: Pass, out: Tensor, x: Tensor, normed: Norm | null, w: Tensor, bias: Tensor | null, act: Activation): void {
    if (normed) p.ops.normLinear(out, x, normed, w, bias, act, p.n, p.buffer('normed', [p.capacity, this.cfg.hidden]));
    else p.ops.linear(out, x, w, bias, act, p.n);
  }

  private ffn(p: Pass, x: Tensor, f: Ffn, inner: number): void {
    const fc = p.buffer('fc', [p.capacity, inner]);
    this.sublayer(p, x, f.norm, (input, normed) => {
      this.project(p, fc, input ?? x, normed, f.fc1W, f.fc1B, this.cfg.act);
      return { y: fc, w: f.fc2W, bias: f.fc2B };
    });
  }

  encode(p: Pass): void {
    const b = p.ops, n = p.n, T = p.capacity, H = this.cfg.hidden, w = this.w;
    const x = this.embed(p, w.encPos, w.encEmbNorm, 'enc-');
    const qkv = p.buffer('qkv', [T, 3 * H]), attn = p.buffer('attn', [T, H]);
    // the encoder's own keys and values go through the first memory cache, before its memory is written
    const { k, v } = p.cache(0);
    for (const L of w.encoder) {
      this.sublayer(p, x, L.self.norm, (input, normed) => {
        this.project(p, qkv, input ?? x, normed, L.self.qkvW, L.self.qkvB, 'none');
        b.attendEncoder(attn, qkv, k, v, p.blockTables, p.slots, p.positions, p.keyLens, this.encShape, n, p.segments!);
        return { y: attn, w: L.self.oW, bias: L.self.oB };
      });
      this.ffn(p, x, L.ffn, this.cfg.encInner);
    }
    memoryKV(p, x, w.encFinal, w.decoder.map((L) => L.cross), H);
  }

  forward(p: Pass): Tensor {
    const b = p.ops, n = p.n, T = p.capacity, H = this.cfg.hidden, w = this.w;
    const memory = p.memory!;
    const x = this.embed(p, w.decPos, w.decEmbNorm, 'dec-');
    const qkv = p.buffer('qkv', [T, 3 * H]), attn = p.buffer('attn', [T, H]), q = p.buffer('q', [T, H]);
    w.decoder.forEach((L, l) => {
      const { k, v } = p.cache(l);
      this.sublayer(p, x, L.self.norm, (input, normed) => {
        this.project(p, qkv, input ?? x, normed, L.self.qkvW, L.self.qkvB, 'none');
        if (p.segments) {
          b.writeKV(qkv, k, v, p.blockTables, p.slots, p.positions, n);
          b.attend(attn, qkv, k, v, p.blockTables, p.slots, p.keyLens, this.decShape, n, p.segments);
        } else {
          b.decodeAttention(attn, qkv, k, v, p.blockTables, p.slots, p.keyLens, this.decShape, n);
        }
        return { y: attn, w: L.self.oW, bias: L.self.oB };
      });
      this.sublayer(p, x, L.cross.norm, (input, normed) => {
        this.project(p, q, input ?? x, normed, L.cross.qW, L.cross.qB, 'none');
        const m = memory.cache(l);
        b.crossAttention(attn, q, m.k, m.v, memory.blockTables, p.slots, memory.lengths, this.decShape, n);
        return { y: attn, w: L.cross.oW, bias: L.cross.oB };
      });
      this.ffn(p, x, L.ffn, this.cfg.decInner);
    });
    return x;
  }

  logits(p: Pass, x: Tensor, out: Tensor, n: number): void {
    const w = this.w;
    const bias = w.logitsBias;
    if (w.decFinal) p.ops.normLinear(out, x, w.decFinal, w.lmHead, bias, 'none', n, p.buffer('finalNormed', [p.capacity, this.cfg.hidden]));
    else p.ops.linear(out, x, w.lmHead, bias, 'none', n);
  }

  weights(): Tensor[] {
    return weightTensors([this.w]);
  }
}

function architecture(variant: Variant, classNames: string[], modelType: string): Architecture {
  const info = (raw: Record<string, unknown>, className: string): ModelInfo => {
    const c = readConfig(raw, variant);
    const H = c.hidden;
    const attn = 4 * (H * H + H) + 2 * H;
    const ffn = (F: number) => 2 * F * H + F + 3 * H;
    const positions = variant === 'marian' ? 0 : 2 * (c.maxPositions + 2) * H;
    const parameters = c.vocab * H * (c.tied ? 1 : 2) + positions + c.encLayers * (attn + ffn(c.encInner)) + c.decLayers * (2 * attn + ffn(c.decInner));
    return seq2seqInfo(className, c, c.decHeads, parameters);
  };
  return {
    classNames, modelTypes: [modelType], kind: 'causal-lm', info,
    cacheWidth: (raw) => readConfig(raw, variant).hidden,
    create(backend: Backend, dir: ModelDir, className: string): CausalLM {
      const cfg = readConfig(dir.config, variant);
      const ckpt = new Checkpoint(dir.weights, '', `d_model=${cfg.hidden}, vocab_size=${cfg.vocab}, max_position_embeddings=${cfg.maxPositions}`);
      return new Bart(backend, cfg, ckpt, info(dir.config, className));
    },
  };
}

export const bart = architecture('bart', ['BartForConditionalGeneration'], 'bart');
export const mbart = architecture('mbart', ['MBartForConditionalGeneration'], 'mbart');
export const marian = architecture('marian', ['MarianMTModel'], 'marian');
