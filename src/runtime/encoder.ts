// The runtime of an encoder: packed sequences (no padding) through the forward pass, then pooling and the
// classifier. Attention reads keys through block tables like a causal LM's, over one scratch cache in which
// sequence i owns the blocks of its own slot. Memory is planned for the largest input seen so far and grows
// (by powers of two) when an input does not fit.
import { fail } from '../errors.js';
import { packSegments, type Backend, type Tensor } from '../ops/backend.js';
import { checkTokenIds } from '../models/vocab.js';
import { tensorBytes, type Encoder, type EncoderOutput, type MemoryReport, type Pass } from '../models/model.js';
import { planPasses, PlannedPasses, type PassInputs } from './pass.js';

const BLOCK = 16;

interface Sized {
  tokens: number;
  batch: number;
  seqLen: number;
}

interface Buffers {
  io: PassInputs;
  segments: Tensor;
  starts: Tensor;
  lengths: Tensor;
  rows: Tensor;
  pooled: Tensor;
  cls: Tensor;
  logits: Tensor;
  kv: Tensor;
  passes: PlannedPasses;
  owned: Tensor[];
}

export class EncoderRuntime {
  private cap: Sized = { tokens: 0, batch: 0, seqLen: 0 };
  private bufs: Buffers | null = null;

  constructor(readonly model: Encoder, readonly backend: Backend) {}

  get info() {
    return this.model.info;
  }

  get labels(): string[] {
    return this.model.labels;
  }

  get numLabels(): number {
    return this.model.labels.length;
  }

  /** Plans memory for `batch` sequences of up to `seqLen` tokens. */
  reserveFor(batch: number, seqLen: number): void {
    this.reserve({ tokens: batch * seqLen, batch, seqLen });
  }

  private reserve(want: Sized): Buffers {
    const c = this.cap;
    if (this.bufs && want.tokens <= c.tokens && want.batch <= c.batch && want.seqLen <= c.seqLen) return this.bufs;
    this.release();
    const up = (x: number, have: number) => Math.max(have, 2 ** Math.ceil(Math.log2(Math.max(x, 1))));
    const T = up(want.tokens, c.tokens), B = up(want.batch, c.batch);
    const S = Math.min(up(want.seqLen, c.seqLen), Math.ceil(this.model.info.maxPositions / BLOCK) * BLOCK);
    const b = this.backend, H = this.model.info.hidden, act = b.activationDtype;
    const maxBlocks = Math.ceil(S / BLOCK);
    const int = (n: number) => b.buffer([n], 'i32');
    const kv = b.buffer([2, B * maxBlocks, BLOCK, H], act);
    const plane = B * maxBlocks * BLOCK * H * (act === 'f32' ? 4 : 2);
    const k = b.view(kv, 0, [B * maxBlocks, BLOCK, H], act), v = b.view(kv, plane, [B * maxBlocks, BLOCK, H], act);
    const tables = b.buffer([B, maxBlocks], 'i32');
    b.writeInt(tables, Int32Array.from({ length: B * maxBlocks }, (_, i) => i), B * maxBlocks);
    const keyLens = int(T);
    // a whole sequence per pass: the length each row's sequence reaches is its key count
    const io: PassInputs = {
      capacity: T, ids: int(T), positions: int(T), slots: int(T), keyLens, lengths: keyLens, typeIds: int(T), blockTables: tables,
      cache: () => ({ k, v }),
    };
    const labels = Math.max(this.model.labels.length, 1);
    const bufs: Omit<Buffers, 'passes' | 'owned'> = {
      io, segments: b.buffer([B, 3], 'i32'), starts: int(B), lengths: int(B), rows: int(B),
      pooled: b.buffer([B, H], act), cls: b.buffer([B, H], act), logits: b.buffer([B, labels], 'f32'), kv,
    };
    const body = (p: Pass) => this.body(p, bufs, B, { pooling: 'mean', classify: this.model.labels.length > 0 });
    const plan = planPasses(b, io, [{ body, segments: { table: bufs.segments, count: B, longest: S } }]);
    const owned = [kv, tables, io.ids, io.positions, io.slots, io.keyLens, io.typeIds!, bufs.segments, bufs.starts, bufs.lengths, bufs.rows, bufs.pooled, bufs.cls, bufs.logits];
    this.bufs = { ...bufs, passes: new PlannedPasses(b, plan), owned };
    this.cap = { tokens: T, batch: B, seqLen: S };
    return this.bufs;
  }

  private body(p: Pass, a: Omit<Buffers, 'passes' | 'owned'>, count: number, want: { pooling?: 'cls' | 'mean'; classify?: boolean },
    read?: (hidden: Tensor) => void): Tensor {
    const b = p.ops;
    const hidden = this.model.forward(p);
    // the host reads the hidden states before the ops below may reuse their bytes
    read?.(hidden);
    if (want.pooling === 'mean') b.meanPool(a.pooled, hidden, a.starts, a.lengths, count);
    if (want.pooling === 'cls') b.gatherRows(a.pooled, hidden, a.starts, a.rows, count);
    if (want.classify) {
      b.gatherRows(a.cls, hidden, a.starts, a.rows, count);
      this.model.classify(p, a.cls, a.logits, count);
    }
    return hidden;
  }

