// Forward passes over planned activation memory. A body (a model's forward, and what the runtime does
// around it) is first recorded against an OpRecorder with placeholder buffers; the live ranges of every
// buffer in the recorded op sequence give the arena plan; then the same bodies run over views of the arena.
import { dtypeBytes, numel, type Backend, type DType, type Segments, type Tensor } from '../ops/backend.js';
import { allocateArena, planArena, type Arena, type ArenaPlan, type BufferRequest } from '../ops/plan.js';
import { liveRanges, OpRecorder } from '../ops/trace.js';
import type { MemoryInputs, Pass } from '../models/model.js';

/** The inputs of a pass that are not activations: token rows, tables and caches. */
export interface PassInputs {
  capacity: number;
  ids: Tensor;
  positions: Tensor;
  slots: Tensor;
  keyLens: Tensor;
  lengths: Tensor;
  typeIds: Tensor | null;
  blockTables: Tensor;
  cache(layer: number): { k: Tensor; v: Tensor };
  memory?: MemoryInputs | null;
}

class Placeholder implements Tensor {
  constructor(readonly name: string, readonly shape: readonly number[], readonly dtype: DType) {}
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function makePass(ops: Backend, io: PassInputs, n: number, segments: Segments | null, get: (name: string, shape: number[], dtype: DType) => Tensor): Pass {
  return {
    ops, n, segments, capacity: io.capacity, ids: io.ids, positions: io.positions, slots: io.slots, keyLens: io.keyLens,
    lengths: io.lengths, typeIds: io.typeIds, blockTables: io.blockTables, cache: (l) => io.cache(l), memory: io.memory ?? null,
    buffer: (name, shape, dtype = ops.activationDtype) => get(name, shape, dtype),
  };
}

/** Rows `first` .. of t (its first dimension), as a tensor of its own. */
export function rowsFrom(b: Backend, t: Tensor, first: number): Tensor {
  if (first === 0) return t;
  const rest = t.shape.slice(1);
  return b.view(t, first * numel(rest) * dtypeBytes(t.dtype), [t.shape[0] - first, ...rest], t.dtype);
}

/**
 * Rows first .. first + n - 1 of pass `p` as a pass of their own: its row inputs, and each buffer the model asks for
 * (rows first, as every activation buffer is), from those rows on. A decode step's rows are independent of each other.
 * A prompt pass's rows need `segments`, theirs counted from `first` (segmentsOf): a row attends to the keys in the cache
 * up to its own, so rows that follow rows of their sequence in another part see their keys once that part has run, as
 * the chunks of a long prompt do.
 */
export function stepRows(b: Backend, p: Pass, first: number, n: number, segments: Segments | null = null): Pass {
  if (p.segments && !segments) throw new Error('internal: a prompt pass split by rows without their segments');
  if (first === 0 && n === p.n && !segments) return p;
  const rows = (t: Tensor) => rowsFrom(b, t, first);
  return {
    ...p, n, segments: segments ?? p.segments, capacity: p.capacity - first, ids: rows(p.ids), positions: rows(p.positions), slots: rows(p.slots), keyLens: rows(p.keyLens),
    lengths: rows(p.lengths), typeIds: p.typeIds && rows(p.typeIds),
    buffer: (name, shape, dtype) => rows(p.buffer(name, [shape[0] + first, ...shape.slice(1)], dtype)),
  };
}

/**
 * The segments of rows first .. end - 1 of a prompt pass whose `count` segments are the (first row, rows, 0) triples
 * of `table`, with rows counted from `first`, as triples in `out` from triple `at`; returns their count and the longest.
 */
export function segmentsOf(table: Int32Array, count: number, first: number, end: number, out: Int32Array, at: number): { count: number; longest: number } {
  let k = 0, longest = 0;
  for (let s = 0; s < count; s++) {
    const a = Math.max(first, table[3 * s]), z = Math.min(end, table[3 * s] + table[3 * s + 1]);
    if (a >= z) continue;
    out.set([a - first, z - a, 0], 3 * (at + k++));
    longest = Math.max(longest, z - a);
  }
  return { count: k, longest };
}

/** A body: what runs in one pass, given the pass. `segments` null makes it a decode step. */
export type PassBody = (p: Pass) => void;

/** Records `bodies` one after another and plans their activation buffers. */
export function planPasses(backend: Backend, io: PassInputs, bodies: { body: PassBody; segments: Segments | null }[]): ArenaPlan {
  const rec = new OpRecorder(backend);
  const placeholders = new Map<string, Placeholder>();
  const get = (name: string, shape: number[], dtype: DType): Tensor => {
    let t = placeholders.get(name);
    if (!t) placeholders.set(name, (t = new Placeholder(name, shape, dtype)));
    else if (!sameShape(t.shape, shape) || t.dtype !== dtype) throw new Error(`internal: buffer ${name} asked for as [${shape}] ${dtype} and [${t.shape}] ${t.dtype}`);
    return t;
  };
  for (const { body, segments } of bodies) body(makePass(rec.backend, io, io.capacity, segments, get));
  const requests: BufferRequest[] = [];
  for (const t of placeholders.values()) {
    const acc = rec.accesses.get(t);
    // a buffer asked for but never used still gets its own bytes (ranges over the whole run)
    requests.push({ name: t.name, shape: [...t.shape], dtype: t.dtype, ranges: acc ? liveRanges(acc) : [[0, rec.ops]] });
  }
  return planArena(requests);
}

/** Activation buffers allocated by a plan, and passes over them. */
export class PlannedPasses {
  readonly arena: Arena;

  constructor(private readonly backend: Backend, plan: ArenaPlan) {
    this.arena = allocateArena(backend, plan);
  }

  pass(io: PassInputs, n: number, segments: Segments | null): Pass {
    const get = (name: string, shape: number[], dtype: DType): Tensor => {
      const t = this.arena.buffers.get(name);
      if (!t || !sameShape(t.shape, shape) || t.dtype !== dtype) {
        throw new Error(`internal: buffer ${name} [${shape}] ${dtype} was not in the plan`);
      }
      return t;
    };
    return makePass(this.backend, io, n, segments, get);
  }

  free(): void {
    this.backend.free(this.arena.region);
  }
}
