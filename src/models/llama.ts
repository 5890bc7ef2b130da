// The Llama family (LlamaForCausalLM: Llama 2 / 3 / 3.1 / 3.2; MistralForCausalLM; Qwen2ForCausalLM; Qwen3ForCausalLM):
// pre-RMSNorm decoder, rotary positions, grouped-query attention, SwiGLU MLP, tied or untied LM head.
// Written once over the op set; every backend runs this file. The checkpoint's q, k and v projections are
// stacked into one GEMM (and gate and up into another) at load.
import { fail, show } from '../errors.js';
import type { ModelDir } from '../loaders/model-dir.js';
import { isQuantType } from '../loaders/quant.js';
import type { Activation, AttentionShape, Backend, HeadNorms, Norm, ParallelRank, PipelineStage, Rotary, Tensor } from '../ops/backend.js';
import { ConfigReader, divides } from './config.js';
import type { Architecture, CausalLM, ModelInfo, Pass } from './model.js';
import { divideRates, readRope, type RopeSpec } from './rope.js';
import { shardStore, type Cut } from './shard.js';
import { stageInput, stageLayers, stageLogits, stageOutput, type StageLayers } from './stages.js';
import { Checkpoint, detectPrefix, f32Table, weightTensors } from './weights.js';

type Family = 'llama' | 'mistral' | 'qwen2' | 'qwen3';

interface LlamaConfig {
  family: Family;
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  inner: number;
  eps: number;
  act: Activation;
  tied: boolean;
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  headNorms: boolean;
  /** each layer's sliding window (0: full attention) */
  windows: number[];
  rope: RopeSpec;
  eos: number[];
}

/**
 * Every config field that changes what is computed:
 * - hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads (default: heads),
 *   head_dim (default hidden / heads), rms_norm_eps, hidden_act (any name in activations.ts), tie_word_embeddings;
 * - attention_bias (Llama, Qwen3: q, k, v and o), mlp_bias (Llama); Qwen2 always has q/k/v biases;
 * - rope_theta / rope_scaling or rope_parameters (rope.ts); partial rotary factors are refused;
 * - sliding windows: Mistral's sliding_window on every layer; Qwen2/3's use_sliding_window with sliding_window
 *   and max_window_layers, or layer_types (per layer "full_attention" / "sliding_attention");
 * - Qwen3's q_norm/k_norm are in every Qwen3 checkpoint.
 * pretraining_tp only splits the same products across slices (the sums are the same); dropout does nothing at inference.
 */
const MAX_LAYERS = 4096;

function readConfig(raw: Record<string, unknown>, family: Family): LlamaConfig {
  const where = `${family === 'llama' ? 'Llama' : family === 'mistral' ? 'Mistral' : family === 'qwen2' ? 'Qwen2' : 'Qwen3'} config`;
  const c = new ConfigReader(raw, where);
  const hidden = c.int('hidden_size');
  const heads = c.int('num_attention_heads');
  const kvHeads = c.int('num_key_value_heads', heads);
  if (heads % kvHeads !== 0) fail('bad-config', `${where}: num_attention_heads (${heads}) is not a multiple of num_key_value_heads (${kvHeads}); fix config.json`);
  let headDim = c.optionalInt('head_dim') || 0;
  if (!headDim) {
    divides(where, 'hidden_size', hidden, heads);
    headDim = hidden / heads;
  }
  const layers = c.int('num_hidden_layers');
  // the largest published models have a few hundred; a count beyond this is a broken config, not a model to build
  if (layers > MAX_LAYERS) fail('bad-config', `${where}: num_hidden_layers ${layers} is beyond the ${MAX_LAYERS} layers Peregrine builds; fix the config`);
  const maxPositions = c.int('max_position_embeddings', 2048);
  const attentionBias = c.bool('attention_bias', false);
  return {
    family, vocab: c.int('vocab_size'), hidden, layers, heads, kvHeads, headDim,
    inner: c.int('intermediate_size'),
    eps: c.number('rms_norm_eps', 1e-6),
    act: c.activation('hidden_act', 'silu'),
    tied: c.bool('tie_word_embeddings', false),
    qkvBias: family === 'qwen2' || (family !== 'mistral' && attentionBias),
    oBias: (family === 'llama' || family === 'qwen3') && attentionBias,
    mlpBias: family === 'llama' && c.bool('mlp_bias', false),
    headNorms: family === 'qwen3',
    windows: readWindows(raw, c, family, layers, where),
    rope: readRope(raw, headDim, maxPositions, where),
    eos: c.tokenIds('eos_token_id'),
  };
}

