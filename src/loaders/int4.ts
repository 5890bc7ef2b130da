// Grouped int4 weights, the format of the AWQ and GPTQ checkpoints on the hub, in Peregrine's own layout (the same on
// the host and the GPU; read by kernels/quant-blocks.cuh). A [N, K] matrix quantized in groups of g inputs (g = 32,
// 64 or 128) is, one section after another:
//   nibbles  [N, K / 2]   row j's inputs in units of 32: byte e of unit u holds stored input 32u + e (low nibble)
//                         and 32u + e + 16 (high), as ggml's Q4_0 does, so four low nibbles are four dp4a bytes;
//   scales   [N, K / g]   f16;
//   zeros    [N, K / g]   u8, 0 .. 16;
//   perm     [K]          i32 at a 16-byte boundary: stored input k' is input perm[k'] of the layer
//                         (GPTQ's act-order sorts inputs by group; the identity otherwise),
// and W[j, perm[k']] = scale[j, k' / g] * (q[j, k'] - zero[j, k' / g]).
// fromGptq and fromAwq rearrange the checkpoints' packed int32 tensors into it; dequantizeInt4Row is the reference
// the CPU backend computes with and the kernels are checked against.
import { fail } from '../errors.js';
import { f16ToF32 } from './dtypes.js';

export type Int4Type = 'Q4_G32' | 'Q4_G64' | 'Q4_G128';
export const INT4_TYPES: readonly Int4Type[] = ['Q4_G32', 'Q4_G64', 'Q4_G128'];
export const INT4_GROUPS: Record<Int4Type, number> = { Q4_G32: 32, Q4_G64: 64, Q4_G128: 128 };

export function isInt4Type(t: string): t is Int4Type {
  return (INT4_TYPES as readonly string[]).includes(t);
}

export function int4Type(group: number): Int4Type | undefined {
  return INT4_TYPES.find((t) => INT4_GROUPS[t] === group);
}

/** Byte offsets of the sections of a [N, K] matrix of `type`, and its size. */
export function int4Layout(type: Int4Type, N: number, K: number): { scales: number; zeros: number; perm: number; bytes: number } {
  const groups = N * (K / INT4_GROUPS[type]);
  const scales = (N * K) / 2, zeros = scales + 2 * groups;
  const perm = Math.ceil((zeros + groups) / 16) * 16;
  return { scales, zeros, perm, bytes: perm + 4 * K };
}

/** The perm section of a matrix. */
export function int4Perm(type: Int4Type, bytes: Uint8Array, N: number, K: number): Int32Array {
  return new Int32Array(bytes.slice(int4Layout(type, N, K).perm).buffer, 0, K);
}

/** Whether the matrix keeps its inputs in order (no act-order). */
export function int4InOrder(type: Int4Type, bytes: Uint8Array, N: number, K: number): boolean {
  const perm = int4Perm(type, bytes, N, K);
  return perm.every((p, k) => p === k);
}

/**
 * Row j of a [N, K] matrix as floats in the layer's input order, into out[o .. o + K); `perm` is the perm section,
 * or null where it is the identity (int4InOrder).
 */
export function dequantizeInt4Row(type: Int4Type, src: Uint8Array, N: number, K: number, j: number, out: Float32Array, o: number, perm: Int32Array | null): void {
  const g = INT4_GROUPS[type], G = K / g, at = int4Layout(type, N, K);
  const q = j * (K / 2);
  for (let t = 0; t < G; t++) {
    const s = f16ToF32(src[at.scales + 2 * (j * G + t)] | (src[at.scales + 2 * (j * G + t) + 1] << 8));
    const z = src[at.zeros + j * G + t];
    // units of 32 inputs: byte e of unit u holds input 32u + e (low nibble) and 32u + e + 16 (high)
    for (let u = (t * g) >> 5; u < ((t + 1) * g) >> 5; u++) {
      const b0 = q + 16 * u, k0 = 32 * u;
      if (perm) {
        for (let e = 0; e < 16; e++) {
          const b = src[b0 + e];
          out[o + perm[k0 + e]] = Math.fround(s * ((b & 15) - z));
          out[o + perm[k0 + e + 16]] = Math.fround(s * ((b >> 4) - z));
        }
      } else {
        const y = o + k0;
        for (let e = 0; e < 16; e++) {
          const b = src[b0 + e];
          out[y + e] = Math.fround(s * ((b & 15) - z));
          out[y + e + 16] = Math.fround(s * ((b >> 4) - z));
        }
      }
    }
  }
}

