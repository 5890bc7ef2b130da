// `peregrine quantize --method gptq`: GPTQ int4 (loaders/gptq.ts has the math) of a GPT-2 or Llama-family checkpoint,
// written as a GPTQ checkpoint (qweight / qzeros / scales / g_idx, checkpoint_format "gptq_v2") that Peregrine loads
// as it loads the hub's (models/weights.ts) and runs on the int4 kernels. The model runs on the CPU over a calibration
// text while x x^T of the inputs of every block matrix is summed (q, k and v share theirs, as do gate and up); then
// each matrix is quantized against its sum. With `sequential`, one pass per transformer layer instead, each after the
// quantized weights took the float ones' place in the layers before it, so that a layer is calibrated on the inputs
// the quantized layers give (as AutoGPTQ does block by block): a forward over the calibration text per layer on the
// CPU, and on stories260K no better (docs/benchmarks.md).
import type { CpuTensor } from '../backends/cpu/backend.js';
import { fail } from '../errors.js';
import { accumulateHessian, gptqQuantize, gptqTensors, mirrorLower, outputError, type GptqLayer } from '../loaders/gptq.js';
import { dequantizeInt4, int4Type } from '../loaders/int4.js';
import { openModelDir } from '../loaders/model-dir.js';
import { quantizeInt4 } from '../loaders/quantize.js';
import { calibrate, loadForCalibration, openForQuantize, writeQuantized, type OutputTensor, type Watched } from './calibration.js';

export interface GptqOptions {
  /** inputs per group: 32, 64 or 128 (default: the largest of them that divides every block matrix's inputs) */
  group?: number;
  /** quantize inputs in order of decreasing activation energy (desc_act; default true) */
  actOrder?: boolean;
  /** dampening of the Hessian's diagonal, a fraction of its mean, in (0, 1] (default 0.01) */
  damp?: number;
  /** calibration tokens read from the text (default 8192) */
  maxTokens?: number;
  /**
   * one calibration pass per transformer layer, each after the layers before it were quantized, instead of one pass
   * for all (default false: a pass costs a forward over the calibration text on the CPU)
   */
  sequential?: boolean;
  /** the calibration's progress: the layer's pass (from 1) of all, windows done of all */
  onWindow?: (pass: number, passes: number, done: number, total: number) => void;
}

export interface GptqResult {
  /** block matrices quantized, and the checkpoint tensors they came from */
  matrices: number;
  tensors: number;
  /** calibration tokens run, calibration passes (one, or one per layer), inputs per group */
  tokens: number;
  passes: number;
  group: number;
  /** the block matrices' output error over the calibration inputs, summed, against round-to-nearest's in the same groups (rows sampled) */
  errorVsRtn: number;
  /** the most inputs a block matrix has: with fewer calibration tokens its x x^T is singular and errorVsRtn flatters */
  maxInputs: number;
}

const GROUPS = [128, 64, 32];

/** The transformer layer a checkpoint tensor belongs to: the first number in its name ("model.layers.3.mlp..." -> 3). */
function layerOf(name: string): number {
  const m = /(?:^|\.)(\d+)\./.exec(name);
  return m ? Number(m[1]) : -1;
}

export async function gptq(modelDir: string, text: string, out: string, options: GptqOptions = {}): Promise<GptqResult> {
  const maxTokens = options.maxTokens ?? 8192, damp = options.damp ?? 0.01, actOrder = options.actOrder ?? true;
  if (options.group !== undefined && !GROUPS.includes(options.group)) fail('bad-argument', `--group-size must be 32, 64 or 128, got ${options.group}`);
  if (!(damp > 0 && damp <= 1)) fail('bad-argument', `--damp must be in (0, 1], got ${damp}`);
  if (!Number.isSafeInteger(maxTokens) || maxTokens < 2) fail('bad-argument', `--calibration-tokens must be an integer of at least 2, got ${maxTokens}`);
  const md = await openForQuantize(modelDir, out);
  const model = await loadForCalibration(md, text, maxTokens, 'gptq');
  const results = new Map<CpuTensor, GptqLayer>();
  let group = 0, passes = 0, gptqError = 0, rtnError = 0;
  try {
    group = groupOf(model.matrices, options.group);
    // the matrices each pass quantizes
    const layers = new Map<number, Watched[]>();
    for (const m of model.matrices) {
      const l = options.sequential ? layerOf(m.parts[0].name) : 0;
      layers.set(l, [...(layers.get(l) ?? []), m]);
    }
    passes = layers.size;
    let pass = 0;
    for (const matrices of layers.values()) {
      pass++;
      const hessians = new Map(matrices.map((m) => [m.tensor, new Float64Array(m.tensor.shape[1] ** 2)]));
      await calibrate(model, (w, x, n) => {
        const h = hessians.get(w);
        if (h) accumulateHessian(h, x, n, w.shape[1]);
      }, options.onWindow && ((done, total) => options.onWindow!(pass, passes, done, total)));
      for (const m of matrices) {
        const [N, K] = m.tensor.shape, h = hessians.get(m.tensor)!, w = m.tensor.data as Float32Array;
        mirrorLower(h, K);
        let r: GptqLayer;
        try {
          r = gptqQuantize(w, N, K, h, { group, actOrder, damp });
        } catch (err) {
          return fail('bad-argument', `${m.parts.map((p) => p.name).join(' + ')}: ${(err as Error).message}`);
        }
        // the error against round to nearest's, every row where that costs under 2^28 multiply-adds, else rows spread
        // over the matrix (a row costs K^2, as GPTQ's own walk over it)
        const type = int4Type(group)!, step = Math.max(1, Math.ceil((N * K * K) / 2 ** 28));
        gptqError += outputError(w, r.dequantized, N, K, h, step);
        rtnError += outputError(w, dequantizeInt4(type, quantizeInt4(w, N, K, type), N, K), N, K, h, step);
        results.set(m.tensor, r);
        // the later passes see this layer quantized
        w.set(r.dequantized);
      }
    }
  } finally {
    model.gen.dispose();
  }
  const tensors = write(md.dir, out, model.matrices, results, group, { actOrder, damp, tokens: model.ids.length, passes });
  const maxInputs = Math.max(...model.matrices.map((m) => m.tensor.shape[1]));
  return { matrices: model.matrices.length, tensors, tokens: model.ids.length, passes, group, errorVsRtn: gptqError / rtnError, maxInputs };
}