  encode(seqs: Int32Array[], want: { pooling?: 'cls' | 'mean'; classify?: boolean }): EncoderOutput {
    if (want.classify && this.model.labels.length === 0) fail('bad-request', 'this checkpoint has no sequence-classification head (it is not BertForSequenceClassification)');
    if (!Array.isArray(seqs) || seqs.length === 0) fail('bad-request', 'no inputs given; pass at least one sequence of token ids');
    const { vocabSize, maxPositions } = this.model.info;
    seqs.forEach((s, i) => {
      if (s.length === 0 || s.length > maxPositions) fail('bad-request', `input ${i} has ${s.length} tokens; give 1 to ${maxPositions} (the model's positions)`);
      checkTokenIds(s, vocabSize, `input ${i}`, 'ids');
    });
    const B = seqs.length;
    const lengths = seqs.map((s) => s.length);
    const starts: number[] = [];
    let T = 0;
    for (const len of lengths) {
      starts.push(T);
      T += len;
    }
    const a = this.reserve({ tokens: T, batch: B, seqLen: Math.max(...lengths) });
    const host = { ids: new Int32Array(T), positions: new Int32Array(T), typeIds: new Int32Array(T), slots: new Int32Array(T), keyLens: new Int32Array(T) };
    seqs.forEach((s, i) => {
      host.ids.set(s, starts[i]);
      for (let p = 0; p < s.length; p++) {
        host.positions[starts[i] + p] = p;
        host.slots[starts[i] + p] = i;
        host.keyLens[starts[i] + p] = s.length;
      }
    });
    const b = this.backend;
    for (const [name, arr] of Object.entries(host)) b.writeInt(a.io[name as keyof typeof host]!, arr, T);
    b.writeInt(a.starts, Int32Array.from(starts), B);
    b.writeInt(a.lengths, Int32Array.from(lengths), B);
    b.writeInt(a.rows, Int32Array.from({ length: B }, (_, i) => i), B);
    const table = new Int32Array(3 * B);
    const seg = packSegments(host.slots, T, table);
    b.writeInt(a.segments, table, 3 * B);
    const H = this.model.info.hidden;
    const out: EncoderOutput = { hidden: new Float32Array(0), starts, lengths };
    this.body(a.passes.pass(a.io, T, { table: a.segments, ...seg }), a, B, want, (h) => (out.hidden = b.readFloat(h, T * H).slice()));
    if (want.pooling) out.pooled = b.readFloat(a.pooled, B * H).slice();
    if (want.classify) out.logits = b.readFloat(a.logits, B * this.model.labels.length).slice();
    // outputs that are not numbers are refused, never handed out (a vector of NaN looks like any other)
    this.checkFinite(out.hidden, H, (row) => starts.filter((s) => s <= row).length - 1, 'last hidden states');
    if (out.pooled) this.checkFinite(out.pooled, H, (i) => i, 'pooled vector');
    if (out.logits) this.checkFinite(out.logits, this.model.labels.length, (i) => i, 'classification logits');
    return out;
  }

  /** Fails on the first NaN or infinity of `values` (rows of `width`), naming the input of its row. */
  private checkFinite(values: Float32Array, width: number, inputOf: (row: number) => number, what: string): void {
    for (let i = 0; i < values.length; i++) {
      if (Number.isFinite(values[i])) continue;
      const fix = this.backend.activationDtype === 'f16' ? 'or the computation overflowed in f16; try --dtype bf16 or f32' : 'or the computation overflowed; check the checkpoint';
      fail('non-finite', `the model computed non-finite values (NaN or infinity) in the ${what} of input ${inputOf(Math.floor(i / width))}: the weights hold NaN or infinity, ${fix}`);
    }
  }

  memory(): MemoryReport {
    const weights = tensorBytes(this.model.weights());
    const c = this.cap, H = this.model.info.hidden, act = this.backend.activationDtype === 'f32' ? 4 : 2;
    return {
      regions: [
        { name: 'weights', bytes: weights },
        { name: 'attention-kv', bytes: 2 * c.batch * Math.ceil(c.seqLen / BLOCK) * BLOCK * H * act },
        { name: 'activations', bytes: this.bufs ? this.bufs.passes.arena.plan.bytes : 0 },
      ],
      buffers: this.bufs ? this.bufs.passes.arena.plan.buffers : [],
      capacity: { ...c },
    };
  }

  private release(): void {
    if (!this.bufs) return;
    this.bufs.passes.free();
    for (const t of this.bufs.owned) this.backend.free(t);
    this.bufs = null;
  }

  dispose(): void {
    this.release();
  }
}
