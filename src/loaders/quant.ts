// The ggml block-quantized formats of GGUF files (ggml-common.h), and their dequantization: the reference the
// CPU backend computes with (a row at a time) and kernels/quant.cu is checked against. Weights e of a block:
// - Q8_0: 32 in 34 bytes: f16 d, i8 q[32]; w = d q.
// - Q4_0: 32 in 18 bytes: f16 d, q[16] (weight e < 16 in the low nibble of byte e, weight e + 16 in its high nibble); w = d (q - 8).
// - Q4_K: 256 in 144 bytes: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins for 8 sub-blocks of 32, q[128]
//   (sub-block s in the low (s even) or high nibbles of bytes 32 (s / 2) ..); w = d sc q - dmin m.
// - Q5_K: 256 in 176 bytes: d, dmin, scales[12], qh[32] (bit s of byte e: the fifth bit of weight e of sub-block s), q[128].
// - Q6_K: 256 in 210 bytes: ql[128], qh[64], i8 scales[16] (one per 16 weights), f16 d; w = d sc (q - 32).
// Besides them, a checkpoint may hold the grouped int4 of AWQ and GPTQ (loaders/int4.ts): StoredQuant is either.
import { f16ToF32 } from './dtypes.js';
import { dequantizeFp8, fp8Layout } from './fp8.js';
import { dequantizeInt4, int4Layout, isInt4Type, type Int4Type } from './int4.js';
import { dequantizeW8A8, w8a8Layout } from './w8a8.js';

export type QuantType = 'Q8_0' | 'Q4_0' | 'Q4_K' | 'Q5_K' | 'Q6_K';
export const QUANT_TYPES: readonly QuantType[] = ['Q8_0', 'Q4_0', 'Q4_K', 'Q5_K', 'Q6_K'];

export const QUANT_BLOCKS: Record<QuantType, { elements: number; bytes: number }> = {
  Q8_0: { elements: 32, bytes: 34 },
  Q4_0: { elements: 32, bytes: 18 },
  Q4_K: { elements: 256, bytes: 144 },
  Q5_K: { elements: 256, bytes: 176 },
  Q6_K: { elements: 256, bytes: 210 },
};

export function isQuantType(t: string): t is QuantType {
  return (QUANT_TYPES as readonly string[]).includes(t);
}

/**
 * A weight format stored quantized: ggml blocks, grouped int4, SmoothQuant's int8 weights for int8 activations
 * (loaders/w8a8.ts), or E4M3 weights scaled per output channel (loaders/fp8.ts).
 */
export type StoredQuant = QuantType | Int4Type | 'W8A8' | 'FP8';

export function isStoredQuant(t: string): t is StoredQuant {
  return isQuantType(t) || isInt4Type(t) || t === 'W8A8' || t === 'FP8';
}

/** Bytes of a [rows, columns] weight stored as `type`. */
export function quantBytes(type: StoredQuant, rows: number, columns: number): number {
  if (type === 'W8A8') return w8a8Layout(rows, columns).bytes;
  if (type === 'FP8') return fp8Layout(rows, columns).bytes;
  return isInt4Type(type) ? int4Layout(type, rows, columns).bytes : rows * rowBytes(type, columns);
}

/** Bytes of one row of `columns` weights (a multiple of the type's block). */
export function rowBytes(type: QuantType, columns: number): number {
  const b = QUANT_BLOCKS[type];
  return (columns / b.elements) * b.bytes;
}

const half = (src: Uint8Array, o: number): number => f16ToF32(src[o] | (src[o + 1] << 8));

/** get_scale_min_k4: the 6-bit scale and min of sub-block s from the 12 bytes at o. */
function scaleMin(src: Uint8Array, o: number, s: number): [number, number] {
  if (s < 4) return [src[o + s] & 63, src[o + s + 4] & 63];
  return [(src[o + s + 4] & 0xf) | ((src[o + s - 4] >> 6) << 4), (src[o + s + 4] >> 4) | ((src[o + s] >> 6) << 4)];
}

const f = Math.fround;

