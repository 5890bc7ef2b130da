// What the quantizers of `peregrine quantize` share (smoothquant.ts, gptq.ts): the checks on the model and output
// directories, the model loaded on the CPU with each block matrix watched, a calibration text run through it while
// the inputs of those matrices are shown to the quantizer, and the quantized checkpoint written beside the
// directory's other files.
import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CpuTensor } from '../backends/cpu/backend.js';
import { fail, fsError } from '../errors.js';
import { toFloat32, transpose2d, type StorageDType } from '../loaders/dtypes.js';
import { resolveModelDir } from '../loaders/hub.js';
import { openModelDir, type MatrixPart, type ModelDir } from '../loaders/model-dir.js';
import { writeSafetensorsStreaming } from '../loaders/safetensors-write.js';
import { Tokenizer } from '../tokenizers/tokenizer.js';
import type { TextGenerator } from './generation.js';
import { loadModelDir } from './load.js';
import { maxContext, perplexity } from './perplexity.js';

/** A block matrix of the loaded model: its CPU tensor ([N, K] f32) and the checkpoint tensors stacked into it. */
export interface Watched {
  tensor: CpuTensor;
  parts: MatrixPart[];
}

export interface CalibrationModel {
  gen: TextGenerator;
  /** the block matrices in the order they loaded (layer by layer) */
  matrices: Watched[];
  /** the calibration text's tokens (at most maxTokens) */
  ids: number[];
}

/**
 * The model directory of `peregrine quantize` opened (a directory, or a hub id found in the cache or downloaded),
 * after checking that `out` can be the new checkpoint's directory; then that directory is made.
 */
export async function openForQuantize(model: string, out: string): Promise<ModelDir> {
  if (existsSync(out) && (!statSync(out).isDirectory() || readdirSync(out).length > 0)) fail('bad-argument', `-o ${out} is not an empty directory; name a new one`);
  const dir = await resolveModelDir(model);
  const md = openModelDir(dir);
  if (md.config.quantization_config !== undefined && md.config.quantization_config !== null) {
    md.weights.close();
    fail('bad-argument', `${dir} is quantized already (config.json quantization_config); quantize its fp16/bf16/fp32 original`);
  }
  // the output directory made first: a path that cannot be one fails before the calibration runs
  try {
    mkdirSync(out, { recursive: true });
  } catch (err) {
    md.weights.close();
    throw fsError(err, 'the output directory (-o)', out);
  }
  return md;
}

/** The model of `md` on the CPU with its block matrices watched, and the calibration text's first `maxTokens` tokens. */
export async function loadForCalibration(md: ModelDir, text: string, maxTokens: number, method: string): Promise<CalibrationModel> {
  const matrices: Watched[] = [];
  md.onMatrix = (tensor, parts) => matrices.push({ tensor: tensor as CpuTensor, parts });
  const loaded = await loadModelDir(md, Tokenizer.fromDir(md.dir), { device: 'cpu' });
  if (loaded.kind !== 'causal-lm' || matrices.length === 0) {
    (loaded.kind === 'causal-lm' ? loaded.generator : loaded.embedder).dispose();
    fail('bad-argument', `peregrine quantize --method ${method} runs on GPT-2 and Llama-family checkpoints; ${md.dir} has no block matrices it quantizes`);
  }
  const gen = loaded.generator;
  const ids = gen.tokenizer.encode(text).slice(0, maxTokens);
  if (ids.length < 2) {
    gen.dispose();
    fail('bad-argument', `the calibration text holds ${ids.length} token${ids.length === 1 ? '' : 's'}; it needs at least two`);
  }
  return { gen, matrices, ids };
}

/**
 * Runs the calibration tokens through the model in windows of its whole context; `onInput` sees the n input rows
 * [n, K] of every block matrix product, before it is computed (every block matrix's input passes through the CPU
 * backend's linear; its composite ops call it too).
 */
export async function calibrate(model: CalibrationModel, onInput: (w: CpuTensor, x: Float32Array, n: number) => void,
  onWindow?: (done: number, total: number) => void): Promise<void> {
  const backend = model.gen.runtime.backend, linear = backend.linear;
  backend.linear = (o, x, w, bias, act, n) => {
    onInput(w as CpuTensor, (x as CpuTensor).data as Float32Array, n);
    linear.call(backend, o, x, w, bias, act, n);
  };
  try {
    const context = maxContext(model.gen);
    await perplexity(model.gen, model.ids, { context, stride: context, onWindow });
  } finally {
    backend.linear = linear;
  }
}

/** A stored float weight [rows, K] as f32 (transposed when stored [in, out]). */
export function readMatrix(md: ModelDir, part: MatrixPart, K: number): Float32Array {
  const info = md.weights.info(part.name);
  const data = toFloat32(md.weights.readBytes(part.name).slice(), info.dtype as StorageDType);
  return part.transpose ? transpose2d(data, K, part.rows) : data;
}

/** A tensor of the quantized checkpoint: `source` names the stored tensor it replaces or copies. */
export interface OutputTensor {
  name: string;
  dtype: string;
  shape: number[];
  source: string;
}

/**
 * The quantized checkpoint of `md` (open, left open) in `out`: one safetensors file of `replaced`'s tensors (each
 * filled by `fill`) in place of the stored tensors they name, every other stored tensor copied; config.json with
 * `quantization`; the directory's other files (tokenizer, generation config) as they are, but hidden ones.
 */
export function writeQuantized(md: ModelDir, out: string, replaced: Map<string, OutputTensor[]>, fill: (t: OutputTensor, bytes: Uint8Array) => void,
  quantization: Record<string, unknown>): void {
  const specs: (OutputTensor & { copy: boolean })[] = [];
  for (const name of md.weights.names()) {
    const r = replaced.get(name);
    if (r) specs.push(...r.map((t) => ({ ...t, copy: false })));
    else {
      const { dtype, shape } = md.weights.info(name);
      specs.push({ name, dtype, shape, source: name, copy: true });
    }
  }
  writeSafetensorsStreaming(join(out, 'model.safetensors'), specs, (t, bytes) => (t.copy ? bytes.set(md.weights.readBytes(t.source)) : fill(t, bytes)));
  writeFileSync(join(out, 'config.json'), JSON.stringify({ ...md.config, quantization_config: quantization }, null, 2) + '\n');
  for (const f of readdirSync(md.dir)) {
    // not the weights, nor a hub snapshot's marker of its own
    const skip = f === 'config.json' || f.startsWith('.') || /\.(safetensors|bin|pt|pth|gguf)$/.test(f) || /\.index\.json$/.test(f);
    if (!skip && statSync(join(md.dir, f)).isFile()) copyFileSync(join(md.dir, f), join(out, f));
  }
}
