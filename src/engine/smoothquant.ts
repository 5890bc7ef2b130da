// `peregrine quantize --method smoothquant`: SmoothQuant W8A8 (Xiao et al., 2023) of a GPT-2 or Llama-family
// checkpoint, written as a safetensors checkpoint that loads again (loaders/w8a8.ts has the format and the math it
// runs with). The model runs on the CPU over a calibration text (perplexity's sliding windows) while the input of
// each block matrix is watched: max |x[k]| per input over every token. Then for each matrix (q, k and v share their
// input, as do gate and up) s[k] = max|x[k]|^alpha / max|W[:, k]|^(1 - alpha) (s = 1 where an input never moved),
// W' = W diag(s) quantized to int8 per output channel, and s stored beside it for the activations.
import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CpuTensor } from '../backends/cpu/backend.js';
import { fail, fsError } from '../errors.js';
import { toFloat32, transpose2d, type StorageDType } from '../loaders/dtypes.js';
import { openModelDir, type MatrixPart, type ModelDir } from '../loaders/model-dir.js';
import { writeSafetensorsStreaming } from '../loaders/safetensors-write.js';
import { quantizeRows } from '../loaders/w8a8.js';
import type { Tensor } from '../ops/backend.js';
import { Tokenizer } from '../tokenizers/tokenizer.js';
import { loadModelDir } from './load.js';
import { maxContext, perplexity } from './perplexity.js';

export interface SmoothQuantOptions {
  /** migration strength, in (0, 1] (default 0.5) */
  alpha?: number;
  /** calibration tokens read from the text (default 8192) */
  maxTokens?: number;
  /** the calibration's progress: windows done of all */
  onWindow?: (done: number, total: number) => void;
}

export interface SmoothQuantResult {
  /** block matrices quantized, and the checkpoint tensors they came from */
  matrices: number;
  tensors: number;
  /** calibration tokens run */
  tokens: number;
}

interface Watched {
  parts: MatrixPart[];
  /** max |x| per input over the calibration */
  xmax: Float32Array;
}

/** Max |x| per column of `n` rows of x [*, K] into `into`. */
function columnMax(x: Float32Array, n: number, K: number, into: Float32Array): void {
  for (let t = 0; t < n; t++) {
    for (let k = 0; k < K; k++) {
      const a = Math.abs(x[t * K + k]);
      if (a > into[k]) into[k] = a;
    }
  }
}

/** The smoothing scales of one matrix from its inputs' and weights' column maxima. */
export function smoothingScales(xmax: Float32Array, wmax: Float32Array, alpha: number): Float32Array {
  return xmax.map((x, k) => (x > 0 && wmax[k] > 0 ? Math.max(x, 1e-5) ** alpha / Math.max(wmax[k], 1e-5) ** (1 - alpha) : 1));
}

/** A stored float weight [rows, K] as f32 (transposed when stored [in, out]). */
function readMatrix(md: ModelDir, part: MatrixPart, K: number): Float32Array {
  const info = md.weights.info(part.name);
  const data = toFloat32(md.weights.readBytes(part.name).slice(), info.dtype as StorageDType);
  return part.transpose ? transpose2d(data, K, part.rows) : data;
}