function readWindows(raw: Record<string, unknown>, c: ConfigReader, family: Family, layers: number, where: string): number[] {
  if (family === 'llama') return new Array(layers).fill(0);
  const size = c.optionalInt('sliding_window') ?? 0;
  if (family === 'mistral') return new Array(layers).fill(size);
  if (!c.bool('use_sliding_window', false) || size === 0) return new Array(layers).fill(0);
  const types = raw.layer_types;
  if (types !== undefined && types !== null) {
    if (!Array.isArray(types) || types.length !== layers || !types.every((t) => t === 'full_attention' || t === 'sliding_attention')) {
      fail('bad-config', `${where}: "layer_types" must list "full_attention" or "sliding_attention" for each of the ${layers} layers, got ${show(types)}; fix config.json`);
    }
    return types.map((t) => (t === 'sliding_attention' ? size : 0));
  }
  const from = c.optionalInt('max_window_layers') ?? layers;
  return Array.from({ length: layers }, (_, l) => (l >= from ? size : 0));
}

interface LayerWeights {
  ln1: Norm;
  qkvW: Tensor; qkvB: Tensor | null; // [(heads + 2 kvHeads) headDim, H]
  oW: Tensor; oB: Tensor | null;
  headNorms: HeadNorms | null;
  ln2: Norm;
  gateUpW: Tensor; gateUpB: Tensor | null; // [2F, H]
  downW: Tensor; downB: Tensor | null;
}

/** A vocabulary-parallel rank's rows of the embedding and the LM head: ids first .. first + rows - 1. */
interface VocabSlice { first: number; rows: number }

/** The weights of pipeline stage `stage` (every one without a pipeline): its layers, and the embedding and the head where it has them. */
function loadWeights(backend: Backend, ckpt: Checkpoint, cfg: LlamaConfig, slice: VocabSlice | null, stage: StageLayers) {
  const { hidden: H, inner: F, heads, kvHeads, headDim: D, eps } = cfg;
  const Q = heads * D, KV = kvHeads * D;
  const norm = (name: string, width = H): Norm => ({ kind: 'rms', gamma: ckpt.load(backend, name, [width]), beta: null, eps });
  const layers: LayerWeights[] = [];
  for (let l = stage.first; l < stage.end; l++) {
    const p = `layers.${l}.`, a = p + 'self_attn.', m = p + 'mlp.';
    const stack = (names: string[], rows: number[], suffix: string, cols?: number) =>
      ckpt.loadConcat(backend, names.map((n, i) => ({ name: n + suffix, shape: cols === undefined ? [rows[i]] : [rows[i], cols] })), cols !== undefined);
    layers.push({
      ln1: norm(p + 'input_layernorm.weight'),
      qkvW: stack([a + 'q_proj', a + 'k_proj', a + 'v_proj'], [Q, KV, KV], '.weight', H),
      qkvB: cfg.qkvBias ? stack([a + 'q_proj', a + 'k_proj', a + 'v_proj'], [Q, KV, KV], '.bias') : null,
      oW: ckpt.loadMatrix(backend, a + 'o_proj.weight', [H, Q]),
      oB: cfg.oBias ? ckpt.load(backend, a + 'o_proj.bias', [H]) : null,
      headNorms: cfg.headNorms ? { q: ckpt.load(backend, a + 'q_norm.weight', [D]), k: ckpt.load(backend, a + 'k_norm.weight', [D]), eps } : null,
      ln2: norm(p + 'post_attention_layernorm.weight'),
      gateUpW: stack([m + 'gate_proj', m + 'up_proj'], [F, F], '.weight', H),
      gateUpB: cfg.mlpBias ? stack([m + 'gate_proj', m + 'up_proj'], [F, F], '.bias') : null,
      downW: ckpt.loadMatrix(backend, m + 'down_proj.weight', [H, F]),
      downB: cfg.mlpBias ? ckpt.load(backend, m + 'down_proj.bias', [H]) : null,
    });
  }
  const V = slice ? slice.rows : cfg.vocab;
  // the head sits outside the "model." prefix; a tied checkpoint may still carry a copy of it. A tied head over a
  // quantized embedding (GGUF) is the quantized matrix itself, while the embedding lookup reads a dequantized copy
  const quantizedTable = isQuantType(ckpt.store.info(ckpt.prefix + 'embed_tokens.weight').dtype);
  const embed = stage.embeds || (stage.heads && cfg.tied && !quantizedTable) ? ckpt.load(backend, 'embed_tokens.weight', [V, H]) : null;
  if (!stage.heads) return { embed, lmHead: null, norm: null, layers };
  const lmHead = !cfg.tied ? new Checkpoint(ckpt.store, '', ckpt.implied, { scheme: ckpt.matrices.scheme }).loadMatrix(backend, 'lm_head.weight', [V, H])
    : quantizedTable ? ckpt.loadMatrix(backend, 'embed_tokens.weight', [V, H]) : embed;
  return { embed, lmHead, norm: norm('norm.weight'), layers };
}

