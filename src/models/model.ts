// What the engine sees of a model, whichever backend runs it.
import type { ModelDir } from '../loaders/model-dir.js';
import type { Backend, Tensor } from '../ops/backend.js';
import type { PlannedBuffer } from '../ops/plan.js';

/** One forward pass over packed tokens: a prefill chunk, or one decode token per sequence. */
export interface StepInput {
  n: number;
  ids: Int32Array;
  positions: Int32Array;
  /** KV-cache slot of each token's sequence */
  slots: Int32Array;
  /** rows whose logits are wanted (a sequence's last token), in output order */
  outRows: Int32Array;
  outCount: number;
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
  /** Logits [step.outCount, vocab]; the array is valid until the next call. */
  forward(step: StepInput): Float32Array;
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
  /** The memory a CPU load would take for `batch` sequences of `seqLen` tokens, without loading weights. */
  plan(config: Record<string, unknown>, className: string, batch: number, seqLen: number): MemoryReport;
  create(backend: Backend, dir: ModelDir, className: string): CausalLM | EncoderModel;
}

export function weightBytes(tensors: Tensor[]): number {
  let total = 0;
  for (const t of tensors) total += t.shape.reduce((a, d) => a * d, 1) * (t.dtype === 'f32' || t.dtype === 'i32' ? 4 : 2);
  return total;
}
