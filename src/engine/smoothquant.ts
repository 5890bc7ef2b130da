// `peregrine quantize --method smoothquant`: SmoothQuant W8A8 (Xiao et al., 2023) of a GPT-2 or Llama-family
// checkpoint, written as a safetensors checkpoint that loads again (loaders/w8a8.ts has the format and the math it
// runs with). The model runs on the CPU over a calibration text (perplexity's sliding windows) while the input of
// each block matrix is watched: max |x[k]| per input over every token. Then for each matrix (q, k and v share their
// input, as do gate and up) s[k] = max|x[k]|^alpha / max|W[:, k]|^(1 - alpha) (s = 1 where an input never moved),
// W' = W diag(s) quantized to int8 per output channel, and s stored beside it for the activations.
import { fail } from '../errors.js';
import { openModelDir, type MatrixPart } from '../loaders/model-dir.js';
import { quantizeRows } from '../loaders/w8a8.js';
import { calibrate, loadForCalibration, openForQuantize, readMatrix, writeQuantized, type OutputTensor, type Watched } from './calibration.js';

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

export async function smoothQuant(model: string, text: string, out: string, options: SmoothQuantOptions = {}): Promise<SmoothQuantResult> {
  const alpha = options.alpha ?? 0.5, maxTokens = options.maxTokens ?? 8192;
  if (!(alpha > 0 && alpha <= 1)) fail('bad-argument', `--alpha must be in (0, 1], got ${alpha}`);
  if (!Number.isSafeInteger(maxTokens) || maxTokens < 2) fail('bad-argument', `--calibration-tokens must be an integer of at least 2, got ${maxTokens}`);
  const md = await openForQuantize(model, out);
  const calibrated = await loadForCalibration(md, text, maxTokens, 'smoothquant');
  // max |x| per input of each matrix over every token
  const xmax = new Map(calibrated.matrices.map((m) => [m.tensor, new Float32Array(m.tensor.shape[1])]));
  try {
    await calibrate(calibrated, (w, x, n) => {
      const into = xmax.get(w);
      if (into) columnMax(x, n, w.shape[1], into);
    }, options.onWindow);
  } finally {
    calibrated.gen.dispose();
  }
  return write(md.dir, out, calibrated.matrices, xmax, alpha, calibrated.ids.length);
}

/** The quantized checkpoint: each block matrix's parts as I8 weights with their weight and smoothing scales. */
function write(dir: string, out: string, matrices: Watched[], xmax: Map<object, Float32Array>, alpha: number, tokens: number): SmoothQuantResult {
  const md = openModelDir(dir);
  try {
    // the smoothing scales of each matrix (q, k and v share theirs, as do gate and up), and its parts by name
    const smooth = new Map<string, { part: MatrixPart; s: Float32Array }>();
    const replaced = new Map<string, OutputTensor[]>();
    for (const m of matrices) {
      const K = m.tensor.shape[1], wmax = new Float32Array(K);
      for (const part of m.parts) columnMax(readMatrix(md, part, K), part.rows, K, wmax);
      const s = smoothingScales(xmax.get(m.tensor)!, wmax, alpha);
      for (const part of m.parts) {
        const name = part.name, base = name.replace(/\.weight$/, '.');
        smooth.set(name, { part, s });
        replaced.set(name, [{ name, dtype: 'I8', shape: [part.rows, K], source: name },
          { name: base + 'weight_scale', dtype: 'F32', shape: [part.rows], source: name },
          { name: base + 'smooth_scale', dtype: 'F32', shape: [K], source: name }]);
      }
    }
    // the weight is written first, then its scales
    let scales: Float32Array | null = null;
    writeQuantized(md, out, replaced, (t, bytes) => {
      const { part, s } = smooth.get(t.source)!, K = s.length;
      if (t.name.endsWith('smooth_scale')) return bytes.set(new Uint8Array(s.buffer));
      if (t.name.endsWith('weight_scale')) return bytes.set(new Uint8Array(scales!.buffer));
      const w = readMatrix(md, part, K);
      for (let i = 0; i < w.length; i++) w[i] = Math.fround(w[i] * s[i % K]);
      const q = quantizeRows(w, part.rows, K);
      scales = q.scales;
      bytes.set(new Uint8Array(q.q.buffer));
    }, { quant_method: 'smoothquant', format: 'peregrine', bits: 8, alpha, weights: 'int8 per output channel', activations: 'int8 per token', calibration_tokens: tokens });
    return { matrices: matrices.length, tensors: smooth.size, tokens };
  } finally {
    md.weights.close();
  }
}
