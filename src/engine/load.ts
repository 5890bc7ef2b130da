// Loading a model by directory or hub id onto a backend, as a generator or an embedder, with its memory
// planned at load: the KV pool, the sequence tables and the activation arena.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MetaBackend } from '../backends/meta.js';
import { checkParallelDevice, createBackend, type BackendOptions, type Device, type FloatDType } from '../backends/select.js';
import { fail, PeregrineError } from '../errors.js';
import { resolveModelDir, type HubOptions } from '../loaders/hub.js';
import { TOKENIZER_FILES } from '../loaders/hub-plan.js';
import { openGgufModel } from '../loaders/gguf-model.js';
import { openModelDir, readJsonFile, type ModelDir } from '../loaders/model-dir.js';
import { QUANTIZE_METHODS, type QuantizeMethod } from '../loaders/quantize-methods.js';
import { readSentenceTransformers } from '../loaders/sentence-transformers.js';
import { ConfigReader } from '../models/config.js';
import { cacheLayers, tensorBytes, type Architecture, type CausalLM, type Encoder, type MemoryReport, type ModelInfo } from '../models/model.js';
import { quantScheme, schemeName } from '../models/quantization-config.js';
import { findArchitecture } from '../models/registry.js';
import { dtypeBytes, type Backend, type DType } from '../ops/backend.js';
import { CausalRuntime, type RuntimeLimits } from '../runtime/causal.js';
import { EncoderRuntime } from '../runtime/encoder.js';
import { tokenizerFromGguf } from '../tokenizers/gguf-vocab.js';
import { Tokenizer } from '../tokenizers/tokenizer.js';
import { Embedder, PROBLEM_TYPES, type EmbedDefaults, type ProblemType } from './embedder.js';
import { availableMemory, checkFits, freeMemory, runtimeRegions, type Region } from './fit.js';
import { TextGenerator } from './generation.js';
import { nodeShape, type NodesOption } from './net/shape.js';
import type { Ranks } from './ranks.js';
import { seq2seqDefaults } from './seq2seq-defaults.js';
import { checkTokenizer } from './tokenizer-check.js';

export interface LoadOptions extends HubOptions {
  device?: Device;
  /** compute dtype on the GPU (default f16); the CPU computes in f32 whatever is asked (and says so through `notice`) */
  dtype?: FloatDType;
  /** told what the load decided that the caller may not expect (a dtype the CPU sets aside) */
  notice?: (message: string) => void;
  /**
   * Tensor parallelism (CPU backend; Llama-family models). A number n > 1: this thread is rank 0 of n, and n - 1
   * worker threads load the other ranks' slices of the same model and run each pass with it (engine/ranks.ts), so the
   * generator is used as any other. Or `{ group, rank }`: this load is that rank of a group of threads of this
   * process (src/backends/cpu/thread-group.ts createGroup, whose stages make it pipeline-parallel too), which must
   * run the same requests in the same order as every other rank.
   */
  tensorParallel?: number | BackendOptions['tensorParallel'];
  /**
   * Pipeline parallelism (CPU backend; GPT-2 and Llama-family models): the layers split into n stages, each run by its
   * own threads (with tensorParallel t, n * t ranks: t a stage), the first stage's rank 0 being this thread. A stage
   * takes its rows from the stage before it and passes them on (a decode step's and a prompt chunk's in micro-batches,
   * so that the stages overlap); the last one's logits go back to every stage. It divides the weights and the KV cache, not the time.
   */
  pipelineParallel?: number;
  /**
   * The tensor x pipeline ranks spread over `count` processes, on one host or several (CPU backend): this one is node
   * `rank`. Node 0, the leader, loads the generator here and drives the others over TCP; every other node runs
   * runNode (engine/net/nodes.ts) with the same model and options, as torchrun's nodes do.
   */
  nodes?: NodesOption;
  /** sequences that run at once (default 64 on the GPU, 8 on the CPU) */
  maxBatch?: number;
  /** tokens per sequence, prompt and generated (default: the model's positions) */
  maxSeqLen?: number;
  /** prompt tokens per forward pass during prefill (default 256): a long prompt stalls running sequences for one such pass at most */
  prefillChunk?: number;
  /** blocks of the KV-cache pool (default: maxBatch full-length sequences, within 90% of free GPU memory or 512 MiB on the CPU) */
  kvBlocks?: number;
  /** tokens per KV-cache block (default 16) */
  blockSize?: number;
  /**
   * host bytes that hold the KV caches of preempted requests until they run again (default 4 GiB); a
   * request that does not fit is recomputed from its tokens instead
   */
  swapSpace?: number;
  /**
   * every row computed in one order whatever else shares its pass, so that a request gets bit for bit the
   * tokens it gets alone (seeded sampling included); the CPU always is; on the GPU this runs prompts through
   * the decode GEMV instead of cuBLASLt (default false)
   */
  batchInvariant?: boolean;
  /**
   * the GPT-2 / Llama-family blocks' linear layers quantized as they load, kept quantized on the device and
   * dequantized in registers: `int8` (ggml's Q8_0: int8 weights with an f16 scale per 32), `int4` (4-bit weights
   * with an f16 scale and a zero per 128 inputs, or per 64 or 32 where a layer's inputs are not a multiple of 128:
   * the layout AWQ and GPTQ checkpoints load into). The embedding, the LM head and weights a checkpoint stores
   * quantized already stay as they are.
   */
  quantize?: QuantizeMethod;
}

