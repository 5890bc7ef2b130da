// What a model file provides: its config mapping, its weights and its forward pass over the op set. The
// runtime (src/runtime/) owns everything that lives across passes: the paged KV cache, the activation
// plan, the decode state and the captured graphs.
import type { ModelDir } from '../loaders/model-dir.js';
import { byteSize, type Backend, type DType, type Segments, type Tensor } from '../ops/backend.js';
import type { PlannedBuffer } from '../ops/plan.js';

/** One forward pass over packed rows, as a model sees it. */
export interface Pass {
  /** the op set: the backend, or a recorder while the runtime plans activation memory */
  readonly ops: Backend;
  /** rows the pass's buffers are planned for */
  readonly capacity: number;
  /** rows in this pass */
  readonly n: number;
  /** [capacity] i32 each: token id, position, sequence slot (block-table row) and keys attended to */
  readonly ids: Tensor;
  readonly positions: Tensor;
  readonly slots: Tensor;
  readonly keyLens: Tensor;
  /** [capacity] i32: the keys the pass brings each row's sequence to (keyLens of its last row in the pass; rotary's dynamic scaling) */
  readonly lengths: Tensor;
  /** [capacity] i32 token types (encoders), or null */
  readonly typeIds: Tensor | null;
  /** prompt rows grouped by sequence; null in a decode step (one row per sequence, attending with decodeAttention) */
  readonly segments: Segments | null;
  /** [slots, maxBlocks] i32 */
  readonly blockTables: Tensor;
  /** layer `l`'s paged K and V caches, [blocks, blockSize, cacheWidth] */
  cache(layer: number): { k: Tensor; v: Tensor };
  /** an encoder-decoder's memory (the encoder's keys and values per decoder layer), in a decoder pass; else null */
  readonly memory: MemoryInputs | null;
  /** The activation buffer `name` (the same tensor for the same name); its lifetime comes from the ops that use it. */
  buffer(name: string, shape: number[], dtype?: DType): Tensor;
}

/** The cross-attention memory of a decoder pass: read-only caches of each sequence's encoder output. */
export interface MemoryInputs {
  /** [slots, maxBlocks] i32 */
  blockTables: Tensor;
  /** [slots] i32: source tokens of each sequence's memory */
  lengths: Tensor;
  /** decoder layer `l`'s memory keys and values, [blocks, blockSize, memoryWidth] */
  cache(layer: number): { k: Tensor; v: Tensor };
}

/**
 * The encoder half of an encoder-decoder model. The runtime runs `encode` once per request over its source
 * tokens; the decoder then runs as a causal LM (CausalLM.forward) whose layers also attend to that memory.
 */
export interface Seq2Seq {
  /** the token every decoder sequence starts with (decoder_start_token_id) */
  readonly decoderStart: number;
  /** source tokens the encoder takes at most */
  readonly maxSourcePositions: number;
  /** values per source token per decoder layer in the memory's K cache (and V cache) */
  readonly memoryWidth: number;
  /**
   * The encoder over p.n packed source rows (a segment per sequence; p.keyLens: the source's length), then each
   * decoder layer l's cross-attention keys and values written into p.cache(l) at p.positions of sequence
   * p.slots through p.blockTables (the memory's tables). The encoder may use p.cache(0) as scratch first.
   */
  encode(p: Pass): void;
}

export interface ModelInfo {
  architecture: string;
  kind: 'causal-lm' | 'encoder';
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  maxPositions: number;
  /** logical parameter count (tied weights once) */
  parameters: number;
}