/** A whole [N, K] matrix dequantized, [N, K] in the layer's input order. */
export function dequantizeInt4(type: Int4Type, src: Uint8Array, N: number, K: number): Float32Array {
  const out = new Float32Array(N * K), perm = int4Perm(type, src, N, K), inOrder = perm.every((p, k) => p === k);
  for (let j = 0; j < N; j++) dequantizeInt4Row(type, src, N, K, j, out, j * K, inOrder ? null : perm);
  return out;
}

/**
 * Builds the layout: `nibbles` ORs each weight's q into the nibble section (stored input k of row j in byte
 * j K / 2 + byteOf(k), shifted by shiftOf(k)), then the scale bits and zero of each (row, group), and the perm.
 */
function assemble(type: Int4Type, N: number, K: number, nibbles: (out: Uint8Array) => void,
  scaleBits: (j: number, t: number) => number, zero: (j: number, t: number) => number, perm: Int32Array): Uint8Array {
  const g = INT4_GROUPS[type], G = K / g, at = int4Layout(type, N, K);
  const out = new Uint8Array(at.bytes);
  nibbles(out);
  for (let j = 0; j < N; j++) {
    for (let t = 0; t < G; t++) {
      const bits = scaleBits(j, t);
      out[at.scales + 2 * (j * G + t)] = bits & 0xff;
      out[at.scales + 2 * (j * G + t) + 1] = bits >> 8;
      out[at.zeros + j * G + t] = zero(j, t);
    }
  }
  new Int32Array(out.buffer, at.perm, K).set(perm);
  return out;
}

/** The input order of a layer whose inputs are stored as they come. */
export const inputsInOrder = (K: number): Int32Array => Int32Array.from({ length: K }, (_, k) => k);

/** The byte of row j's nibbles holding stored input k (row j at j K / 2), and the shift of its nibble. */
const byteOf = (k: number): number => 16 * (k >> 5) + (k & 15);
const shiftOf = (k: number): number => (k & 16) >> 2;

const TILE = 64;

/** GPTQ's qweight [K / 8, N] into the nibble section, inputs in the order `perm` (null: as stored). */
function gptqNibbles(out: Uint8Array, qweight: Int32Array, N: number, K: number, perm: Int32Array | null): void {
  const half = K / 2;
  if (!perm) {
    // eight inputs 8r .. 8r + 7 per word: one run of bytes, all low or all high nibbles; TILE rows of the output at a
    // time, so that the rows being written stay in cache
    for (let j0 = 0; j0 < N; j0 += TILE) {
      const j1 = Math.min(N, j0 + TILE);
      for (let r = 0; r < K / 8; r++) {
        const b = byteOf(8 * r), s = shiftOf(8 * r);
        for (let j = j0; j < j1; j++) {
          const w = qweight[r * N + j], o = j * half + b;
          for (let i = 0; i < 8; i++) out[o + i] |= ((w >>> (4 * i)) & 15) << s;
        }
      }
    }
    return;
  }
  for (let k = 0; k < K; k++) {
    const i = perm[k], b = byteOf(k), s = shiftOf(k), row = (i >> 3) * N, sh = 4 * (i & 7);
    for (let j = 0; j < N; j++) out[j * half + b] |= ((qweight[row + j] >>> sh) & 15) << s;
  }
}

/**
 * The input order that makes each group's inputs contiguous, from GPTQ's g_idx (the group of each input): the
 * identity where g_idx is k / g (no act-order); otherwise the inputs sorted by group, each group holding exactly g
 * inputs (refused by name where not).
 */
export function permFromGroups(gIdx: Int32Array, g: number, name: string): Int32Array {
  const K = gIdx.length, G = K / g;
  if (gIdx.every((t, k) => t === Math.floor(k / g))) return inputsInOrder(K);
  const counts = new Int32Array(G);
  for (const t of gIdx) {
    if (!(t >= 0 && t < G)) fail('weights-mismatch', `tensor ${name} names group ${t} of ${G}; the g_idx does not match group_size ${g}`);
    counts[t]++;
  }
  if (counts.some((c) => c !== g)) fail('weights-mismatch', `tensor ${name} does not put ${g} inputs in every group (group_size); Peregrine runs act-order only with whole groups`);
  const next = Int32Array.from({ length: G }, (_, t) => t * g);
  const perm = new Int32Array(K);
  for (let k = 0; k < K; k++) perm[next[gIdx[k]]++] = k;
  return perm;
}

