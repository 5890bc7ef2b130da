// Reading a model's weights by name from a checkpoint, checking each shape against what the config implies.
import { fail } from '../errors.js';
import { f32ToF16Bits, toFloat32, unquantized, type HostWeight, type StorageDType } from '../loaders/dtypes.js';
import { concatInt4, fromAwq, fromGptq, INT4_GROUPS, isInt4Type } from '../loaders/int4.js';
import { isQuantType, isStoredQuant, QUANT_TYPES, type StoredQuant } from '../loaders/quant.js';
import { quantizeTarget } from '../loaders/quantize.js';
import { concatW8A8, multipliersOf, w8a8Bytes } from '../loaders/w8a8.js';
import type { MatrixLoading, MatrixPart, WeightStore } from '../loaders/model-dir.js';
import type { Int4Scheme } from '../loaders/schemes.js';
import type { Backend, Tensor } from '../ops/backend.js';

export class Checkpoint {
  /**
   * @param prefix  prepended to every name, found by `detectPrefix` (e.g. "transformer." or "bert.")
   * @param implied what the config says, for error messages (e.g. "n_embd=768, n_head=12")
   * @param matrices how GEMM operands (`loadMatrix`, `loadConcat` as a matrix) load: `quantize`, the type those stored
   *   as floats are quantized to (LoadOptions.quantize; int4 in smaller groups where the inputs ask, quantizeTarget;
   *   weights stored quantized stay as they are); `scheme`, config.json's quantization_config (AWQ/GPTQ: "x.weight"
   *   stored as x.qweight, x.qzeros, x.scales and GPTQ's x.g_idx loads as grouped int4, loaders/int4.ts); `onMatrix`,
   *   told of each one loaded
   */
  constructor(readonly store: WeightStore, readonly prefix: string, readonly implied: string, readonly matrices: MatrixLoading = {}) {}

  private get int4(): Int4Scheme | null {
    const s = this.matrices.scheme;
    return s && s.method !== 'smoothquant' ? s : null;
  }

  private get w8a8(): boolean {
    return this.matrices.scheme?.method === 'smoothquant';
  }

  /** Tells `onMatrix` of a GEMM operand and the tensors it was made of. */
  private made(t: Tensor, parts: MatrixPart[]): Tensor {
    this.matrices.onMatrix?.(t, parts);
    return t;
  }

  /** The first of `names` the checkpoint holds (old and new spellings of one weight). */
  private resolve(names: string[]): string {
    for (const n of names) if (this.store.has(this.prefix + n)) return this.prefix + n;
    return fail('weights-mismatch', `the checkpoint has no tensor ${this.prefix + names[0]}; the weights are not of the architecture config.json names, or are incomplete`);
  }

  /** The stored bytes of a weight whose shape must be `shape` (or its transpose, [in, out], when `transpose`). */
  raw(names: string | string[], shape: number[], transpose = false): HostWeight {
    const name = this.resolve(typeof names === 'string' ? [names] : names);
    const info = this.store.info(name);
    const want = transpose ? [shape[1], shape[0]] : shape;
    if (info.shape.length !== want.length || info.shape.some((d, i) => d !== want[i])) {
      fail('weights-mismatch', `tensor ${name} has shape [${info.shape.join(', ')}] but config.json (${this.implied}) implies [${want.join(', ')}]; the config does not match the weights`);
    }
    if (info.dtype !== 'F32' && info.dtype !== 'F16' && info.dtype !== 'BF16' && !isQuantType(info.dtype)) {
      fail('bad-safetensors', `tensor ${name} has dtype ${info.dtype}; Peregrine reads F32, F16 and BF16 weights (and GGUF's ${QUANT_TYPES.join(', ')})`);
    }
    return { bytes: this.store.readBytes(name), dtype: info.dtype as StorageDType | StoredQuant };
  }

  /** A weight on the backend, [out, in] after transposing a stored [in, out]; quantized weights are dequantized. */
  load(backend: Backend, names: string | string[], shape: number[], transpose = false): Tensor {
    return backend.weight(this.raw(names, shape, transpose), shape, transpose);
  }