class Llama implements CausalLM {
  readonly eosTokenIds: number[];
  readonly cacheWidth: number;
  readonly prefixCacheable: boolean;
  private readonly w: ReturnType<typeof loadWeights>;
  private readonly shapes: AttentionShape[];
  private readonly rotary: Rotary;
  /** this rank's slice of a tensor-parallel group (cfg then holds the rank's heads and MLP width), or null */
  private readonly tp: ParallelRank | null;
  /** the rank's rows of the embedding and the LM head where the group's size divides the vocabulary, else null */
  private readonly vocabSlice: VocabSlice | null;
  /** the pipeline stage this rank runs (null: every layer) */
  private readonly pp: PipelineStage | null;
  readonly cacheLayers: number;

  constructor(backend: Backend, private readonly cfg: LlamaConfig, ckpt: Checkpoint, readonly info: ModelInfo) {
    this.tp = backend.parallel;
    this.vocabSlice = vocabSlice(cfg, this.tp);
    this.pp = backend.pipeline;
    // the LM head's weights over a layer's (this rank's shares of both), for balancing the stages
    const { hidden: H, heads: Hq, kvHeads: Hkv, headDim: D, inner: F } = cfg;
    const stage = stageLayers(cfg.layers, this.pp, ((this.vocabSlice?.rows ?? cfg.vocab) * H) / (H * (2 * Hq + 2 * Hkv) * D + 3 * H * F));
    this.cacheLayers = stage.end - stage.first;
    this.eosTokenIds = cfg.eos;
    this.cacheWidth = cfg.kvHeads * cfg.headDim;
    this.prefixCacheable = cfg.rope.dynamic === null;
    this.w = loadWeights(backend, ckpt, cfg, this.vocabSlice, stage);
    // the stage's layers' attention shapes
    this.shapes = cfg.windows.slice(stage.first, stage.end).map((window) => ({ heads: Hq, kvHeads: Hkv, headDim: D, scale: 1 / Math.sqrt(D), window }));
    const r = cfg.rope;
    this.rotary = { invFreq: f32Table(backend, r.invFreq), dims: r.dims, scale: r.scale, dynamic: r.dynamic };
  }

