// GPT-2 (GPT2LMHeadModel): pre-LayerNorm decoder, learned positions, gelu_new (by default), LM head tied to wte.
// Written once over the op set; every backend runs this file.
import type { ModelDir } from '../loaders/model-dir.js';
import type { Activation, AttentionShape, Backend, Norm, PipelineStage, Tensor } from '../ops/backend.js';
import { ConfigReader, divides } from './config.js';
import type { Architecture, CausalLM, ModelInfo, Pass } from './model.js';
import { stageInput, stageLayers, stageLogits, stageOutput, type StageLayers } from './stages.js';
import { Checkpoint, detectPrefix, weightTensors } from './weights.js';

interface Gpt2Config {
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  inner: number;
  maxPositions: number;
  eps: number;
  /** the MLP's activation (activation_function) */
  act: Activation;
  /** softmax(q k^T * scale) of layer l (a function: the layer count is not trusted before the weights are found) */
  attentionScale(layer: number): number;
  eos: number[];
}

/**
 * Every field of GPT2Config that changes what is computed (dropout does not at inference; add_cross_attention
 * does not without encoder states):
 * - layer_norm_epsilon, n_inner, activation_function (any name in activations.ts);
 * - scale_attn_weights (divide scores by sqrt(head size), default true) and scale_attn_by_inverse_layer_idx
 *   (divide layer l's scores by l + 1): each layer's attention scale;
 * - reorder_and_upcast_attn: Hugging Face computes the scores and softmax in fp32 under fp16 instead of in
 *   fp16. Peregrine's attention kernels always do (kernels/attention.cu: q is scaled and dotted with k in
 *   fp32, the softmax and the weighted sum of v are fp32), so the flag changes nothing here;
 * - pruned_heads: refused unless empty.
 */
function readConfig(raw: Record<string, unknown>): Gpt2Config {
  const c = new ConfigReader(raw, 'GPT-2 config');
  const hidden = c.int(['n_embd', 'hidden_size']);
  const heads = c.int(['n_head', 'num_attention_heads']);
  divides('GPT-2 config', 'n_embd', hidden, heads);
  const layers = c.int(['n_layer', 'num_hidden_layers']);
  const scaleWeights = c.bool('scale_attn_weights', true);
  const byLayer = c.bool('scale_attn_by_inverse_layer_idx', false);
  c.bool('reorder_and_upcast_attn', false);
  c.noPrunedHeads();
  const base = scaleWeights ? 1 / Math.sqrt(hidden / heads) : 1;
  return {
    vocab: c.int('vocab_size'),
    hidden,
    layers,
    heads,
    inner: c.optionalInt('n_inner') || 4 * hidden,
    maxPositions: c.int(['n_positions', 'max_position_embeddings']),
    eps: c.number('layer_norm_epsilon', 1e-5),
    act: c.activation('activation_function', 'gelu_new'),
    attentionScale: (l) => (byLayer ? base / (l + 1) : base),
    eos: c.tokenIds('eos_token_id'),
  };
}

interface LayerWeights {
  ln1: Norm;
  qkvW: Tensor; qkvB: Tensor; // [3H, H], [3H]
  projW: Tensor; projB: Tensor;
  ln2: Norm;
  fcW: Tensor; fcB: Tensor; // [inner, H]
  fc2W: Tensor; fc2B: Tensor; // [H, inner]
}

/** The weights of pipeline stage `stage` (every one without a pipeline): its layers, and the embeddings and the head where it has them. */
function loadWeights(backend: Backend, ckpt: Checkpoint, cfg: Gpt2Config, stage: StageLayers) {
  const { hidden: H, inner: F } = cfg;
  const norm = (name: string): Norm => ({ kind: 'layer', gamma: ckpt.load(backend, name + '.weight', [H]), beta: ckpt.load(backend, name + '.bias', [H]), eps: cfg.eps });
  // GPT-2's Conv1D stores [in, out]; the op set takes [out, in] (quantized at load as [out, in] under --quantize)
  const layers: LayerWeights[] = [];
  for (let l = stage.first; l < stage.end; l++) {
    const p = `h.${l}.`;
    layers.push({
      ln1: norm(p + 'ln_1'),
      qkvW: ckpt.loadMatrix(backend, p + 'attn.c_attn.weight', [3 * H, H], true),
      qkvB: ckpt.load(backend, p + 'attn.c_attn.bias', [3 * H]),
      projW: ckpt.loadMatrix(backend, p + 'attn.c_proj.weight', [H, H], true),
      projB: ckpt.load(backend, p + 'attn.c_proj.bias', [H]),
      ln2: norm(p + 'ln_2'),
      fcW: ckpt.loadMatrix(backend, p + 'mlp.c_fc.weight', [F, H], true),
      fcB: ckpt.load(backend, p + 'mlp.c_fc.bias', [F]),
      fc2W: ckpt.loadMatrix(backend, p + 'mlp.c_proj.weight', [H, F], true),
      fc2B: ckpt.load(backend, p + 'mlp.c_proj.bias', [H]),
    });
  }
  // an untied head is stored outside the "transformer." prefix
  const untied = ckpt.store.has('lm_head.weight') && ckpt.prefix !== '';
  const wte = stage.embeds || (stage.heads && !untied) ? ckpt.load(backend, 'wte.weight', [cfg.vocab, H]) : null;
  const wpe = stage.embeds ? ckpt.load(backend, 'wpe.weight', [cfg.maxPositions, H]) : null;
  if (!stage.heads) return { wte, wpe, lnf: null, lmHead: null, layers };
  const lmHead = untied
    ? new Checkpoint(ckpt.store, '', `n_embd=${H}, vocab_size=${cfg.vocab}`).load(backend, 'lm_head.weight', [cfg.vocab, H])
    : wte;
  return { wte, wpe, lnf: norm('ln_f'), lmHead, layers };
}