export interface PackedInt4 {
  /** the packed int32 weights: GPTQ [K / 8, N] (inputs 8r .. 8r + 7 in word r), AWQ [K, N / 8] */
  qweight: Int32Array;
  /** [K / g, N / 8], outputs 8c .. 8c + 7 in word c */
  qzeros: Int32Array;
  /** [K / g, N] f16 bits */
  scales: Uint16Array;
}

/**
 * A GPTQ layer (AutoGPTQ / GPTQModel): nibble i of qweight[r, n] is input 8r + i of output n, nibble i of
 * qzeros[t, c] the zero of output 8c + i in group t, stored minus one in the original format (`zerosMinusOne`,
 * checkpoint_format "gptq"; "gptq_v2" stores the zero), and g_idx (null: k / g) the group of each input.
 */
export function fromGptq(type: Int4Type, N: number, K: number, p: PackedInt4, gIdx: Int32Array | null, zerosMinusOne: boolean, name: string): Uint8Array {
  const g = INT4_GROUPS[type];
  const perm = gIdx ? permFromGroups(gIdx, g, name) : inputsInOrder(K);
  const { qweight, qzeros, scales } = p, N8 = N / 8, plus = zerosMinusOne ? 1 : 0;
  const inOrder = perm.every((p, k) => p === k);
  return assemble(type, N, K, (out) => gptqNibbles(out, qweight, N, K, inOrder ? null : perm),
    (j, t) => scales[t * N + j],
    (j, t) => ((qzeros[t * N8 + (j >> 3)] >>> (4 * (j & 7))) & 15) + plus,
    perm);
}

/** AWQ packs 8 outputs in a word in this order: nibble i holds output 8c + AWQ_ORDER[i] (AutoAWQ's WQLinear_GEMM). */
const AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7];
const AWQ_NIBBLE = AWQ_ORDER.map((_, n) => AWQ_ORDER.indexOf(n));

/** An AWQ layer in the GEMM format: qweight [K, N / 8] and qzeros [K / g, N / 8], outputs in AWQ_ORDER within a word. */
export function fromAwq(type: Int4Type, N: number, K: number, p: PackedInt4): Uint8Array {
  const { qweight, qzeros, scales } = p, N8 = N / 8;
  const nib = (words: Int32Array, r: number, j: number) => (words[r * N8 + (j >> 3)] >>> (4 * AWQ_NIBBLE[j & 7])) & 15;
  const nibbles = (out: Uint8Array) => {
    const half = K / 2;
    for (let c0 = 0; c0 < N8; c0 += TILE / 8) {
      const c1 = Math.min(N8, c0 + TILE / 8);
      for (let k = 0; k < K; k++) {
        const b = byteOf(k), s = shiftOf(k);
        for (let c = c0; c < c1; c++) {
          const w = qweight[k * N8 + c], o = 8 * c * half + b;
          for (let i = 0; i < 8; i++) out[o + AWQ_ORDER[i] * half] |= ((w >>> (4 * i)) & 15) << s;
        }
      }
    }
  };
  return assemble(type, N, K, nibbles, (j, t) => scales[t * N + j], (j, t) => nib(qzeros, t, j), inputsInOrder(K));
}

/**
 * Matrices of one type stacked along N (fused QKV, gate and up), or null where their input orders differ (the
 * caller dequantizes them instead).
 */
export function concatInt4(type: Int4Type, parts: { bytes: Uint8Array; rows: number }[], K: number): Uint8Array | null {
  const perm = int4Perm(type, parts[0].bytes, parts[0].rows, K);
  if (parts.some((p) => !int4Perm(type, p.bytes, p.rows, K).every((v, k) => v === perm[k]))) return null;
  const N = parts.reduce((a, p) => a + p.rows, 0), G = K / INT4_GROUPS[type], at = int4Layout(type, N, K);
  const out = new Uint8Array(at.bytes);
  let row = 0;
  for (const p of parts) {
    const from = int4Layout(type, p.rows, K);
    out.set(p.bytes.subarray(0, from.scales), (row * K) / 2);
    out.set(p.bytes.subarray(from.scales, from.zeros), at.scales + 2 * row * G);
    out.set(p.bytes.subarray(from.zeros, from.zeros + p.rows * G), at.zeros + row * G);
    row += p.rows;
  }
  new Int32Array(out.buffer, at.perm, K).set(perm);
  return out;
}