export type LoadedModel =
  | { kind: 'causal-lm'; dir: string; generator: TextGenerator }
  | { kind: 'encoder'; dir: string; embedder: Embedder };

function positiveInt(v: number | undefined, what: string): void {
  if (v !== undefined && !(Number.isSafeInteger(v) && v >= 1)) fail('bad-argument', `${what} must be a whole number >= 1, got ${v}`);
}

/** The backend's options: a group size (rank 0 of a group it starts) has become the rank's `{ group, rank }` by here. */
function backendOptions(o: LoadOptions): BackendOptions {
  return { ...o, tensorParallel: typeof o.tensorParallel === 'number' ? undefined : o.tensorParallel };
}

function checkLoadOptions(o: LoadOptions): void {
  if (typeof o.tensorParallel === 'number') positiveInt(o.tensorParallel, 'tensor parallel');
  positiveInt(o.pipelineParallel, 'pipeline parallel');
  if (o.nodes) {
    nodeShape(o);
    if (o.nodes.rank > 0) fail('bad-argument', `node rank ${o.nodes.rank} runs the leader's calls: start it with runNode (the CLI does, given --node-rank), not loadGenerator`);
  }
  if (o.pipelineParallel !== undefined && o.pipelineParallel > 1 && typeof o.tensorParallel === 'object') {
    fail('bad-argument', 'pipelineParallel with a { group, rank } rank: the group\'s stages set the pipeline (createGroup\'s tensor size); leave pipelineParallel out');
  }
  positiveInt(o.maxBatch, 'max batch');
  positiveInt(o.maxSeqLen, 'max sequence length');
  positiveInt(o.prefillChunk, 'prefill chunk');
  positiveInt(o.kvBlocks, 'kv blocks');
  positiveInt(o.blockSize, 'block size');
  if (o.swapSpace !== undefined && !(Number.isSafeInteger(o.swapSpace) && o.swapSpace >= 0)) fail('bad-argument', `swap space must be a whole number of bytes >= 0, got ${o.swapSpace}`);
  if (o.kvBlocks === 1) fail('bad-argument', 'kv blocks must be at least 2 (block 0 is reserved)');
  if (o.quantize !== undefined && !Object.hasOwn(QUANTIZE_METHODS, o.quantize)) {
    const names = Object.keys(QUANTIZE_METHODS);
    fail('bad-argument', `quantize must be ${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}, got ${JSON.stringify(o.quantize)}`);
  }
}

const CPU_KV_BUDGET = 512 * 2 ** 20;

/**
 * Sizes the runtime: the KV pool fills what the options and the device's memory allow, after an encoder-decoder's
 * memory pool (`sourceLen` tokens per sequence, as wide as the cache: runtime/memory.ts) and encoder activations.
 */