export async function smoothQuant(dir: string, text: string, out: string, options: SmoothQuantOptions = {}): Promise<SmoothQuantResult> {
  const alpha = options.alpha ?? 0.5, maxTokens = options.maxTokens ?? 8192;
  if (!(alpha > 0 && alpha <= 1)) fail('bad-argument', `--alpha must be in (0, 1], got ${alpha}`);
  if (!Number.isSafeInteger(maxTokens) || maxTokens < 2) fail('bad-argument', `--calibration-tokens must be an integer of at least 2, got ${maxTokens}`);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) fail('bad-argument', `peregrine quantize reads a Hugging Face model directory; ${dir} is not one`);
  if (existsSync(out) && (!statSync(out).isDirectory() || readdirSync(out).length > 0)) fail('bad-argument', `-o ${out} is not an empty directory; name a new one`);
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
  const watched = new Map<object, Watched>();
  md.onMatrix = (tensor, parts) => watched.set(tensor, { parts, xmax: new Float32Array((tensor as Tensor).shape[1]) });
  const loaded = await loadModelDir(md, Tokenizer.fromDir(dir), { device: 'cpu' });
  if (loaded.kind !== 'causal-lm' || watched.size === 0) {
    (loaded.kind === 'causal-lm' ? loaded.generator : loaded.embedder).dispose();
    fail('bad-argument', `peregrine quantize --method smoothquant runs on GPT-2 and Llama-family checkpoints; ${dir} has no block matrices it quantizes`);
  }
  const gen = loaded.generator;
  const ids = gen.tokenizer.encode(text).slice(0, maxTokens);
  // every block matrix's input passes through the CPU backend's linear (its composite ops call it too)
  const backend = gen.runtime.backend, linear = backend.linear.bind(backend);
  backend.linear = (o, x, w, bias, act, n) => {
    const seen = watched.get(w);
    if (seen) columnMax((x as CpuTensor).data as Float32Array, n, w.shape[1], seen.xmax);
    linear(o, x, w, bias, act, n);
  };
  try {
    if (ids.length < 2) fail('bad-argument', `the calibration text holds ${ids.length} token${ids.length === 1 ? '' : 's'}; it needs at least two`);
    const context = maxContext(gen);
    await perplexity(gen, ids, { context, stride: context, onWindow: options.onWindow });
  } finally {
    gen.dispose();
  }
  return write(dir, out, [...watched.values()], alpha, ids.length);
}

/** The quantized checkpoint: config.json with its quantization_config, the other files as they are, one safetensors file. */
function write(dir: string, out: string, watched: Watched[], alpha: number, tokens: number): SmoothQuantResult {
  const md = openModelDir(dir);
  try {
    // the smoothing scales of each matrix, and its parts by name
    const smooth = new Map<string, { part: MatrixPart; s: Float32Array }>();
    for (const w of watched) {
      const K = w.xmax.length, wmax = new Float32Array(K);
      for (const part of w.parts) columnMax(readMatrix(md, part, K), part.rows, K, wmax);
      const s = smoothingScales(w.xmax, wmax, alpha);
      for (const part of w.parts) smooth.set(part.name, { part, s });
    }
    const specs: { name: string; dtype: string; shape: number[]; source: string; role: 'copy' | 'weight' | 'weight_scale' | 'smooth_scale' }[] = [];
    for (const name of md.weights.names()) {
      const m = smooth.get(name);
      if (!m) {
        const info = md.weights.info(name);
        specs.push({ name, dtype: info.dtype, shape: info.shape, source: name, role: 'copy' });
        continue;
      }
      const base = name.replace(/\.weight$/, '.'), K = m.s.length;
      specs.push({ name, dtype: 'I8', shape: [m.part.rows, K], source: name, role: 'weight' },
        { name: base + 'weight_scale', dtype: 'F32', shape: [m.part.rows], source: name, role: 'weight_scale' },
        { name: base + 'smooth_scale', dtype: 'F32', shape: [K], source: name, role: 'smooth_scale' });
    }
    let scales: Float32Array | null = null;
    writeSafetensorsStreaming(join(out, 'model.safetensors'), specs, (spec, bytes) => {
      if (spec.role === 'copy') return bytes.set(md.weights.readBytes(spec.source));
      const { part, s } = smooth.get(spec.source)!, K = s.length;
      if (spec.role === 'smooth_scale') return bytes.set(new Uint8Array(s.buffer));
      if (spec.role === 'weight_scale') return bytes.set(new Uint8Array(scales!.buffer));
      const w = readMatrix(md, part, K);
      for (let i = 0; i < w.length; i++) w[i] = Math.fround(w[i] * s[i % K]);
      const q = quantizeRows(w, part.rows, K);
      scales = q.scales;
      bytes.set(new Uint8Array(q.q.buffer));
    });
    const config = { ...md.config, quantization_config: { quant_method: 'smoothquant', format: 'peregrine', bits: 8, alpha, weights: 'int8 per output channel', activations: 'int8 per token', calibration_tokens: tokens } };
    writeFileSync(join(out, 'config.json'), JSON.stringify(config, null, 2) + '\n');
    for (const f of readdirSync(dir)) {
      const skip = f === 'config.json' || /\.(safetensors|bin|pt|pth|gguf)$/.test(f) || /\.index\.json$/.test(f);
      if (!skip && statSync(join(dir, f)).isFile()) copyFileSync(join(dir, f), join(out, f));
    }
    return { matrices: watched.length, tensors: smooth.size, tokens };
  } finally {
    md.weights.close();
  }
}
