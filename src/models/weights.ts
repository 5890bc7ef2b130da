// Reading a model's weights by name from a checkpoint, checking each shape against what the config implies.
import { fail } from '../errors.js';
import type { WeightStore } from '../loaders/model-dir.js';
import type { Backend, Tensor } from '../ops/backend.js';

export class Checkpoint {
  /**
   * @param prefix  prepended to every name, found by `detectPrefix` (e.g. "transformer." or "bert.")
   * @param implied what the config says, for error messages (e.g. "n_embd=768, n_head=12")
   */
  constructor(readonly store: WeightStore, readonly prefix: string, private readonly implied: string) {}

  has(name: string): boolean {
    return this.store.has(this.prefix + name);
  }

  /** The first of `names` the checkpoint holds (old and new spellings of one weight). */
  private resolve(names: string[]): string {
    for (const n of names) if (this.store.has(this.prefix + n)) return this.prefix + n;
    return fail('weights-mismatch', `the checkpoint has no tensor ${this.prefix + names[0]}; the weights are not of the architecture config.json names, or are incomplete`);
  }

  /** Host fp32 values of a weight whose stored shape must be `shape` ([in, out] when `transpose`, stored as [out, in] after). */
  host(names: string | string[], shape: number[], transpose = false): Float32Array {
    const name = this.resolve(typeof names === 'string' ? [names] : names);
    const stored = this.store.info(name).shape;
    const want = transpose ? [shape[1], shape[0]] : shape;
    if (stored.length !== want.length || stored.some((d, i) => d !== want[i])) {
      fail('weights-mismatch', `tensor ${name} has shape [${stored.join(', ')}] but config.json (${this.implied}) implies [${want.join(', ')}]; the config does not match the weights`);
    }
    const data = this.store.readF32(name);
    return transpose ? transpose2d(data, want[0], want[1]) : data;
  }

  load(backend: Backend, names: string | string[], shape: number[], transpose = false): Tensor {
    return backend.weight(this.host(names, shape, transpose), shape);
  }
}

/** Finds which of `prefixes` the checkpoint's names start with, by looking for `probe`. */
export function detectPrefix(store: WeightStore, prefixes: string[], probe: string, arch: string): string {
  for (const p of prefixes) if (store.has(p + probe)) return p;
  return fail('weights-mismatch', `the checkpoint has no ${probe} (looked under ${prefixes.map((p) => JSON.stringify(p)).join(', ')}); these weights are not a ${arch} checkpoint`);
}

/** [rows, cols] -> [cols, rows] */
export function transpose2d(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

export function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