  /** Rows `first` .. shape[0] - 1 of a table whose shape must be `shape` (RoBERTa's positions past padding_idx), [shape[0] - first, ...]. */
  loadRows(backend: Backend, names: string | string[], shape: number[], first: number): Tensor {
    const whole = unquantized(this.raw(names, shape), shape);
    const rowBytes = (whole.dtype === 'F32' ? 4 : 2) * shape.slice(1).reduce((a, d) => a * d, 1);
    // a backend of shapes reads no bytes
    const bytes = whole.bytes.length ? whole.bytes.slice(first * rowBytes) : whole.bytes;
    return backend.weight({ bytes, dtype: whole.dtype }, [shape[0] - first, ...shape.slice(1)]);
  }

  /**
   * A GEMM operand [out, in] ([in, out] stored when `transpose`): quantized weights stay quantized, float ones are
   * quantized when the checkpoint quantizes (a stored quantized [in, out] is dequantized: its blocks run the wrong way).
   */
  loadMatrix(backend: Backend, names: string | string[], shape: number[], transpose = false): Tensor {
    const part = [{ name: this.resolveMatrix(names), rows: shape[0], transpose }];
    const packed = this.packedRaw(names, shape);
    if (packed) return this.made(backend.weight(packed, shape, false, true), part);
    const raw = this.raw(names, shape, transpose);
    const to = this.quantizeTo(raw, shape, typeof names === 'string' ? names : names[0]);
    if (to) return this.made(backend.quantizedWeight({ bytes: raw.bytes, dtype: raw.dtype as StorageDType }, shape, transpose, to), part);
    return this.made(backend.weight(raw, shape, transpose, !transpose), part);
  }

  /** The stored name of a GEMM operand: the first of `names` held as floats, or as int4 (its ".weight" name). */
  private resolveMatrix(names: string | string[]): string {
    const base = this.int4Base(names);
    return base !== undefined ? base + 'weight' : this.resolve(typeof names === 'string' ? [names] : names);
  }

  /** The prefixed base ("x.") of the first of `names` ("x.weight") stored as int4 (x.qweight), where the scheme is int4. */
  private int4Base(names: string | string[]): string | undefined {
    if (!this.int4) return undefined;
    return (typeof names === 'string' ? [names] : names).map((n) => this.prefix + n.replace(/\.weight$/, '.')).find((b) => this.store.has(b + 'qweight'));
  }

  /**
   * The type `raw` is quantized to as it loads, null where it is not: the checkpoint quantizes and `raw` is stored as
   * floats (refused by name where its rows are not whole blocks).
   */
  private quantizeTo(raw: HostWeight, shape: number[], name: string): StoredQuant | null {
    const to = this.matrices.quantize;
    if (!to || isStoredQuant(raw.dtype)) return null;
    return quantizeTarget(shape, to, this.prefix + name);
  }

  /** A GEMM operand [out, in] stored as the checkpoint's scheme says (int4, W8A8) in its layout; null where it is stored as floats. */
  private packedRaw(names: string | string[], shape: number[]): HostWeight | null {
    return this.int4Raw(names, shape) ?? this.w8a8Raw(names, shape);
  }

  /**
   * A GEMM operand [out, in] stored as SmoothQuant W8A8: x.weight as I8 [out, in] with x.weight_scale (F32 [out]) and
   * x.smooth_scale (F32 [in]), in loaders/w8a8.ts's layout; null where it is stored otherwise.
   */
  private w8a8Raw(names: string | string[], shape: number[]): HostWeight | null {
    if (!this.w8a8) return null;
    const name = this.resolve(typeof names === 'string' ? [names] : names), base = name.replace(/\.weight$/, '.');
    if (!this.store.has(base + 'weight_scale')) return null;
    const [N, K] = shape;
    this.checkShape(name, ['I8'], shape);
    const bytes = this.store.readBytes(name);
    const scales = this.floats(base + 'weight_scale', [N]), smooth = this.floats(base + 'smooth_scale', [K]);
    // a backend of shapes reads no bytes
    if (bytes.length === 0) return { bytes, dtype: 'W8A8' };
    if (!smooth.every((s) => s > 0 && Number.isFinite(s))) fail('weights-mismatch', `tensor ${base}smooth_scale holds a value that is not a positive number; the checkpoint is damaged`);
    const q = new Int8Array(bytes.slice().buffer);
    return { bytes: w8a8Bytes(q, scales, multipliersOf(smooth)), dtype: 'W8A8' };
  }