/** Dequantizes `columns` weights (one row) from src at srcOffset into out at outOffset, in fp32 as ggml does. */
export function dequantizeRow(type: QuantType, src: Uint8Array, srcOffset: number, out: Float32Array, outOffset: number, columns: number): void {
  // the format chosen once a row, each loop over the row's blocks in a function of its own
  const { elements, bytes } = QUANT_BLOCKS[type], blocks = columns / elements;
  if (type === 'Q8_0') rowQ8_0(src, srcOffset, out, outOffset, blocks);
  else if (type === 'Q4_0') rowQ4_0(src, srcOffset, out, outOffset, blocks);
  else if (type === 'Q6_K') rowQ6_K(src, srcOffset, out, outOffset, blocks);
  else rowQ45_K(src, srcOffset, out, outOffset, blocks, bytes, type === 'Q5_K');
}

function rowQ8_0(src: Uint8Array, o0: number, out: Float32Array, y0: number, blocks: number): void {
  for (let blk = 0; blk < blocks; blk++) {
    const o = o0 + blk * 34, y = y0 + blk * 32, d = half(src, o);
    for (let e = 0; e < 32; e++) out[y + e] = f(d * ((src[o + 2 + e] << 24) >> 24));
  }
}

function rowQ4_0(src: Uint8Array, o0: number, out: Float32Array, y0: number, blocks: number): void {
  for (let blk = 0; blk < blocks; blk++) {
    const o = o0 + blk * 18, y = y0 + blk * 32, d = half(src, o);
    for (let e = 0; e < 16; e++) {
      out[y + e] = f(d * ((src[o + 2 + e] & 15) - 8));
      out[y + e + 16] = f(d * ((src[o + 2 + e] >> 4) - 8));
    }
  }
}

function rowQ45_K(src: Uint8Array, o0: number, out: Float32Array, y0: number, blocks: number, bytes: number, five: boolean): void {
  for (let blk = 0; blk < blocks; blk++) {
    const o = o0 + blk * bytes, y = y0 + blk * 256;
    const d = half(src, o), dmin = half(src, o + 2);
    const qs = o + (five ? 48 : 16), qh = o + 16;
    for (let s = 0; s < 8; s++) {
      const [sc, m] = scaleMin(src, o + 4, s);
      const scale = f(d * sc), min = f(dmin * m);
      for (let e = 0; e < 32; e++) {
        let q = (src[qs + 32 * (s >> 1) + e] >> (4 * (s & 1))) & 15;
        if (five) q |= ((src[qh + e] >> s) & 1) << 4;
        out[y + 32 * s + e] = f(f(scale * q) - min);
      }
    }
  }
}

function rowQ6_K(src: Uint8Array, o0: number, out: Float32Array, y0: number, blocks: number): void {
  for (let blk = 0; blk < blocks; blk++) {
    const o = o0 + blk * 210, y = y0 + blk * 256, d = half(src, o + 208);
    for (let u = 0; u < 8; u++) {
      const h = u >> 2, k = u & 3;
      for (let e = 0; e < 32; e++) {
        const lo = (src[o + 64 * h + 32 * (k & 1) + e] >> (4 * (k >> 1))) & 15;
        const hi = (src[o + 128 + 32 * h + e] >> (2 * k)) & 3;
        const sc = (src[o + 192 + 2 * u + (e >> 4)] << 24) >> 24;
        out[y + 32 * u + e] = f(f(d * sc) * ((lo | (hi << 4)) - 32));
      }
    }
  }
}

/** A whole [rows, columns] tensor dequantized. */
export function dequantize(type: StoredQuant, src: Uint8Array, rows: number, columns: number): Float32Array {
  if (isInt4Type(type)) return dequantizeInt4(type, src, rows, columns);
  if (type === 'W8A8') return dequantizeW8A8(src, rows, columns);
  if (type === 'FP8') return dequantizeFp8(src, rows, columns);
  const out = new Float32Array(rows * columns), rb = rowBytes(type, columns);
  for (let r = 0; r < rows; r++) dequantizeRow(type, src, r * rb, out, r * columns, columns);
  return out;
}