function limitsFor(info: ModelInfo, layers: number, cacheWidth: number, o: LoadOptions, backend: Backend, free: number | null, sourceLen = 0): RuntimeLimits {
  const gpu = backend.name === 'cuda';
  const maxSeqLen = o.maxSeqLen ?? info.maxPositions;
  const maxBatch = o.maxBatch ?? (gpu ? 64 : 8);
  const prefillChunk = o.prefillChunk ?? 256;
  const blockSize = o.blockSize ?? 16;
  const blockBytes = 2 * layers * blockSize * cacheWidth * dtypeBytes(backend.activationDtype);
  const perSequence = Math.ceil(maxSeqLen / blockSize);
  let kvBlocks = o.kvBlocks ?? maxBatch * perSequence + 1;
  if (o.kvBlocks === undefined) {
    // what else the runtime allocates: logits and scores, tables, and (roughly) the activation arena
    const T = Math.max(prefillChunk, maxBatch);
    const act = dtypeBytes(backend.activationDtype);
    const memory = sourceLen > 0 ? (maxBatch * Math.ceil(sourceLen / blockSize) + 1) * blockBytes + 16 * sourceLen * info.hidden * act : 0;
    const others = 2 * maxBatch * info.vocabSize * 4 + (maxBatch + 1) * (maxSeqLen + 4096) * 4 + 16 * T * info.hidden * act + memory + 64 * 2 ** 20;
    const budget = free === null ? CPU_KV_BUDGET : 0.9 * (free - others);
    kvBlocks = Math.max(2, Math.min(kvBlocks, Math.floor(budget / blockBytes)));
  }
  return { maxBatch, maxSeqLen, prefillChunk, kvBlocks, blockSize };
}

/** config.json's problem_type (how classify turns logits into scores), checked. */
function problemType(md: ModelDir): ProblemType | undefined {
  const v = md.config.problem_type;
  if (v === undefined || v === null) return undefined;
  if (!PROBLEM_TYPES.includes(v as ProblemType)) {
    fail('bad-config', `${md.dir}/config.json: field "problem_type" must be ${PROBLEM_TYPES.join(', ')} or absent, got ${JSON.stringify(v)}; fix config.json`);
  }
  return v as ProblemType;
}

function checkSeqLen(o: LoadOptions, info: ModelInfo): void {
  if (o.maxSeqLen !== undefined && o.maxSeqLen > info.maxPositions) {
    fail('bad-argument', `max sequence length ${o.maxSeqLen} is beyond the model's ${info.maxPositions} positions; lower --max-seq-len`);
  }
}

interface Shapes {
  meta: MetaBackend;
  model: CausalLM | Encoder;
  weightBytes: number;
}

/** The model over a backend of shapes (the part `backend`'s rank holds): names, shapes and dtypes are checked, no bytes read. */
function shapeModel(arch: Architecture, md: ModelDir, className: string, backend: Backend): Shapes {
  const meta = new MetaBackend(backend.activationDtype, backend.name, backend.parallel, backend.pipeline);
  const shapesOnly = { ...md, onMatrix: undefined, weights: Object.assign(Object.create(md.weights), { readBytes: () => new Uint8Array(0) }) };
  const model = arch.create(meta, shapesOnly, className);
  return { meta, model, weightBytes: tensorBytes(model.weights()) };
}

function checkWeightsFit(s: Shapes, available: number): void {
  checkFits([{ name: 'weights', bytes: s.weightBytes }], available, s.meta.name, 'use a smaller model, a smaller --dtype on the GPU, or a machine with more memory');
}

/** Lower bounds of the causal runtime's largest buffers, known before its plan is built. */
function roughCausal(lm: CausalLM, l: RuntimeLimits, act: DType): Region[] {
  const T = Math.max(l.prefillChunk, l.maxBatch), info = lm.info;
  return [
    { name: 'kv-cache', bytes: 2 * cacheLayers(lm) * l.kvBlocks * l.blockSize * lm.cacheWidth * dtypeBytes(act) },
    { name: 'logits', bytes: 2 * l.maxBatch * info.vocabSize * 4 },
    { name: 'tables', bytes: (l.maxBatch + 1) * l.maxSeqLen * 4 },
    { name: 'activations', bytes: T * info.hidden * dtypeBytes(act) },
  ];
}