  /** An F32 tensor of `shape`. */
  private floats(name: string, shape: number[]): Float32Array {
    this.checkShape(name, ['F32'], shape);
    return new Float32Array(this.store.readBytes(name).slice().buffer);
  }

  /**
   * A GEMM operand [out, in] stored as AWQ or GPTQ int4 (the checkpoint's scheme; "x.weight" stored as x.qweight
   * and its companions), in Peregrine's int4 layout; null where it is stored otherwise.
   */
  private int4Raw(names: string | string[], shape: number[]): HostWeight | null {
    const base = this.int4Base(names);
    if (base === undefined) return null;
    const { method, type, zerosMinusOne } = this.int4!, g = INT4_GROUPS[type];
    const [N, K] = shape;
    if (N % 8 !== 0 || K % g !== 0) {
      fail('weights-mismatch', `tensor ${base}qweight is [${N}, ${K}] (out, in): int4 weights need outputs in eights and inputs in groups of ${g} (quantization_config.group_size)`);
    }
    const packed = {
      qweight: this.ints(base + 'qweight', method === 'gptq' ? [K / 8, N] : [K, N / 8]),
      qzeros: this.ints(base + 'qzeros', [K / g, N / 8]),
      scales: this.halves(base + 'scales', [K / g, N]),
    };
    const gIdx = method === 'gptq' && this.store.has(base + 'g_idx') ? this.ints(base + 'g_idx', [K]) : null;
    // a backend of shapes reads no bytes
    if (packed.qweight.length === 0) return { bytes: new Uint8Array(0), dtype: type };
    if (method === 'awq') return { bytes: fromAwq(type, N, K, packed), dtype: type };
    return { bytes: fromGptq(type, N, K, packed, gIdx, zerosMinusOne, base + 'g_idx'), dtype: type };
  }

  private checkShape(name: string, dtypes: string[], shape: number[]): void {
    const info = this.store.info(name);
    if (!dtypes.includes(info.dtype) || info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      fail('weights-mismatch', `tensor ${name} is [${info.shape.join(', ')}] ${info.dtype}, but config.json (${this.implied}, quantization_config) implies [${shape.join(', ')}] ${dtypes.join(' or ')}`);
    }
  }

  /** An I32 tensor of `shape` (int4 quants, zeros, group indices). */
  private ints(name: string, shape: number[]): Int32Array {
    this.checkShape(name, ['I32'], shape);
    return new Int32Array(this.store.readBytes(name).slice().buffer);
  }

  /** A float tensor of `shape` as f16 bits (int4 scales). */
  private halves(name: string, shape: number[]): Uint16Array {
    this.checkShape(name, ['F16', 'BF16', 'F32'], shape);
    const dtype = this.store.info(name).dtype as StorageDType, bytes = this.store.readBytes(name);
    if (dtype === 'F16') return new Uint16Array(bytes.slice().buffer);
    return Uint16Array.from(toFloat32(bytes.slice(), dtype), f32ToF16Bits);
  }

  /** Several weights of one dtype stacked along their first dimension (fused QKV). */
  loadStacked(backend: Backend, names: string[], shape: number[]): Tensor {
    return this.loadConcat(backend, names.map((name) => ({ name, shape })));
  }