class Gpt2 implements CausalLM {
  readonly eosTokenIds: number[];
  readonly cacheWidth: number;
  readonly prefixCacheable = true;
  private readonly w: ReturnType<typeof loadWeights>;
  /** each of this stage's layers' attention shape: the scale is a per-layer scalar of the attention ops */
  private readonly shapes: AttentionShape[];
  /** the pipeline stage this rank runs (null: every layer) */
  private readonly pp: PipelineStage | null;
  readonly cacheLayers: number;

  constructor(backend: Backend, private readonly cfg: Gpt2Config, ckpt: Checkpoint, readonly info: ModelInfo) {
    this.eosTokenIds = cfg.eos;
    this.cacheWidth = cfg.hidden;
    this.pp = backend.pipeline;
    // the LM head's weights over a layer's, for balancing the stages
    const stage = stageLayers(cfg.layers, this.pp, (cfg.vocab * cfg.hidden) / (4 * cfg.hidden * cfg.hidden + 2 * cfg.inner * cfg.hidden));
    this.cacheLayers = stage.end - stage.first;
    this.w = loadWeights(backend, ckpt, cfg, stage);
    this.shapes = this.w.layers.map((_, l) => ({ heads: cfg.heads, kvHeads: cfg.heads, headDim: cfg.hidden / cfg.heads, scale: cfg.attentionScale(stage.first + l), window: 0 }));
  }

  forward(p: Pass): Tensor {
    const b = p.ops, n = p.n, T = p.capacity;
    const { hidden: H, inner: F, act } = this.cfg;
    const w = this.w;
    const x = p.buffer('residual', [T, H]);
    // LayerNorm output where the backend does not fuse it into the GEMM
    const normed = p.buffer('normed', [T, H]);
    const qkv = p.buffer('qkv', [T, 3 * H]), attn = p.buffer('attn', [T, H]), proj = p.buffer('proj', [T, H]);
    const fc = p.buffer('fc', [T, F]), fc2 = p.buffer('fc2', [T, H]);
    stageInput(p, x, this.pp, () => b.embed(x, p.ids, p.positions, w.wte!, w.wpe, null, null, n));
    for (let l = 0; l < w.layers.length; l++) {
      const L = w.layers[l], shape = this.shapes[l];
      const { k, v } = p.cache(l);
      b.normLinear(qkv, x, L.ln1, L.qkvW, L.qkvB, 'none', n, normed);
      if (p.segments) {
        b.writeKV(qkv, k, v, p.blockTables, p.slots, p.positions, n);
        b.attend(attn, qkv, k, v, p.blockTables, p.slots, p.keyLens, shape, n, p.segments);
      } else {
        b.decodeAttention(attn, qkv, k, v, p.blockTables, p.slots, p.keyLens, shape, n);
      }
      b.linearResidual(x, attn, L.projW, L.projB, n, proj);
      b.normLinear(fc, x, L.ln2, L.fcW, L.fcB, act, n, normed);
      b.linearResidual(x, fc, L.fc2W, L.fc2B, n, fc2);
    }
    stageOutput(p, x, this.pp);
    return x;
  }

  logits(p: Pass, x: Tensor, out: Tensor, n: number): void {
    const w = this.w;
    stageLogits(p, out, n, this.pp, () => p.ops.normLinear(out, x, w.lnf!, w.lmHead!, null, 'none', n, p.buffer('finalNormed', [p.capacity, this.cfg.hidden])));
  }

  weights(): Tensor[] {
    const w = this.w, head = w.lmHead && w.lmHead !== w.wte ? [w.lmHead] : [];
    return [...[w.wte, w.wpe].filter((t) => t !== null), ...head, ...weightTensors([...(w.lnf ? [w.lnf] : []), ...w.layers])];
  }
}

function info(raw: Record<string, unknown>, className: string): ModelInfo {
  const c = readConfig(raw);
  const { vocab: V, hidden: H, inner: F, maxPositions: P, layers } = c;
  const perLayer = 4 * H + (3 * H * H + 3 * H) + (H * H + H) + (F * H + F) + (F * H + H);
  return {
    architecture: className, kind: 'causal-lm', vocabSize: V, hidden: H, layers, heads: c.heads, maxPositions: P,
    parameters: V * H + P * H + 2 * H + layers * perLayer,
  };
}

export const gpt2: Architecture = {
  classNames: ['GPT2LMHeadModel', 'GPT2Model'],
  modelTypes: ['gpt2'],
  kind: 'causal-lm',
  info,
  cacheWidth: (raw) => readConfig(raw).hidden,
  quantizes: true,
  pipelineParallel: true,
  create(backend: Backend, dir: ModelDir, className: string): CausalLM {
    const cfg = readConfig(dir.config);
    const prefix = detectPrefix(dir.weights, ['transformer.', ''], 'wte.weight', 'GPT-2');
    const ckpt = new Checkpoint(dir.weights, prefix, `n_embd=${cfg.hidden}, n_layer=${cfg.layers}, vocab_size=${cfg.vocab}, n_positions=${cfg.maxPositions}`, dir);
    return new Gpt2(backend, cfg, ckpt, info(dir.config, className));
  },
};
