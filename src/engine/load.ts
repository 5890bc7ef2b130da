// Loading a model by directory or hub id onto a backend, as a generator or an embedder.
import { createBackend, type Device, type FloatDType } from '../backends/select.js';
import { fail } from '../errors.js';
import { resolveModelDir, type HubOptions } from '../loaders/hub.js';
import { openModelDir } from '../loaders/model-dir.js';
import type { CausalLM, EncoderModel, MemoryReport, ModelInfo } from '../models/model.js';
import type { DType } from '../ops/backend.js';
import { findArchitecture } from '../models/registry.js';
import { Tokenizer } from '../tokenizers/tokenizer.js';
import { Embedder } from './embedder.js';
import { TextGenerator } from './generation.js';

export interface LoadOptions extends HubOptions {
  device?: Device;
  /** compute dtype on the GPU (default f16); the CPU computes in f32 */
  dtype?: FloatDType;
  /** plan memory at load for this many sequences ... */
  maxBatch?: number;
  /** ... of this many tokens (prompt + generated); otherwise memory is planned at the first request */
  maxSeqLen?: number;
  /** prompt tokens per forward pass during prefill (default 256): less memory, or bigger GEMMs */
  prefillChunk?: number;
}

export type LoadedModel =
  | { kind: 'causal-lm'; dir: string; generator: TextGenerator }
  | { kind: 'encoder'; dir: string; embedder: Embedder };

function positiveInt(v: number | undefined, what: string): void {
  if (v !== undefined && !(Number.isSafeInteger(v) && v >= 1)) fail('bad-argument', `${what} must be a whole number >= 1, got ${v}`);
}

export async function loadModel(nameOrPath: string, options: LoadOptions = {}): Promise<LoadedModel> {
  positiveInt(options.maxBatch, 'max batch');
  positiveInt(options.maxSeqLen, 'max sequence length');
  positiveInt(options.prefillChunk, 'prefill chunk');
  const dir = await resolveModelDir(nameOrPath, options);
  const md = openModelDir(dir);
  try {
    const { arch, className } = findArchitecture(md.config, `${dir}/config.json`);
    const info = arch.info(md.config, className);
    if (options.maxSeqLen !== undefined && options.maxSeqLen > info.maxPositions) {
      fail('bad-argument', `max sequence length ${options.maxSeqLen} is beyond the model's ${info.maxPositions} positions`);
    }
    const tokenizer = Tokenizer.fromDir(dir);
    const backend = createBackend(options.device, options.dtype);
    const model = arch.create(backend, md, className);
    if (arch.kind === 'causal-lm') {
      const lm = model as CausalLM;
      if (options.maxBatch || options.maxSeqLen || options.prefillChunk) {
        lm.reserve(options.maxBatch ?? 1, options.maxSeqLen ?? info.maxPositions, options.prefillChunk);
      }
      return { kind: 'causal-lm', dir, generator: new TextGenerator(lm, tokenizer) };
    }
    return { kind: 'encoder', dir, embedder: new Embedder(model as EncoderModel, tokenizer) };
  } finally {
    // every weight has been read (the CPU holds its own copies)
    md.weights.close();
  }
}

export async function loadGenerator(nameOrPath: string, options: LoadOptions = {}): Promise<TextGenerator> {
  const m = await loadModel(nameOrPath, options);
  if (m.kind !== 'causal-lm') fail('bad-request', `${nameOrPath} is an encoder (${m.embedder.model.info.architecture}); it cannot generate text, use embed`);
  return m.generator;
}

export async function loadEmbedder(nameOrPath: string, options: LoadOptions = {}): Promise<Embedder> {
  const m = await loadModel(nameOrPath, options);
  if (m.kind !== 'encoder') fail('bad-request', `${nameOrPath} is a causal LM (${m.generator.model.info.architecture}); embed needs an encoder such as BERT`);
  return m.embedder;
}

export interface Inspection {
  dir: string;
  info: ModelInfo;
  /** the backend and compute dtype the memory plan is for */
  device: string;
  dtype: DType;
  dtypes: { dtype: string; params: number; bytes: number }[];
  fileBytes: number;
  memory: MemoryReport;
}

/** Architecture, parameters, stored dtypes and the memory plan, without loading the weights. */
export async function inspectModel(nameOrPath: string, options: LoadOptions = {}): Promise<Inspection> {
  positiveInt(options.maxBatch, 'max batch');
  positiveInt(options.maxSeqLen, 'max sequence length');
  const dir = await resolveModelDir(nameOrPath, options);
  const md = openModelDir(dir);
  try {
    const { arch, className } = findArchitecture(md.config, `${dir}/config.json`);
    const backend = createBackend(options.device, options.dtype);
    const dtype = backend.activationDtype;
    const device = backend.name;
    backend.dispose();
    const info = arch.info(md.config, className);
    const dtypes = [...md.weights.dtypeSummary()].map(([dtype, v]) => ({ dtype, ...v }));
    const memory = arch.plan(md.config, className, options.maxBatch ?? 1, Math.min(options.maxSeqLen ?? info.maxPositions, info.maxPositions), dtype);
    return { dir, info, device, dtype, dtypes, fileBytes: dtypes.reduce((a, d) => a + d.bytes, 0), memory };
  } finally {
    md.weights.close();
  }
}
