// GPT-2 (GPT2LMHeadModel): pre-LayerNorm decoder, learned positions, gelu_new, LM head tied to wte.
// Written once over the op set; every backend runs this file.
import { fail } from '../errors.js';
import type { ModelDir } from '../loaders/model-dir.js';
import { dtypeBytes, packSegments, SAMPLING_FIELDS, type Backend, type DType, type Segments, type Tensor } from '../ops/backend.js';
import { allocateArena, planArena, type Arena, type BufferRequest } from '../ops/plan.js';
import { ConfigReader, divides } from './config.js';
import { weightBytes, type Architecture, type CausalLM, type DecodeIO, type MemoryReport, type ModelInfo, type StepInput } from './model.js';
import { Checkpoint, detectPrefix } from './weights.js';

interface Gpt2Config {
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  inner: number;
  maxPositions: number;
  eps: number;
  eos?: number;
}

function readConfig(raw: Record<string, unknown>): Gpt2Config {
  const c = new ConfigReader(raw, 'GPT-2 config');
  const hidden = c.int(['n_embd', 'hidden_size']);
  const heads = c.int(['n_head', 'num_attention_heads']);
  divides('GPT-2 config', 'n_embd', hidden, heads);
  const act = c.string('activation_function', 'gelu_new');
  if (act !== 'gelu_new' && act !== 'gelu_pytorch_tanh') {
    fail('bad-config', `GPT-2 config: activation_function ${JSON.stringify(act)} is not supported (Peregrine runs gelu_new)`);
  }
  return {
    vocab: c.int('vocab_size'),
    hidden,
    layers: c.int(['n_layer', 'num_hidden_layers']),
    heads,
    inner: c.optionalInt('n_inner') || 4 * hidden,
    maxPositions: c.int(['n_positions', 'max_position_embeddings']),
    eps: c.number('layer_norm_epsilon', 1e-5),
    eos: c.tokenId('eos_token_id'),
  };
}

interface LayerWeights {
  ln1g: Tensor; ln1b: Tensor;
  qkvW: Tensor; qkvB: Tensor; // [3H, H], [3H]
  projW: Tensor; projB: Tensor;
  ln2g: Tensor; ln2b: Tensor;
  fcW: Tensor; fcB: Tensor; // [inner, H]
  fc2W: Tensor; fc2B: Tensor; // [H, inner]
}

function loadWeights(backend: Backend, ckpt: Checkpoint, cfg: Gpt2Config) {
  const { hidden: H, inner: F } = cfg;
  // GPT-2's Conv1D stores [in, out]; the op set takes [out, in]
  const layers: LayerWeights[] = [];
  for (let l = 0; l < cfg.layers; l++) {
    const p = `h.${l}.`;
    layers.push({
      ln1g: ckpt.load(backend, p + 'ln_1.weight', [H]),
      ln1b: ckpt.load(backend, p + 'ln_1.bias', [H]),
      qkvW: ckpt.load(backend, p + 'attn.c_attn.weight', [3 * H, H], true),
      qkvB: ckpt.load(backend, p + 'attn.c_attn.bias', [3 * H]),
      projW: ckpt.load(backend, p + 'attn.c_proj.weight', [H, H], true),
      projB: ckpt.load(backend, p + 'attn.c_proj.bias', [H]),
      ln2g: ckpt.load(backend, p + 'ln_2.weight', [H]),
      ln2b: ckpt.load(backend, p + 'ln_2.bias', [H]),
      fcW: ckpt.load(backend, p + 'mlp.c_fc.weight', [F, H], true),
      fcB: ckpt.load(backend, p + 'mlp.c_fc.bias', [F]),
      fc2W: ckpt.load(backend, p + 'mlp.c_proj.weight', [H, F], true),
      fc2B: ckpt.load(backend, p + 'mlp.c_proj.bias', [H]),
    });
  }
  const wte = ckpt.load(backend, 'wte.weight', [cfg.vocab, H]);
  // an untied head is stored outside the "transformer." prefix
  const untied = ckpt.store.has('lm_head.weight') && ckpt.prefix !== '';
  const lmHead = untied
    ? new Checkpoint(ckpt.store, '', `n_embd=${H}, vocab_size=${cfg.vocab}`).load(backend, 'lm_head.weight', [cfg.vocab, H])
    : wte;
  return {
    wte,
    wpe: ckpt.load(backend, 'wpe.weight', [cfg.maxPositions, H]),
    lnfg: ckpt.load(backend, 'ln_f.weight', [H]),
    lnfb: ckpt.load(backend, 'ln_f.bias', [H]),
    lmHead,
    layers,
  };
}

export const DEFAULT_PREFILL_CHUNK = 256;

/** Rows one forward pass may hold: a whole decode batch, or a prefill chunk. */
function chunkFor(batch: number, prefillChunk = DEFAULT_PREFILL_CHUNK): number {
  return Math.max(batch, prefillChunk);
}

