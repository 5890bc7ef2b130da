// The kernel micro-benchmarks' frame (bench/kernels/<family>.ts, as llm.c's dev/cuda has one per kernel): each family
// yields cases (one op at one shape, with the least bytes it must move), and each is timed alone on the GPU against
// the device's measured copy bandwidth (its measured dense GEMM rate is reported beside it; the FLOP-bound kernels,
// prompt attention and the quantized GEMMs, have their own benches with peers: kernels/flash, kernels/quant).
//   npm run bench -- kernels [--families layernorm,gemv,...] [--dtype f16|bf16]
//   npm run bench -- kernels/<family> [--dtype f16|bf16]
// Timing: a captured graph of many runs of the op, cycling over copies of its inputs when one copy fits the L2 cache
// (so that memory, not the cache, is measured), replayed 5 times; GPU time per run, the median replay.
import { randomFillSync } from 'node:crypto';
import { CudaBackend } from '../../src/backends/cuda/backend.js';
import type { DType, Tensor } from '../../src/ops/backend.js';
import type { BenchArgs } from '../common.js';

/** One op at one shape, its inputs made: `run(i)` runs it on copy i of them. */
export interface KernelCase {
  op: string;
  shape: string;
  /** bytes the op must read and write at the least (inputs once, outputs once) */
  bytes: number;
  copies: number;
  run(copy: number): void;
}

/** A kernel family's cases, made one at a time (each freed before the next is made). */
export type Family = (t: Tensors, args: BenchArgs) => Generator<KernelCase>;

/** Copies of a case's inputs that together pass the L2 cache several times over (128 MiB), at most 8. */
export function copiesFor(bytes: number): number {
  return Math.max(1, Math.min(8, Math.ceil(2 ** 27 / bytes)));
}

/** Tensors made for the case at hand, freed together before the next case; or, inside `forFamily`, kept for the
 *  family's later cases (a large table several cases read). */
export class Tensors {
  private made: Tensor[] = [];
  private lasting: Tensor[] = [];
  private familyScope = false;

  constructor(readonly b: CudaBackend) {}

  get dtype(): DType {
    return this.b.activationDtype;
  }

  /** Bytes per element of the activation dtype. */
  get eb(): number {
    return this.b.activationDtype === 'f32' ? 4 : 2;
  }

  buffer(shape: number[], dtype: DType = this.dtype): Tensor {
    return this.keep(this.b.buffer(shape, dtype));
  }

  /** A tensor of random values of magnitude 2^-7 .. 2^-6, either sign (f16 bits, converted to the dtype). */
  random(shape: number[]): Tensor {
    const h = randomFillSync(new Uint16Array(shape.reduce((a, d) => a * d, 1)));
    for (let i = 0; i < h.length; i++) h[i] = (h[i] & 0x83ff) | 0x2000;
    return this.keep(this.b.weight({ bytes: new Uint8Array(h.buffer), dtype: 'F16' }, shape));
  }

  ints(x: Int32Array, shape: number[] = [x.length]): Tensor {
    const t = this.keep(this.b.buffer(shape, 'i32'));
    this.b.writeInt(t, x, x.length);
    return t;
  }

  keep(t: Tensor): Tensor {
    (this.familyScope ? this.lasting : this.made).push(t);
    return t;
  }

  /** What `make` allocates lives until the family ends. */
  forFamily<T>(make: () => T): T {
    this.familyScope = true;
    try {
      return make();
    } finally {
      this.familyScope = false;
    }
  }

  /** Frees the case's tensors, and with `family` the family's too. */
  free(family = false): void {
    this.b.synchronize();
    for (const t of this.made) this.b.free(t);
    this.made = [];
    if (!family) return;
    for (const t of this.lasting) this.b.free(t);
    this.lasting = [];
  }
}

/** GPU microseconds per run of `c`: enough runs per captured graph for 2 ms or 64 runs, median of 5 replays. */
export function timeCase(b: CudaBackend, c: KernelCase, key: string): number {
  c.run(0);
  const once = b.timeMs(() => { for (let i = 0; i < c.copies; i++) c.run(i); }) / c.copies;
  const reps = Math.max(c.copies, Math.min(1024, Math.ceil(Math.max(64, 2 / Math.max(once, 1e-4)) / c.copies) * c.copies));
  const body = () => { for (let i = 0; i < reps; i++) c.run(i % c.copies); };
  b.graph(key, body);
  b.graph(key, body);
  const times = Array.from({ length: 5 }, () => b.timeMs(() => b.graph(key, body)) / reps).sort((x, y) => x - y);
  return times[2] * 1000;
}

/** Dense GEMM rate of the device in TFLOP/s through cuBLASLt: [8192, 8192] x [8192, 8192]^T in the dtype. */
export function gemmRate(b: CudaBackend): number {
  const n = 8192, t = new Tensors(b);
  const x = t.random([n, n]), w = t.random([n, n]), out = t.buffer([n, n]);
  const us = timeCase(b, { op: 'gemm', shape: '', bytes: 0, copies: 1, run: () => b.linear(out, x, w, null, 'none', n) }, 'kernels roofline gemm');
  t.free(true);
  return (2 * n ** 3) / (us * 1e6);
}
