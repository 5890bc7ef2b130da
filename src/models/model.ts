// What the engine sees of a model, whichever backend runs it.
import type { ModelDir } from '../loaders/model-dir.js';
import { dtypeBytes, type Backend, type DType, type Tensor } from '../ops/backend.js';
import type { PlannedBuffer } from '../ops/plan.js';

/** One prefill pass over packed prompt tokens (a chunk of them). */
export interface StepInput {
  n: number;
  ids: Int32Array;
  positions: Int32Array;
  /** KV-cache slot of each token's sequence */
  slots: Int32Array;
  /** rows holding a sequence's last prompt token, and that sequence's slot */
  outRows: Int32Array;
  outSlots: Int32Array;
  outCount: number;
}

/** Decode-step state that stays on the device between steps (rows are cache slots 0 .. n-1). */
export interface DecodeIO {
  /** [batch] i32: the token each row feeds in next; the sampler writes it */
  ids: Tensor;
  /** [batch] i32: that token's position */
  positions: Tensor;
  /** [batch] i32: positions + 1 */
  keyLens: Tensor;
  /** [batch] i32: 0 .. batch-1 (the random stream of each row) */
  slots: Tensor;
  /** [batch, SAMPLING_FIELDS] i32 */
  sampling: Tensor;
  /** [batch, vocab] f32 */
  logits: Tensor;
}

export interface MemoryReport {
  /** bytes per region: weights, kv-cache, activations */
  regions: { name: string; bytes: number }[];
  /** the activation arena's buffers, their offsets and sizes */
  buffers: PlannedBuffer[];
  capacity: Record<string, number>;
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

export interface CausalLM {
  readonly info: ModelInfo;
  readonly eosTokenId: number | undefined;
  /**
   * Makes room for `batch` sequences of up to `seqLen` tokens, prefilled `prefillChunk` tokens per forward
   * pass; allocates only when the current plan differs.
   */
  reserve(batch: number, seqLen: number, prefillChunk?: number): void;
  /** what the current plan holds; `chunk` is the most tokens one forward pass takes */
  readonly capacity: { batch: number; seqLen: number; chunk: number };
  readonly backend: Backend;
  /** decode state and logits (valid after reserve) */
  readonly io: DecodeIO;
  /** Runs packed prompt tokens; keeps the final hidden state of each outRows[i] for sequence outSlots[i]. */
  prefill(step: StepInput): void;
  /** io.logits rows 0 .. n-1 from the hidden states prefill kept. */
  prefillLogits(n: number): void;
  /** One token for each of slots 0 .. n-1, from io.ids at io.positions; logits into io.logits. */
  decode(n: number): void;
  memory(): MemoryReport;
  dispose(): void;
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
}

export interface EncoderModel {
  readonly info: ModelInfo;
  readonly numLabels: number;
  readonly labels: string[];
  encode(seqs: Int32Array[], want: { pooling?: 'cls' | 'mean'; classify?: boolean }): EncoderOutput;
  memory(): MemoryReport;
  dispose(): void;
}

export interface Architecture {
  /** Hugging Face class names in config.json's "architectures" */
  classNames: string[];
  /** config.json "model_type" values, used when "architectures" is absent */
  modelTypes: string[];
  kind: 'causal-lm' | 'encoder';
  /** Reads the config (errors on bad fields) without touching the weights. */
  info(config: Record<string, unknown>, className: string): ModelInfo;
  /** The memory a load would take for `batch` sequences of `seqLen` tokens in `dtype`, without loading weights. */
  plan(config: Record<string, unknown>, className: string, batch: number, seqLen: number, dtype: DType): MemoryReport;
  create(backend: Backend, dir: ModelDir, className: string): CausalLM | EncoderModel;
}

export function weightBytes(tensors: Tensor[]): number {
  let total = 0;
  for (const t of tensors) total += t.shape.reduce((a, d) => a * d, 1) * dtypeBytes(t.dtype);
  return total;
}