  forward(p: Pass): Tensor {
    const b = p.ops, n = p.n, T = p.capacity;
    const { hidden: H, inner: F, heads, kvHeads, headDim: D, act } = this.cfg;
    const w = this.w;
    const x = p.buffer('residual', [T, H]);
    const normed = p.buffer('normed', [T, H]);
    const qkv = p.buffer('qkv', [T, (heads + 2 * kvHeads) * D]), attn = p.buffer('attn', [T, heads * D]), proj = p.buffer('proj', [T, H]);
    const gateUp = p.buffer('gateUp', [T, 2 * F]), mlp = p.buffer('mlp', [T, F]), down = p.buffer('down', [T, H]);
    const vs = this.vocabSlice;
    stageInput(p, x, this.pp, () => {
      if (vs) {
        // vocabulary-parallel: each rank looks up the ids in its rows (zeros for the others'), and the sum completes them
        b.embedSlice(x, p.ids, w.embed!, vs.first, n);
        b.allReduce(x, n);
      } else {
        b.embed(x, p.ids, p.positions, w.embed!, null, null, null, n);
      }
    });
    // tensor-parallel: the row-parallel projections' slices are summed by an all-reduce; rank 0 adds its slice's product,
    // the bias and the residual, the other ranks their slice's product alone (over the residual, whose value every rank
    // gets back from the sum)
    const partial = this.tp !== null && this.tp.rank > 0;
    for (let l = 0; l < w.layers.length; l++) {
      const L = w.layers[l], shape = this.shapes[l];
      const { k, v } = p.cache(l);
      b.normLinear(qkv, x, L.ln1, L.qkvW, L.qkvB, 'none', n, normed);
      b.rotary(qkv, p.positions, p.lengths, this.rotary, shape, L.headNorms, n);
      if (p.segments) {
        b.writeKV(qkv, k, v, p.blockTables, p.slots, p.positions, n);
        b.attend(attn, qkv, k, v, p.blockTables, p.slots, p.keyLens, shape, n, p.segments);
      } else {
        b.decodeAttention(attn, qkv, k, v, p.blockTables, p.slots, p.keyLens, shape, n);
      }
      if (partial) b.linear(x, attn, L.oW, null, 'none', n);
      else b.linearResidual(x, attn, L.oW, L.oB, n, proj);
      if (this.tp) b.allReduce(x, n);
      b.normLinear(gateUp, x, L.ln2, L.gateUpW, L.gateUpB, 'none', n, normed);
      if (partial) {
        b.gatedActivation(mlp, gateUp, act, n);
        b.linear(x, mlp, L.downW, null, 'none', n);
      } else {
        b.gatedLinearResidual(x, gateUp, act, L.downW, L.downB, n, mlp, down);
      }
      if (this.tp) b.allReduce(x, n);
    }
    stageOutput(p, x, this.pp);
    return x;
  }

  logits(p: Pass, x: Tensor, out: Tensor, n: number): void {
    const w = this.w, vs = this.vocabSlice;
    stageLogits(p, out, n, this.pp, () => {
      const normed = p.buffer('finalNormed', [p.capacity, this.cfg.hidden]);
      if (!vs) return p.ops.normLinear(out, x, w.norm!, w.lmHead!, null, 'none', n, normed);
      // vocabulary-parallel: each rank's logits for its ids, gathered side by side in rank order
      const part = p.buffer('logitsSlice', [out.shape[0], vs.rows], 'f32');
      p.ops.normLinear(part, x, w.norm!, w.lmHead!, null, 'none', n, normed);
      p.ops.allGather(out, part, n);
    });
  }

  weights(): Tensor[] {
    const w = this.w, head = w.lmHead && w.lmHead !== w.embed ? [w.lmHead] : [];
    return [...(w.embed ? [w.embed] : []), ...head, this.rotary.invFreq, ...weightTensors([...(w.norm ? [w.norm] : []), ...w.layers])];
  }
}

/**
 * A tensor-parallel rank's share of the model (Megatron-style): its query and KV heads (so the KV cache of a rank holds
 * its heads alone) and its slice of the MLP's width; refused by name where the group's size does not divide them.
 */
function rankConfig(cfg: LlamaConfig, tp: ParallelRank): LlamaConfig {
  const need = (field: string, value: number) => {
    if (value % tp.size !== 0) fail('unsupported-config', `${field} (${value}) is not a multiple of the tensor-parallel size ${tp.size}; use a size that divides it`);
    return value / tp.size;
  };
  return { ...cfg, heads: need('num_attention_heads', cfg.heads), kvHeads: need('num_key_value_heads', cfg.kvHeads), inner: need('intermediate_size', cfg.inner) };
}

/**
 * Rank `tp.rank`'s rows of the embedding and the LM head (vocabulary-parallel, as Megatron splits them), where the
 * group's size divides the vocabulary; otherwise every rank holds them whole.
 */