/** The causal runtime's memory plan (over the shapes), refused when it needs more than `available` bytes. */
function planCausal(s: Shapes, limits: RuntimeLimits, available: number, o: LoadOptions): MemoryReport {
  const lm = s.model as CausalLM, lower = lowerRuntime(limits, o);
  // a plan far beyond memory is refused before it is built (building it would allocate host arrays of its size)
  checkFits(roughCausal(lm, limits, s.meta.activationDtype), available, s.meta.name, lower, true);
  const planned = new CausalRuntime(lm, s.meta, limits).memory();
  checkFits(runtimeRegions(planned), available, s.meta.name, lower);
  return planned;
}

/** The options that size the runtime, with their values (those left to their defaults that are sized to fit are not named). */
function lowerRuntime(l: RuntimeLimits, o: LoadOptions): string {
  const named = [`--max-batch (${l.maxBatch})`, `--max-seq-len (${l.maxSeqLen})`];
  if (o.prefillChunk !== undefined) named.push(`--prefill-chunk (${l.prefillChunk})`);
  if (o.kvBlocks !== undefined) named.push(`--kv-blocks (${l.kvBlocks})`);
  return `lower ${named.slice(0, -1).join(', ')} or ${named[named.length - 1]}`;
}

/** The end tokens of generation_config.json, else config.json's. */
function eosIds(md: ModelDir, model: CausalLM): number[] {
  const gen = md.generation ? new ConfigReader(md.generation, 'generation_config.json').tokenIds('eos_token_id') : [];
  return gen.length ? gen : model.eosTokenIds;
}

interface Opened {
  dir: string;
  md: ModelDir;
  /** where the config came from, for messages */
  configPath: string;
  tokenizer(): Tokenizer;
  tokenizerPath: string;
  /** whether there are tokenizer files (an encoder loads without them, for token ids) */
  hasTokenizer: boolean;
  /** what the directory sets for embeddings (sentence-transformers modules) */
  embedDefaults(): EmbedDefaults;
}

/**
 * Before a hub download fetches the weights: the architecture is one Peregrine runs, and the tokenizer files are
 * there where a load will read them (a causal LM always; an encoder with tokenizer.json), refused as a load refuses them.
 */
function checkRepo(snapshot: string, has: (name: string) => boolean): void {
  const configPath = join(snapshot, 'config.json');
  const { arch } = findArchitecture(readJsonFile(configPath, 'config.json'), configPath);
  if (arch.kind === 'encoder' && !has(TOKENIZER_FILES[0])) return;
  const missing = TOKENIZER_FILES.find((f) => !has(f));
  if (missing) fail('file-missing', `${missing} not found: ${join(snapshot, missing)}; the hub repo has none, and ${arch.kind === 'encoder' ? 'the tokenizer' : 'a causal LM'} needs ${TOKENIZER_FILES.join(' and ')} (an encoder runs without both, on token ids)`);
}

/** A GGUF file (by its extension), or a model directory from a path or the hub. */
async function openModel(nameOrPath: string, options: LoadOptions): Promise<Opened> {
  if (nameOrPath.toLowerCase().endsWith('.gguf') && statSync(nameOrPath, { throwIfNoEntry: false })?.isFile()) {
    const md = openGgufModel(nameOrPath);
    return { dir: nameOrPath, md, configPath: nameOrPath, tokenizer: () => tokenizerFromGguf(md.gguf, nameOrPath), tokenizerPath: nameOrPath, hasTokenizer: true, embedDefaults: () => ({}) };
  }
  const dir = await resolveModelDir(nameOrPath, options, checkRepo);
  const tokenizerPath = join(dir, 'tokenizer.json');
  return {
    dir, md: openModelDir(dir), configPath: `${dir}/config.json`, tokenizer: () => Tokenizer.fromDir(dir), tokenizerPath, hasTokenizer: existsSync(tokenizerPath),
    embedDefaults: () => {
      const st = readSentenceTransformers(dir);
      return st ? { pooling: st.pooling, normalize: st.normalize, maxTokens: st.maxSeqLength } : {};
    },
  };
}

/** Where the model `nameOrPath` names is on this machine (a hub id is downloaded first): what worker ranks open. */
export async function modelPath(nameOrPath: string, options: LoadOptions = {}): Promise<string> {
  return (await openModel(nameOrPath, options)).dir;
}

