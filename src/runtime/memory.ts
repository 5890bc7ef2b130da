// The memory of an encoder-decoder model (FasterTransformer's memory caches): each request's encoder output,
// as every decoder layer's cross-attention keys and values, computed once when the request is admitted and
// read by every decoder step. It lives in a paged pool of its own, read through per-slot block tables; a
// request's beams point their slots' tables at the same blocks, so the memory is shared, never copied.
import { fail } from '../errors.js';
import { dtypeBytes, packSegments, type Backend, type Segments, type Tensor } from '../ops/backend.js';
import type { MemoryInputs, Pass, Seq2Seq } from '../models/model.js';
import { planPasses, PlannedPasses, type PassInputs } from './pass.js';
import type { TableWrites } from './table-writes.js';

export interface MemoryLimits {
  /** source tokens per encoder pass (and per request) */
  maxSourceLen: number;
  /** blocks in the memory pool (block 0 is reserved) */
  blocks: number;
  blockSize: number;
  /** sequence slots (the decoder's, padding slot included) */
  slots: number;
}

/** A source to encode into the memory of `slot`'s blocks. */
export interface Source {
  slot: number;
  ids: readonly number[];
}

export class EncoderMemory {
  readonly inputs: MemoryInputs;
  readonly maxBlocks: number;
  private readonly pool: Tensor;
  private readonly caches: { k: Tensor; v: Tensor }[] = [];
  private readonly rows: { ids: Tensor; positions: Tensor; slots: Tensor; keyLens: Tensor };
  private readonly segments: Tensor;
  private readonly io: PassInputs;
  private readonly passes: PlannedPasses;
  private readonly host: { ids: Int32Array; positions: Int32Array; slots: Int32Array; keyLens: Int32Array; segments: Int32Array };

  /** `writes`: the runtime's queue of table changes, which takes the memory's block tables and lengths too */
  constructor(private readonly model: Seq2Seq, private readonly backend: Backend, readonly limits: MemoryLimits, layers: number,
    private readonly writes: TableWrites) {
    const b = backend, act = b.activationDtype, W = model.memoryWidth;
    const { maxSourceLen: E, blocks, blockSize, slots } = limits;
    this.maxBlocks = Math.ceil(E / blockSize);
    this.pool = b.buffer([2 * layers, blocks, blockSize, W], act);
    const plane = blocks * blockSize * W * dtypeBytes(act);
    for (let l = 0; l < layers; l++) {
      this.caches.push({ k: b.view(this.pool, 2 * l * plane, [blocks, blockSize, W], act), v: b.view(this.pool, (2 * l + 1) * plane, [blocks, blockSize, W], act) });
    }
    const tables = b.buffer([slots, this.maxBlocks], 'i32');
    this.inputs = { blockTables: tables, lengths: b.buffer([slots], 'i32'), cache: (l) => this.caches[l] };
    this.rows = { ids: b.buffer([E], 'i32'), positions: b.buffer([E], 'i32'), slots: b.buffer([E], 'i32'), keyLens: b.buffer([E], 'i32') };
    this.segments = b.buffer([E, 3], 'i32');
    // the encoder pass: the memory's caches and tables are its caches
    this.io = { capacity: E, ...this.rows, lengths: this.rows.keyLens, typeIds: null, blockTables: tables, cache: (l) => this.caches[l] };
    const body = (p: Pass) => model.encode(p);
    this.passes = new PlannedPasses(b, planPasses(b, this.io, [{ body, segments: { table: this.segments, count: 1, longest: E } }]));
    this.host = { ids: new Int32Array(E), positions: new Int32Array(E), slots: new Int32Array(E), keyLens: new Int32Array(E), segments: new Int32Array(3 * E) };
  }

  /** Points `slot`'s memory at `blocks`, holding `length` source tokens. */
  attach(slot: number, blocks: readonly number[], length: number): void {
    this.writes.put(this.inputs.blockTables, slot, 0, blocks);
    this.writes.put(this.inputs.lengths, slot, 0, [length]);
  }

  /** Runs the encoder over sources (their slots attached first), as few passes as the capacity allows. */
  encode(sources: readonly Source[]): void {
    const E = this.limits.maxSourceLen;
    let start = 0;
    while (start < sources.length) {
      let end = start, tokens = 0;
      while (end < sources.length && tokens + sources[end].ids.length <= E) tokens += sources[end++].ids.length;
      if (end === start) fail('bad-request', `a source of ${sources[start].ids.length} tokens is beyond the ${E} the encoder takes per pass`);
      this.pass(sources.slice(start, end), tokens);
      start = end;
    }
  }

  private pass(sources: readonly Source[], n: number): void {
    const h = this.host, b = this.backend;
    this.writes.flush();
    let t = 0;
    for (const s of sources) {
      for (let i = 0; i < s.ids.length; i++, t++) {
        h.ids[t] = s.ids[i];
        h.positions[t] = i;
        h.slots[t] = s.slot;
        // every source token sees its whole source
        h.keyLens[t] = s.ids.length;
      }
    }
    for (const [name, arr] of [['ids', h.ids], ['positions', h.positions], ['slots', h.slots], ['keyLens', h.keyLens]] as const) b.writeInt(this.rows[name], arr, n);
    const seg = packSegments(h.slots, n, h.segments);
    b.writeInt(this.segments, h.segments, 3 * seg.count);
    const segments: Segments = { table: this.segments, ...seg };
    this.model.encode(this.passes.pass(this.io, n, segments));
  }

  /** bytes of the pool, the tables and the encoder's activations */
  regions(): { name: string; bytes: number }[] {
    const act = dtypeBytes(this.backend.activationDtype);
    const [planes, blocks, blockSize, W] = this.pool.shape;
    return [
      { name: 'encoder-memory', bytes: planes * blocks * blockSize * W * act },
      { name: 'encoder-activations', bytes: this.passes.arena.plan.bytes },
    ];
  }

  tensors(): Tensor[] {
    return [this.pool, this.inputs.blockTables, this.inputs.lengths, ...Object.values(this.rows), this.segments];
  }

  free(): void {
    this.passes.free();
    for (const t of this.tensors()) this.backend.free(t);
  }
}