/** The group size: `asked` where every block matrix's inputs are whole groups of it, else the largest that divides them all; refused by name where none does or outputs are not in eights. */
function groupOf(matrices: Watched[], asked: number | undefined): number {
  for (const m of matrices) {
    const odd = m.parts.find((p) => p.rows % 8 !== 0);
    if (odd) fail('bad-argument', `tensor ${odd.name} has ${odd.rows} outputs; GPTQ checkpoints pack outputs in eights, so it cannot be quantized`);
  }
  const fits = (g: number) => matrices.every((m) => m.tensor.shape[1] % g === 0);
  if (asked !== undefined) {
    const m = matrices.find((x) => x.tensor.shape[1] % asked !== 0);
    if (m) fail('bad-argument', `--group-size ${asked} does not divide the ${m.tensor.shape[1]} inputs of ${m.parts[0].name}; choose ${GROUPS.filter(fits).join(' or ') || 'another model'}`);
    return asked;
  }
  const g = GROUPS.find(fits);
  if (g === undefined) {
    const m = matrices.find((x) => x.tensor.shape[1] % 32 !== 0)!;
    fail('bad-argument', `tensor ${m.parts[0].name} has rows of ${m.tensor.shape[1]} inputs, not a multiple of 32: it cannot be quantized to int4`);
  }
  return g;
}

/** The GPTQ checkpoint: each block matrix's parts as qweight, qzeros, scales and g_idx; returns how many parts. */
function write(dir: string, out: string, matrices: Watched[], results: Map<CpuTensor, GptqLayer>, g: number, s: { actOrder: boolean; damp: number; tokens: number; passes: number }): number {
  const replaced = new Map<string, OutputTensor[]>();
  const packed = new Map<string, () => ReturnType<typeof gptqTensors>>();
  let damp = s.damp;
  for (const m of matrices) {
    const [N, K] = m.tensor.shape, r = results.get(m.tensor)!;
    damp = Math.max(damp, r.damp);
    let r0 = 0;
    for (const part of m.parts) {
      const first = r0, rows = part.rows, base = part.name.replace(/\.weight$/, '.');
      packed.set(part.name, () => gptqTensors(r, N, K, g, first, rows));
      replaced.set(part.name, [
        { name: base + 'qweight', dtype: 'I32', shape: [K / 8, rows], source: part.name },
        { name: base + 'qzeros', dtype: 'I32', shape: [K / g, rows / 8], source: part.name },
        { name: base + 'scales', dtype: 'F16', shape: [K / g, rows], source: part.name },
        { name: base + 'g_idx', dtype: 'I32', shape: [K], source: part.name },
      ]);
      r0 += rows;
    }
  }
  const md = openModelDir(dir);
  try {
    // a part's four tensors are written one after another: packed once
    let last: { name: string; t: ReturnType<typeof gptqTensors> } | null = null;
    writeQuantized(md, out, replaced, (t, bytes) => {
      if (last?.name !== t.source) last = { name: t.source, t: packed.get(t.source)!() };
      const p = last.t, field = t.name.slice(t.name.lastIndexOf('.') + 1);
      const data = field === 'qweight' ? p.qweight : field === 'qzeros' ? p.qzeros : field === 'scales' ? p.scales : p.gIdx;
      bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }, {
      quant_method: 'gptq', bits: 4, group_size: g, desc_act: s.actOrder, sym: false, static_groups: false, true_sequential: false,
      damp_percent: damp, checkpoint_format: 'gptq_v2', meta: { quantizer: 'peregrine', calibration_tokens: s.tokens, calibration_passes: s.passes },
    });
  } finally {
    md.weights.close();
  }
  return replaced.size;
}