/** Activation buffers of one forward pass over T rows, with their lifetimes in steps of one layer. */
function arenaRequests(cfg: Gpt2Config, batch: number, T: number, act: DType): BufferRequest[] {
  const { hidden: H, inner: F, vocab: V } = cfg;
  const whole = (name: string, shape: number[], dtype: DType) => ({ name, shape, dtype, first: 0, last: 11 });
  // steps: 1 ln_1 + qkv, 2 writeKV, 3 attend, 4 proj + residual, 6 ln_2 + fc, 7 fc2 + residual, 9 gather, 10 ln_f + head
  return [
    whole('residual', [T, H], act),
    // LayerNorm output where the backend does not fuse it into the GEMM
    whole('normed', [T, H], act),
    { name: 'qkv', shape: [T, 3 * H], dtype: act, first: 1, last: 3 },
    { name: 'attn', shape: [T, H], dtype: act, first: 3, last: 4 },
    { name: 'proj', shape: [T, H], dtype: act, first: 4, last: 4 },
    { name: 'fc', shape: [T, F], dtype: act, first: 6, last: 7 },
    { name: 'fc2', shape: [T, H], dtype: act, first: 7, last: 7 },
    // the residual stream at the last prompt token of each sequence, kept across prefill chunks
    whole('last', [batch, H], act),
    whole('lastNormed', [batch, H], act),
    // logits stay fp32 for sampling, whatever the compute dtype
    whole('logits', [batch, V], 'f32'),
    ...['ids', 'positions', 'slots', 'keyLens', 'srcRows', 'dstRows'].map((name) => whole(name, [T], 'i32')),
    whole('segments', [T, 3], 'i32'),
    // decode-step state, on the device between steps: input ids, positions, key lengths, slot of each row
    ...['decIds', 'decPositions', 'decKeyLens', 'decSlots'].map((name) => whole(name, [batch], 'i32')),
    whole('sampling', [batch, SAMPLING_FIELDS], 'i32'),
  ];
}

function report(cfg: Gpt2Config, weights: number, batch: number, seqLen: number, act: DType, chunk = chunkFor(batch)): MemoryReport {
  const arena = planArena(arenaRequests(cfg, batch, chunk, act));
  return {
    regions: [
      { name: 'weights', bytes: weights },
      { name: 'kv-cache', bytes: 2 * cfg.layers * batch * seqLen * cfg.hidden * dtypeBytes(act) },
      { name: 'activations', bytes: batch ? arena.bytes : 0 },
    ],
    buffers: batch ? arena.buffers : [],
    capacity: { batch, seqLen, chunk: batch ? chunk : 0 },
  };
}

class Gpt2 implements CausalLM {
  readonly info: ModelInfo;
  readonly eosTokenId: number | undefined;
  capacity = { batch: 0, seqLen: 0, chunk: 0 };
  private readonly w: ReturnType<typeof loadWeights>;
  private arena: Arena | null = null;
  private kv: { k: Tensor; v: Tensor }[] = [];
  private keyLens = new Int32Array(0);
  private segments = new Int32Array(0);

  constructor(readonly backend: Backend, private readonly cfg: Gpt2Config, ckpt: Checkpoint, info: ModelInfo) {
    this.info = info;
    this.eosTokenId = cfg.eos;
    this.w = loadWeights(backend, ckpt, cfg);
  }

  get io(): DecodeIO {
    const a = this.arena!.buffers;
    return { ids: a.decIds, positions: a.decPositions, keyLens: a.decKeyLens, slots: a.decSlots, sampling: a.sampling, logits: a.logits };
  }

  reserve(batch: number, seqLen: number, prefillChunk?: number): void {
    const c = this.capacity;
    const fits = batch <= c.batch && seqLen <= c.seqLen;
    if (fits && (prefillChunk === undefined || chunkFor(c.batch, prefillChunk) === c.chunk)) return;
    batch = Math.max(batch, c.batch);
    seqLen = Math.max(seqLen, c.seqLen);
    const T = chunkFor(batch, prefillChunk ?? (c.chunk || undefined));
    this.release();
    const act = this.backend.activationDtype;
    this.arena = allocateArena(this.backend, planArena(arenaRequests(this.cfg, batch, T, act)));
    for (let l = 0; l < this.cfg.layers; l++) {
      const H = this.cfg.hidden;
      this.kv.push({ k: this.backend.buffer([batch, seqLen, H], act), v: this.backend.buffer([batch, seqLen, H], act) });
    }
    this.keyLens = new Int32Array(T);
    this.segments = new Int32Array(3 * T);
    this.backend.writeInt(this.arena.buffers.decSlots, Int32Array.from({ length: batch }, (_, i) => i), batch);
    this.capacity = { batch, seqLen, chunk: T };
  }