  /**
   * Weights whose shapes differ only in the first dimension, concatenated along it (Q, K and V of grouped-query
   * attention). As GEMM operands (`matrix`) quantized parts of one type stay quantized; parts of different
   * dtypes are dequantized or widened to F32 first.
   */
  loadConcat(backend: Backend, parts: { name: string; shape: number[] }[], matrix = false): Tensor {
    let raws: HostWeight[] = parts.map((p) => (matrix ? this.packedRaw(p.name, p.shape) : null) ?? this.raw(p.name, p.shape));
    const type = raws[0].dtype, K = parts[0].shape[1];
    const made = (t: Tensor) => (matrix ? this.made(t, parts.map((p) => ({ name: this.resolveMatrix(p.name), rows: p.shape[0], transpose: false }))) : t);
    if ((isInt4Type(type) || type === 'W8A8') && raws.every((r) => r.dtype === type)) {
      const stacked = raws.map((r, i) => ({ bytes: r.bytes, rows: parts[i].shape[0] }));
      const bytes = raws[0].bytes.length === 0 ? raws[0].bytes // a backend of shapes reads no bytes
        : isInt4Type(type) ? concatInt4(type, stacked, K) : concatW8A8(stacked, K);
      const rows = parts.reduce((a, p) => a + p.shape[0], 0);
      if (bytes) return made(backend.weight({ bytes, dtype: type }, [rows, K], false, true));
      // inputs in different orders (act-order) or smoothed differently cannot share one matrix: the parts run dequantized
      raws = raws.map((r, i) => unquantized(r, parts[i].shape));
    }
    if (raws.some((p) => p.dtype !== raws[0].dtype)) {
      raws = raws.map((r, i) => {
        const u = unquantized(r, parts[i].shape);
        return { bytes: new Uint8Array(toFloat32(u.bytes, u.dtype).slice().buffer), dtype: 'F32' };
      });
    }
    const bytes = new Uint8Array(raws.reduce((a, p) => a + p.bytes.length, 0));
    let o = 0;
    for (const p of raws) {
      bytes.set(p.bytes, o);
      o += p.bytes.length;
    }
    const shape = [parts.reduce((a, p) => a + p.shape[0], 0), ...parts[0].shape.slice(1)], whole = { bytes, dtype: raws[0].dtype };
    const to = parts.map((p, i) => (matrix ? this.quantizeTo(raws[i], p.shape, p.name) : null));
    if (to[0] && to.every((t) => t === to[0])) {
      return made(backend.quantizedWeight({ bytes, dtype: whole.dtype as StorageDType }, shape, false, to[0]));
    }
    return made(backend.weight(whole, shape, false, matrix));
  }
}

/** Finds which of `prefixes` the checkpoint's names start with, by looking for `probe`. */
export function detectPrefix(store: WeightStore, prefixes: string[], probe: string, arch: string): string {
  for (const p of prefixes) if (store.has(p + probe)) return p;
  return fail('weights-mismatch', `the checkpoint has no ${probe} (looked under ${prefixes.map((p) => JSON.stringify(p)).join(', ')}); these weights are not a ${arch} checkpoint`);
}

/** Every tensor inside `parts` (layer structs, norms), once each, in order. */
export function weightTensors(parts: unknown[]): Tensor[] {
  const out = new Set<Tensor>();
  const walk = (x: unknown): void => {
    if (typeof x !== 'object' || x === null) return;
    if (Array.isArray((x as Tensor).shape) && typeof (x as Tensor).dtype === 'string') out.add(x as Tensor);
    else for (const v of Object.values(x)) walk(v);
  };
  parts.forEach(walk);
  return [...out];
}

/** An f32 tensor holding `values` whatever the compute dtype (rotary rates): written as their bits through an i32 view. */
export function f32Table(backend: Backend, values: Float32Array): Tensor {
  const t = backend.buffer([values.length], 'f32');
  const bits = new Int32Array(values.buffer, values.byteOffset, values.length);
  backend.writeInt(backend.view(t, 0, [values.length], 'i32'), bits, values.length);
  return t;
}
