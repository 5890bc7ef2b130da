// Conversions between the storage dtypes of checkpoints and fp32.

import { dequantize, isStoredQuant, type StoredQuant } from './quant.js';

export type StorageDType = 'F32' | 'F16' | 'BF16';

/** A weight as stored in the checkpoint: its bytes and their dtype (the backend converts). */
export interface HostWeight {
  bytes: Uint8Array;
  dtype: StorageDType | StoredQuant;
}

/** A quantized weight [rows, columns] dequantized to F32 bytes on the host; other weights as they are. */
export function unquantized(src: HostWeight, shape: readonly number[]): HostWeight & { dtype: StorageDType } {
  if (!isStoredQuant(src.dtype)) return src as HostWeight & { dtype: StorageDType };
  const columns = shape[shape.length - 1], rows = shape.reduce((a, d) => a * d, 1) / columns;
  const f = dequantize(src.dtype, src.bytes, rows, columns);
  return { bytes: new Uint8Array(f.buffer), dtype: 'F32' };
}

let f16Table: Float32Array | null = null;

/** All 65536 fp16 values as fp32: a table lookup beats bit twiddling per element. */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) t[h] = sign * frac * 2 ** -24;
    else if (exp === 31) t[h] = frac ? NaN : sign * Infinity;
    else t[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  f16Table = t;
  return t;
}

/** One fp16 value (its 16 bits) as a number. */
export function f16ToF32(bits: number): number {
  return halfTable()[bits & 0xffff];
}

/** Widens little-endian F32/F16/BF16 bytes to a Float32Array. `bytes` must start on a 4-byte boundary for F32. */
export function toFloat32(bytes: Uint8Array, dtype: StorageDType): Float32Array {
  switch (dtype) {
    case 'F32':
      return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    case 'F16': {
      const src = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
      const out = new Float32Array(src.length);
      const table = halfTable();
      for (let i = 0; i < src.length; i++) out[i] = table[src[i]];
      return out;
    }
    case 'BF16': {
      const src = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
      const out = new Float32Array(src.length);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
      return out;
    }
  }
}

const scratchF = new Float32Array(1);
const scratchU = new Uint32Array(scratchF.buffer);

/** fp32 -> fp16 bits, round to nearest even (used to write test checkpoints). */
export function f32ToF16Bits(x: number): number {
  scratchF[0] = x;
  const u = scratchU[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

/** fp32 -> bf16 bits, round to nearest even. */
export function f32ToBf16Bits(x: number): number {
  scratchF[0] = x;
  const u = scratchU[0];
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 0x40;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Round to nearest, halves away from zero (C's roundf, which the quantizing kernels use). */
export const roundAway = (v: number): number => (v < 0 ? -Math.round(-v) : Math.round(v));

/** [rows, cols] -> [cols, rows] */
export function transpose2d(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}
