// Quantizing float weights at load (LoadOptions.quantize): a [rows, cols] matrix into ggml blocks, which the
// quantized linear layers of both backends then read as they read a GGUF file's (src/backends/cuda/qlinear.ts,
// cpu/linear.ts). Bit for bit ggml's reference quantizers (ggml-quants.c), so a file quantized by llama.cpp's tools
// and a checkpoint quantized here hold the same blocks. The CPU backend quantizes with these; the GPU quantizes on
// the device (kernels/dequant.cu, quantize_weight_*), bit for bit the same.
// - int8 -> Q8_0: per 32 weights, d = max|w| / 127 (stored as f16), q = round(w / d) (halves away from zero).
// - int4 -> grouped int4 (loaders/int4.ts, the AWQ/GPTQ layout), asymmetric round-to-nearest per group of g inputs:
//   lo = min(0, min w), hi = max(0, max w), s = (hi - lo) / 15 (stored as f16), z = round(-lo / s),
//   q = clamp(round(w / s) + z, 0, 15) (w / s as w * (1 / s); halves away from zero; a NaN weight gets q = z).
// - fp8 -> E4M3 per output channel (loaders/fp8.ts): s = max|w| / 448, q = e4m3(w * (1 / s)), nearest even.
import { fail } from '../errors.js';
import { f16ToF32, f32ToF16Bits, roundAway, toFloat32, transpose2d, type HostWeight, type StorageDType } from './dtypes.js';
import { quantizeFp8 } from './fp8.js';
import { INT4_GROUPS, inputsInOrder, int4Layout, int4Type, isInt4Type, type Int4Type } from './int4.js';
import { QUANT_BLOCKS, type StoredQuant } from './quant.js';

const f = Math.fround;

/** quantize_row_q8_0_ref over `rows` rows of `cols` values (cols a multiple of 32). */
export function quantizeQ8_0(x: Float32Array, rows: number, cols: number): Uint8Array {
  const blocks = (rows * cols) / 32, out = new Uint8Array(blocks * 34);
  const q = new Int8Array(out.buffer);
  for (let b = 0; b < blocks; b++) {
    const x0 = b * 32, o = b * 34;
    let amax = 0;
    for (let e = 0; e < 32; e++) {
      const a = Math.abs(x[x0 + e]);
      // a NaN is passed over, as fmaxf does on the GPU
      if (a > amax) amax = a;
    }
    const d = f(amax / 127), id = d ? f(1 / d) : 0;
    const h = f32ToF16Bits(d);
    out[o] = h & 0xff;
    out[o + 1] = h >> 8;
    for (let e = 0; e < 32; e++) {
      const v = f(x[x0 + e] * id);
      q[o + 2 + e] = roundAway(v);
    }
  }
  return out;
}

/** The scale (f16: its bits and value, and 1 / scale) and zero of an int4 group whose weights span [lo, hi] (lo <= 0 <= hi). */
export interface Int4Group {
  bits: number;
  scale: number;
  inverse: number;
  zero: number;
}

export function int4Group(lo: number, hi: number): Int4Group {
  const bits = f32ToF16Bits(f(f(hi - lo) / 15)), scale = f16ToF32(bits), inverse = scale ? f(1 / scale) : 0;
  const zero = scale ? Math.min(Math.max(roundAway(f(-lo * inverse)), 0), 15) : 0;
  return { bits, scale, inverse, zero };
}

/** The 4-bit code of weight w in group p: clamp(round(w / scale) + zero, 0, 15) (a NaN weight gets the zero). */
export function int4Code(w: number, p: Int4Group): number {
  const r = roundAway(f(w * p.inverse));
  return Math.min(Math.max((Number.isNaN(r) ? 0 : r) + p.zero, 0), 15);
}

/** Grouped int4 of `rows` rows of `cols` values (cols a multiple of the group), in loaders/int4.ts's layout. */
export function quantizeInt4(x: Float32Array, rows: number, cols: number, type: Int4Type): Uint8Array {
  const g = INT4_GROUPS[type], G = cols / g, at = int4Layout(type, rows, cols);
  if (cols % g !== 0) throw new Error(`internal: rows of ${cols} are not groups of ${g} (quantizeTarget picks the group)`);
  const out = new Uint8Array(at.bytes);
  for (let j = 0; j < rows; j++) {
    for (let t = 0; t < G; t++) {
      const x0 = j * cols + t * g;
      let lo = 0, hi = 0;
      for (let e = 0; e < g; e++) {
        // a NaN is passed over, as fminf/fmaxf do on the GPU
        if (x[x0 + e] < lo) lo = x[x0 + e];
        if (x[x0 + e] > hi) hi = x[x0 + e];
      }
      const p = int4Group(lo, hi);
      for (let e = 0; e < g; e++) {
        const k = t * g + e, q = int4Code(x[x0 + e], p);
        out[j * (cols / 2) + 16 * (k >> 5) + (k & 15)] |= q << ((k & 16) >> 2);
      }
      out[at.scales + 2 * (j * G + t)] = p.bits & 0xff;
      out[at.scales + 2 * (j * G + t) + 1] = p.bits >> 8;
      out[at.zeros + j * G + t] = p.zero;
    }
  }
  new Int32Array(out.buffer, at.perm, cols).set(inputsInOrder(cols));
  return out;
}

/**
 * The type a weight of `shape` [out, in] is quantized to under `method`'s type: that type, or for int4 the largest
 * group (128, 64, 32) that divides the inputs; refused by name where its rows are not whole blocks or groups.
 */
export function quantizeTarget(shape: readonly number[], type: StoredQuant, name: string): StoredQuant {
  const cols = shape[shape.length - 1];
  if (isInt4Type(type)) {
    const fit = [INT4_GROUPS[type], 64, 32].map((g) => (cols % g === 0 ? int4Type(g) : undefined)).find((t) => t !== undefined);
    if (shape.length === 2 && fit) return fit;
    fail('bad-argument', `tensor ${name} has rows of ${cols} weights, not a multiple of 32: it cannot be quantized to int4; load the model without --quantize`);
  }
  if (type === 'W8A8') throw new Error('internal: W8A8 comes from peregrine quantize, not from --quantize');
  if (type === 'FP8') {
    // the GPU's FP8 GEMV reads 32 weights at a time
    if (shape.length === 2 && cols % 32 === 0) return type;
    fail('bad-argument', `tensor ${name} has rows of ${cols} weights, not a multiple of 32: it cannot be quantized to fp8; load the model without --quantize`);
  }
  const { elements } = QUANT_BLOCKS[type];
  if (shape.length !== 2 || cols % elements !== 0) {
    fail('bad-argument', `tensor ${name} has rows of ${cols} weights, not a multiple of ${elements}: it cannot be quantized to ${type}; load the model without --quantize`);
  }
  return type;
}

/** A float weight of `shape` [out, in] (stored [in, out] when `transpose`) as `type` (quantizeTarget first). */
export function quantizeWeight(src: HostWeight & { dtype: StorageDType }, shape: readonly number[], transpose: boolean, type: StoredQuant): HostWeight {
  const [rows, cols] = shape;
  const data = toFloat32(src.bytes, src.dtype);
  const x = transpose ? transpose2d(data, cols, rows) : data;
  if (isInt4Type(type)) return { bytes: quantizeInt4(x, rows, cols, type), dtype: type };
  if (type === 'FP8') return { bytes: quantizeFp8(x, rows, cols), dtype: type };
  if (type !== 'Q8_0') throw new Error(`internal: no quantizer for ${type}`);
  return { bytes: quantizeQ8_0(x, rows, cols), dtype: type };
}