export async function loadModel(nameOrPath: string, options: LoadOptions = {}): Promise<LoadedModel> {
  checkLoadOptions(options);
  // one node is no group of nodes (and more than one holds more than one rank: checkLoadOptions)
  if (options.nodes?.count === 1) options = { ...options, nodes: undefined };
  const opened = await openModel(nameOrPath, options);
  if (typeof options.tensorParallel === 'object') return loadOpened(opened, options);
  const tensor = options.tensorParallel ?? 1, stages = options.pipelineParallel ?? 1;
  if (tensor * stages === 1) return loadOpened(opened, { ...options, tensorParallel: undefined, pipelineParallel: undefined });
  checkParallelDevice(options.device ?? 'auto');
  // the other ranks open what this one opened (a hub model is in the cache by now)
  const { Ranks } = await import('./ranks.js');
  const ranks = new Ranks(opened.dir, { ...options, offline: true }, tensor, stages);
  try {
    const m = await loadOpened(opened, { ...options, tensorParallel: { group: ranks.handle, rank: 0 } }, ranks);
    await ranks.ready;
    return m;
  } catch (err) {
    ranks.stop((err as Error).message);
    // a load every rank makes fails on this one too; otherwise the rank that failed is the cause
    if (ranks.error && !(err instanceof PeregrineError)) fail('device', ranks.error);
    throw err;
  }
}

/**
 * A model from weights that are not files (benchmarks over random weights): `md` as a model directory would
 * open, and its tokenizer.
 */
export async function loadModelDir(md: ModelDir, tokenizer: Tokenizer, options: LoadOptions = {}): Promise<LoadedModel> {
  checkLoadOptions(options);
  const tensor = typeof options.tensorParallel === 'number' ? options.tensorParallel : undefined;
  if ((tensor ?? 1) * (options.pipelineParallel ?? 1) > 1 || (options.nodes?.count ?? 1) > 1) {
    fail('bad-argument', 'tensorParallel, pipelineParallel as a number or nodes need a model path (its worker ranks open it); load weights that are not files with { group, rank } on each rank');
  }
  if (tensor !== undefined) options = { ...options, tensorParallel: undefined };
  return loadOpened({ dir: md.dir, md, configPath: md.dir, tokenizer: () => tokenizer, tokenizerPath: md.dir, hasTokenizer: true, embedDefaults: () => ({}) }, options);
}

/**
 * The directory with the quantization the options ask for and the int4 layers its config.json names, each refused
 * by name where the architecture has no quantized layers.
 */
function quantizing(md: ModelDir, arch: Architecture, className: string, o: LoadOptions): ModelDir {
  const scheme = quantScheme(md.config);
  if (scheme && !arch.quantizes) {
    fail('unsupported-config', `config.json quantization_config (${scheme.method}): ${className} has no quantized layers in Peregrine (GPT-2 and the Llama family do); use an unquantized checkpoint`);
  }
  if (o.quantize === undefined) return { ...md, scheme };
  if (!arch.quantizes) fail('bad-argument', `--quantize ${o.quantize}: ${className} is not quantized at load (GPT-2 and the Llama family are); load it without --quantize`);
  return { ...md, scheme, quantize: QUANTIZE_METHODS[o.quantize] };
}