  prefill(s: StepInput): void {
    const b = this.backend;
    const a = this.arena!.buffers;
    for (let i = 0; i < s.n; i++) this.keyLens[i] = s.positions[i] + 1;
    b.writeInt(a.ids, s.ids, s.n);
    b.writeInt(a.positions, s.positions, s.n);
    b.writeInt(a.slots, s.slots, s.n);
    b.writeInt(a.keyLens, this.keyLens, s.n);
    b.writeInt(a.srcRows, s.outRows, s.outCount);
    b.writeInt(a.dstRows, s.outSlots, s.outCount);
    const segments = packSegments(s.slots, s.n, this.segments);
    b.writeInt(a.segments, this.segments, 3 * segments.count);
    this.layers(s.n, a.ids, a.positions, a.slots, a.keyLens, { table: a.segments, ...segments });
    b.gatherRows(a.last, a.residual, a.srcRows, a.dstRows, s.outCount);
  }

  prefillLogits(n: number): void {
    const a = this.arena!.buffers;
    const w = this.w;
    this.backend.normLinear(a.logits, a.last, w.lnfg, w.lnfb, this.cfg.eps, w.lmHead, null, 'none', n, a.lastNormed);
  }

  decode(n: number): void {
    const a = this.arena!.buffers;
    const w = this.w;
    this.layers(n, a.decIds, a.decPositions, a.decSlots, a.decKeyLens, null);
    this.backend.normLinear(a.logits, a.residual, w.lnfg, w.lnfb, this.cfg.eps, w.lmHead, null, 'none', n, a.normed);
  }

  /** Embedding, every layer, and ln_f, over n packed tokens; the result is in `normed`. */
  /**
   * Embedding and every layer over n packed tokens, leaving the residual stream (ln_f is applied with the
   * head). With segments: prompt tokens (cache write, then prompt attention); without: one decode token per row.
   */
  private layers(n: number, ids: Tensor, positions: Tensor, slots: Tensor, keyLens: Tensor, segments: Segments | null): void {
    const b = this.backend;
    const a = this.arena!.buffers;
    const { hidden: H, heads, eps } = this.cfg;
    const w = this.w;
    const shape = { heads, headDim: H / heads, scale: 1 / Math.sqrt(H / heads) };
    b.embed(a.residual, ids, positions, w.wte, w.wpe, null, null, n);
    for (let l = 0; l < w.layers.length; l++) {
      const L = w.layers[l];
      const { k, v } = this.kv[l];
      b.normLinear(a.qkv, a.residual, L.ln1g, L.ln1b, eps, L.qkvW, L.qkvB, 'none', n, a.normed);
      if (segments) {
        b.writeKV(a.qkv, k, v, slots, positions, n);
        b.attend(a.attn, a.qkv, k, v, slots, keyLens, shape, n, segments);
      } else {
        b.decodeAttention(a.attn, a.qkv, k, v, slots, keyLens, shape, n);
      }
      b.linearResidual(a.residual, a.attn, L.projW, L.projB, n, a.proj);
      b.normLinear(a.fc, a.residual, L.ln2g, L.ln2b, eps, L.fcW, L.fcB, 'gelu_tanh', n, a.normed);
      b.linearResidual(a.residual, a.fc, L.fc2W, L.fc2B, n, a.fc2);
    }
  }

  memory(): MemoryReport {
    const w = this.w;
    const tensors = [w.wte, w.wpe, w.lnfg, w.lnfb, ...(w.lmHead === w.wte ? [] : [w.lmHead]), ...w.layers.flatMap((L) => Object.values(L))];
    return report(this.cfg, weightBytes(tensors), this.capacity.batch, this.capacity.seqLen, this.backend.activationDtype, this.capacity.chunk);
  }

  private release(): void {
    this.backend.invalidateGraphs();
    if (this.arena) this.backend.free(this.arena.region);
    for (const { k, v } of this.kv) {
      this.backend.free(k);
      this.backend.free(v);
    }
    this.arena = null;
    this.kv = [];
  }

  dispose(): void {
    this.release();
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
  plan(raw: Record<string, unknown>, className: string, batch: number, seqLen: number, dtype: DType): MemoryReport {
    return report(readConfig(raw), info(raw, className).parameters * dtypeBytes(dtype), batch, seqLen, dtype);
  },
  create(backend: Backend, dir: ModelDir, className: string): CausalLM {
    const cfg = readConfig(dir.config);
    const prefix = detectPrefix(dir.weights, ['transformer.', ''], 'wte.weight', 'GPT-2');
    const ckpt = new Checkpoint(dir.weights, prefix, `n_embd=${cfg.hidden}, n_layer=${cfg.layers}, vocab_size=${cfg.vocab}, n_positions=${cfg.maxPositions}`);
    return new Gpt2(backend, cfg, ckpt, info(dir.config, className));
  },
};
