// Reading a model's weights by name from a checkpoint, checking each shape against what the config implies.
import { fail } from '../errors.js';
import { toFloat32, unquantized, type HostWeight, type StorageDType } from '../loaders/dtypes.js';
import { isQuantType, QUANT_TYPES, type QuantType } from '../loaders/quant.js';
import { checkQuantizable } from '../loaders/quantize.js';
import type { WeightStore } from '../loaders/model-dir.js';
import type { Backend, Tensor } from '../ops/backend.js';

export class Checkpoint {
  /**
   * @param prefix  prepended to every name, found by `detectPrefix` (e.g. "transformer." or "bert.")
   * @param implied what the config says, for error messages (e.g. "n_embd=768, n_head=12")
   * @param quantize the ggml type GEMM operands (`loadMatrix`, `loadConcat` as a matrix) stored as floats are
   *   quantized to as they load (LoadOptions.quantize); weights stored quantized stay as they are
   */
  constructor(readonly store: WeightStore, readonly prefix: string, readonly implied: string, readonly quantize: QuantType | null = null) {}

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
    return { bytes: this.store.readBytes(name), dtype: info.dtype as StorageDType | QuantType };
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
    const raw = this.raw(names, shape, transpose);
    if (this.quantizes(raw, shape, typeof names === 'string' ? names : names[0])) {
      return backend.quantizedWeight({ bytes: raw.bytes, dtype: raw.dtype as StorageDType }, shape, transpose, this.quantize!);
    }
    return backend.weight(raw, shape, transpose, !transpose);
  }

  /** Whether `raw` is quantized as it loads: the checkpoint quantizes and `raw` is stored as floats (refused by name where its rows are not whole blocks). */
  private quantizes(raw: HostWeight, shape: number[], name: string): boolean {
    if (!this.quantize || isQuantType(raw.dtype)) return false;
    checkQuantizable(shape, this.quantize, this.prefix + name);
    return true;
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
    let raws: HostWeight[] = parts.map((p) => this.raw(p.name, p.shape));
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
    if (matrix && parts.every((p, i) => this.quantizes(raws[i], p.shape, p.name))) {
      return backend.quantizedWeight({ bytes, dtype: whole.dtype as StorageDType }, shape, false, this.quantize!);
    }
    return backend.weight(whole, shape, false, matrix);
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