async function loadOpened(opened: Opened, options: LoadOptions, ranks?: Ranks): Promise<LoadedModel> {
  const { dir, configPath, tokenizer: openTokenizer } = opened;
  try {
    const { arch, className } = findArchitecture(opened.md.config, configPath);
    const md = quantizing(opened.md, arch, className, options);
    const info = arch.info(md.config, className);
    checkSeqLen(options, info);
    const problem = problemType(md);
    // an encoder without tokenizer files still runs on token ids
    const tokenizer = arch.kind === 'encoder' && !opened.hasTokenizer ? null : openTokenizer();
    const defaults = arch.kind === 'encoder' ? opened.embedDefaults() : {};
    const backend = await createBackend(backendOptions(options));
    try {
      // the weights, then the runtime's plan, are checked against the memory there is before they are allocated
      if (backend.parallel && !arch.tensorParallel) {
        fail('unsupported-config', `${className} does not run tensor-parallel yet (the Llama family does); load it without tensor parallelism`);
      }
      if (backend.pipeline && !arch.pipelineParallel) {
        fail('unsupported-config', `${className} does not run pipeline-parallel yet (GPT-2 and the Llama family do); load it without pipeline parallelism`);
      }
      const shapes = shapeModel(arch, md, className, backend);
      checkWeightsFit(shapes, availableMemory(backend));
      const model = arch.create(backend, md, className);
      if (arch.kind === 'causal-lm') {
        const lm = model as CausalLM;
        const limits = limitsFor(info, cacheLayers(lm), lm.cacheWidth, options, backend, freeMemory(backend), lm.seq2seq?.maxSourcePositions);
        planCausal(shapes, limits, availableMemory(backend), options);
        const own = new CausalRuntime(lm, backend, limits);
        const runtime = ranks ? ranks.mirror(own) : own;
        const generator = new TextGenerator(runtime, tokenizer!, eosIds(md, lm), options.swapSpace);
        if (lm.seq2seq) generator.defaults = seq2seqDefaults(md.generation ?? md.config, md.generation ? 'generation_config.json' : 'config.json');
        return { kind: 'causal-lm', dir, generator };
      }
      return { kind: 'encoder', dir, embedder: new Embedder(new EncoderRuntime(model as Encoder, backend), tokenizer, problem, defaults, dir) };
    } catch (err) {
      backend.dispose();
      throw err;
    }
  } finally {
    // every weight has been read (the CPU holds its own copies)
    opened.md.weights.close();
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
  /** the int4 layers config.json names (quantization_config), and the --quantize method */
  quantization: string | null;
  fileBytes: number;
  memory: MemoryReport;
}

/**
 * Architecture, parameters, stored dtypes and the memory plan a load would make, without reading the
 * weights; what it shows is checked as a load checks it (every tensor's name, shape and dtype, the limits)
 * and the tokenizer is tried on a probe text.
 */
export async function inspectModel(nameOrPath: string, options: LoadOptions = {}): Promise<Inspection> {
  checkLoadOptions(options);
  const opened = await openModel(nameOrPath, options);
  const { dir, md, configPath, tokenizer, tokenizerPath } = opened;
  try {
    const { arch, className } = findArchitecture(md.config, configPath);
    const info = arch.info(md.config, className);
    checkSeqLen(options, info);
    problemType(md);
    if (arch.kind === 'encoder') opened.embedDefaults();
    if (arch.kind !== 'encoder' || opened.hasTokenizer) checkTokenizer(tokenizer(), info.vocabSize, tokenizerPath);
    const backend = await createBackend(backendOptions(options));
    const dtype = backend.activationDtype;
    const device = backend.name;
    const free = freeMemory(backend), available = availableMemory(backend);
    backend.dispose();
    const dtypes = [...md.weights.dtypeSummary()].map(([dtype, v]) => ({ dtype, ...v }));
    const quantized = quantizing(md, arch, className, options);
    const shapes = shapeModel(arch, quantized, className, backend);
    const quantization = [
      quantized.scheme && schemeName(quantized.scheme),
      options.quantize && `--quantize ${options.quantize}`,
    ].filter(Boolean).join('; ') || null;
    checkWeightsFit(shapes, available);
    // what a load would have left once the weights are in
    const left = (bytes: number) => bytes - shapes.weightBytes;
    let memory: MemoryReport;
    if (arch.kind === 'causal-lm') {
      const lm = shapes.model as CausalLM;
      memory = planCausal(shapes, limitsFor(info, cacheLayers(lm), lm.cacheWidth, options, shapes.meta, free === null ? null : left(free)), left(available), options);
    } else {
      const enc = new EncoderRuntime(shapes.model as Encoder, shapes.meta);
      const batch = options.maxBatch ?? 1, seqLen = options.maxSeqLen ?? info.maxPositions;
      const act = dtypeBytes(dtype), padded = Math.ceil(seqLen / 16) * 16;
      const rough = [{ name: 'attention-kv', bytes: 2 * batch * padded * info.hidden * act }, { name: 'activations', bytes: batch * seqLen * info.hidden * act }];
      checkFits(rough, left(available), device, `lower --max-batch (${batch}) or --max-seq-len (${seqLen})`, true);
      enc.reserveFor(batch, seqLen);
      memory = enc.memory();
    }
    return { dir, info, device, dtype, dtypes, quantization, fileBytes: dtypes.reduce((a, d) => a + d.bytes, 0), memory };
  } finally {
    md.weights.close();
  }
}