/** A decoder-only language model. */
export interface CausalLM {
  readonly info: ModelInfo;
  /** the end tokens of config.json / generation_config.json */
  readonly eosTokenIds: number[];
  /** values per token per layer in the K cache (and in the V cache) */
  readonly cacheWidth: number;
  /**
   * Whether a cached block's keys depend only on the tokens up to it, so that the prefix cache may hand it to
   * another sequence; not under dynamic NTK rotary, where they depend on the length of the pass that wrote them.
   */
  readonly prefixCacheable: boolean;
  /** set for an encoder-decoder model, whose decoder this is */
  readonly seq2seq?: Seq2Seq;
  /**
   * Layers whose KV caches this model keeps, p.cache(0 .. cacheLayers - 1): those of its pipeline stage (a model that
   * runs pipeline-parallel); absent: info.layers.
   */
  readonly cacheLayers?: number;
  /**
   * Embedding and every layer over p.n packed rows; returns the residual stream [capacity, hidden] after the last
   * layer. A pipeline stage's model runs its own layers, from and to the stages around it.
   */
  forward(p: Pass): Tensor;
  /** f32 logits [n, vocab] of n rows of x (the final norm and the LM head). */
  logits(p: Pass, x: Tensor, out: Tensor, n: number): void;
  /** every weight tensor, once */
  weights(): Tensor[];
}

export interface EncoderOutput {
  /** last hidden state of every token, packed [tokens, hidden] */
  hidden: Float32Array;
  /** first row of each sequence in `hidden` */
  starts: number[];
  lengths: number[];
  /** pooled vectors [sequences, hidden] when asked for */
  pooled?: Float32Array;
  /** sequence-classification logits [sequences, labels] when the model has a classifier and they were asked for */
  logits?: Float32Array;
  /** the token head's logits [rows, labels or vocab] (token classification, masked LM) at the packed rows `tokenRows` */
  tokenLogits?: Float32Array;
  tokenRows?: number[];
}

/**
 * The head an encoder checkpoint carries: a classifier over each sequence's first token, a classifier over
 * every token, or a language-model head over the vocabulary (masked LM, BertLMHeadModel, pre-training).
 */
export type EncoderTask = 'sequence-classification' | 'token-classification' | 'masked-lm';

/** A bidirectional encoder: forward over packed sequences, then pooling and the checkpoint's head. */
export interface Encoder {
  readonly info: ModelInfo;
  /** the head this checkpoint carries, or null */
  readonly task: EncoderTask | null;
  /** names of the classifier's outputs (sequence or token classification); [] without a classifier */
  readonly labels: string[];
  /** attention sees only the tokens up to each one (is_decoder: BertLMHeadModel, RobertaForCausalLM) */
  readonly causal: boolean;
  /** The last hidden states [capacity, hidden] of p.n packed rows (each segment is one sequence). */
  forward(p: Pass): Tensor;
  /**
   * The head's f32 logits [count, labels or vocab] over `count` rows of x [rows, hidden]: the first token of each
   * sequence for sequence classification, any tokens for the token heads.
   */
  head(p: Pass, x: Tensor, out: Tensor, count: number): void;
  weights(): Tensor[];
}

export interface MemoryReport {
  /** bytes per region: weights, kv-cache, activations, tables */
  regions: { name: string; bytes: number }[];
  /** the activation arena's buffers, their offsets and sizes */
  buffers: PlannedBuffer[];
  capacity: Record<string, number>;
}

export interface Architecture {
  /** Hugging Face class names in config.json's "architectures" */
  classNames: string[];
  /** config.json "model_type" values, used when "architectures" is absent */
  modelTypes: string[];
  kind: 'causal-lm' | 'encoder';
  /** Reads the config (errors on bad fields) without touching the weights. */
  info(config: Record<string, unknown>, className: string): ModelInfo;
  /** Values per token per layer in the K cache (causal LMs). */
  cacheWidth(config: Record<string, unknown>): number;
  create(backend: Backend, dir: ModelDir, className: string): CausalLM | Encoder;
  /** whether `create` quantizes the blocks' linear layers as the directory asks (ModelDir.quantize) */
  quantizes?: boolean;
  /** whether `create` builds the slice of a tensor-parallel rank when the backend is one (Backend.parallel) */
  tensorParallel?: boolean;
  /** whether `create` builds a pipeline stage's layers when the backend runs one (Backend.pipeline) */
  pipelineParallel?: boolean;
}

/** The layers whose KV caches `model` keeps (its pipeline stage's, or all of them). */
export function cacheLayers(model: CausalLM): number {
  return model.cacheLayers ?? model.info.layers;
}

export function tensorBytes(tensors: Tensor[]): number {
  let total = 0;
  for (const t of tensors) total += byteSize(t.shape, t.dtype);
  return total;
}