function vocabSlice(cfg: LlamaConfig, tp: ParallelRank | null): VocabSlice | null {
  if (!tp || cfg.vocab % tp.size !== 0) return null;
  const rows = cfg.vocab / tp.size;
  return { first: tp.rank * rows, rows };
}

/**
 * q, k, v, gate and up are column-parallel (cut along their outputs, with their biases); o and down row-parallel; the
 * embedding and the LM head cut along the vocabulary when `vocab` (they are whole otherwise).
 */
function cutOf(vocab: boolean): (name: string) => Cut | null {
  return (name) => {
    if (/\.(self_attn\.[qkv]_proj|mlp\.(gate|up)_proj)\.(weight|bias)$/.test(name)) return 0;
    if (/\.(self_attn\.o_proj|mlp\.down_proj)\.weight$/.test(name)) return 1;
    if (vocab && /(^|\.)embed_tokens\.weight$|^lm_head\.weight$/.test(name)) return 0;
    return null;
  };
}

function info(raw: Record<string, unknown>, className: string, family: Family): ModelInfo {
  const c = readConfig(raw, family);
  const { vocab: V, hidden: H, inner: F, heads, kvHeads, headDim: D, layers } = c;
  const Q = heads * D, KV = kvHeads * D;
  const perLayer = 2 * H + H * (Q + 2 * KV) + (c.qkvBias ? Q + 2 * KV : 0) + Q * H + (c.oBias ? H : 0) + (c.headNorms ? 2 * D : 0) +
    3 * H * F + (c.mlpBias ? 2 * F + H : 0);
  return {
    architecture: className, kind: 'causal-lm', vocabSize: V, hidden: H, layers, heads, maxPositions: c.rope.maxPositions,
    parameters: V * H * (c.tied ? 1 : 2) + H + layers * perLayer,
  };
}

function architecture(family: Family, classNames: string[], modelTypes: string[]): Architecture {
  return {
    classNames, modelTypes, kind: 'causal-lm', quantizes: true, tensorParallel: true, pipelineParallel: true,
    info: (raw, className) => info(raw, className, family),
    cacheWidth: (raw) => {
      const c = readConfig(raw, family);
      return c.kvHeads * c.headDim;
    },
    create(backend: Backend, dir: ModelDir, className: string): CausalLM {
      const whole = readConfig(dir.config, family);
      if (dir.ropeFactors) whole.rope = divideRates(whole.rope, dir.ropeFactors);
      const prefix = detectPrefix(dir.weights, ['model.', ''], 'embed_tokens.weight', classNames[0]);
      const tp = backend.parallel;
      if (tp && dir.scheme) {
        fail('unsupported-config', `config.json's quantization_config (${dir.scheme.method}) names a checkpoint tensor parallelism does not split yet `
          + '(it splits F32, F16 and BF16 weights); load it without tensor parallelism');
      }
      if (tp && dir.quantize) fail('unsupported-config', `quantize (${dir.quantize}) does not combine with tensor parallelism yet; load with one or the other`);
      const cfg = tp ? rankConfig(whole, tp) : whole;
      const implied = `hidden_size=${cfg.hidden}, num_attention_heads=${cfg.heads}, num_key_value_heads=${cfg.kvHeads}, head_dim=${cfg.headDim}, ` +
        `intermediate_size=${cfg.inner}, num_hidden_layers=${cfg.layers}, vocab_size=${cfg.vocab}` + (tp ? ` (rank ${tp.rank} of ${tp.size}'s slice)` : '');
      const weights = tp ? shardStore(dir.weights, tp, cutOf(vocabSlice(cfg, tp) !== null)) : dir.weights;
      return new Llama(backend, cfg, new Checkpoint(weights, prefix, implied, dir), info(dir.config, className, family));
    },
  };
}

export const llama = architecture('llama', ['LlamaForCausalLM', 'LlamaModel'], ['llama']);
export const mistral = architecture('mistral', ['MistralForCausalLM', 'MistralModel'], ['mistral']);
export const qwen2 = architecture('qwen2', ['Qwen2ForCausalLM', 'Qwen2Model'], ['qwen2']);
export const qwen3 = architecture('qwen3', ['Qwen3ForCausalLM', 'Qwen3Model'], ['qwen3']);
