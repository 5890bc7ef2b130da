// The runtime of an encoder: packed sequences (no padding) through the forward pass, then pooling and the
// checkpoint's head (a sequence classifier over first tokens, or a token head over chosen rows). Attention
// reads keys through block tables like a causal LM's, over one scratch cache in which sequence i owns the
// blocks of its own slot. Memory is planned for the largest input seen so far and grows (by powers of two)
// when an input does not fit.
import { fail } from '../errors.js';
import { packSegments, type Backend, type Tensor } from '../ops/backend.js';
import { checkTokenIds } from '../models/vocab.js';
import { tensorBytes, type Encoder, type EncoderOutput, type EncoderTask, type MemoryReport, type Pass } from '../models/model.js';
import { planPasses, PlannedPasses, type PassInputs } from './pass.js';

const BLOCK = 16;
/** pass shapes whose graphs are kept at once (EncoderRuntime.graphed) */
const GRAPH_SHAPES = 64;

export type Pooling = 'cls' | 'mean' | 'max';

/** What a pass computes besides the last hidden states. */
export interface EncodeWants {
  /** 'max' is taken on the host from the hidden states, which come back anyway */
  pooling?: Pooling;
  /** sequence-classification logits */
  classify?: boolean;
  /** the token head (token classification, masked LM) at these packed rows, or at every row (true) */
  tokens?: boolean | number[];
  /** false: the last hidden states stay on the device (`hidden` comes back empty), sparing the copy and its conversion */
  hidden?: boolean;
}

interface Sized {
  tokens: number;
  batch: number;
  seqLen: number;
  /** rows the token head runs over */
  rows: number;
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
  /** the token head's rows: where they are in the pass, where they go, gathered, and their logits */
  rowSrc: Tensor;
  rowDst: Tensor;
  gathered: Tensor;
  tokenLogits: Tensor;
  kv: Tensor;
  passes: PlannedPasses;
  owned: Tensor[];
}

export class EncoderRuntime {
  private cap: Sized = { tokens: 0, batch: 0, seqLen: 0, rows: 0 };
  private bufs: Buffers | null = null;
  /** the pass shapes the backend keeps graphs (or first sightings) of */
  private readonly shapes = new Set<string>();

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

  get task(): EncoderTask | null {
    return this.model.task;
  }

  /** Values per row of the token head's logits: the vocabulary (masked LM) or the labels. */
  private get tokenWidth(): number {
    return this.model.task === 'masked-lm' ? this.model.info.vocabSize : Math.max(this.model.labels.length, 1);
  }

  private get tokenTask(): boolean {
    return this.model.task === 'token-classification' || this.model.task === 'masked-lm';
  }

  /** Plans memory for `batch` sequences of up to `seqLen` tokens. */
  reserveFor(batch: number, seqLen: number): void {
    this.reserve({ tokens: batch * seqLen, batch, seqLen, rows: 1 });
  }

  private reserve(want: Sized): Buffers {
    const c = this.cap;
    if (this.bufs && want.tokens <= c.tokens && want.batch <= c.batch && want.seqLen <= c.seqLen && want.rows <= c.rows) return this.bufs;
    this.release();
    const up = (x: number, have: number) => Math.max(have, 2 ** Math.ceil(Math.log2(Math.max(x, 1))));
    const T = up(want.tokens, c.tokens), B = up(want.batch, c.batch), R = up(want.rows, c.rows);
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
    const tokenRows = this.tokenTask ? R : 1;
    const bufs: Omit<Buffers, 'passes' | 'owned'> = {
      io, segments: b.buffer([B, 3], 'i32'), starts: int(B), lengths: int(B), rows: int(B),
      pooled: b.buffer([B, H], act), cls: b.buffer([B, H], act), logits: b.buffer([B, labels], 'f32'),
      rowSrc: int(tokenRows), rowDst: int(tokenRows), gathered: b.buffer([tokenRows, H], act), tokenLogits: b.buffer([tokenRows, this.tokenWidth], 'f32'), kv,
    };
    b.writeInt(bufs.rowDst, Int32Array.from({ length: tokenRows }, (_, i) => i), tokenRows);
    // the plan covers everything a pass may run; a pass runs a part of it, in the same order
    const body = (p: Pass) => this.body(p, bufs, B, { pooling: 'mean', classify: this.model.task === 'sequence-classification', tokens: this.tokenTask }, tokenRows);
    const plan = planPasses(b, io, [{ body, segments: { table: bufs.segments, count: B, longest: S } }]);
    const owned = [kv, tables, io.ids, io.positions, io.slots, io.keyLens, io.typeIds!, bufs.segments, bufs.starts, bufs.lengths, bufs.rows, bufs.pooled, bufs.cls, bufs.logits,
      bufs.rowSrc, bufs.rowDst, bufs.gathered, bufs.tokenLogits];
    this.bufs = { ...bufs, passes: new PlannedPasses(b, plan), owned };
    this.cap = { tokens: T, batch: B, seqLen: S, rows: tokenRows };
    return this.bufs;
  }

  private body(p: Pass, a: Omit<Buffers, 'passes' | 'owned'>, count: number, want: { pooling?: Pooling; classify?: boolean; tokens?: boolean }, rows: number,
    read?: (hidden: Tensor) => void): Tensor {
    const b = p.ops;
    const hidden = this.model.forward(p);
    // the host reads the hidden states before the ops below may reuse their bytes
    read?.(hidden);
    if (want.pooling === 'mean') b.meanPool(a.pooled, hidden, a.starts, a.lengths, count);
    if (want.pooling === 'cls') b.gatherRows(a.pooled, hidden, a.starts, a.rows, count);
    if (want.classify) {
      b.gatherRows(a.cls, hidden, a.starts, a.rows, count);
      this.model.head(p, a.cls, a.logits, count);
    }
    if (want.tokens) {
      b.gatherRows(a.gathered, hidden, a.rowSrc, a.rowDst, rows);
      this.model.head(p, a.gathered, a.tokenLogits, rows);
    }
    return hidden;
  }

  /** Refuses a head the checkpoint does not carry, naming the classes that do. */
  checkTask(task: EncoderTask): void {
    if (this.model.task === task) return;
    const which = { 'sequence-classification': '...ForSequenceClassification', 'token-classification': '...ForTokenClassification', 'masked-lm': '...ForMaskedLM' }[task];
    fail('bad-request', `${this.info.architecture} has no ${task.replace('-', ' ')} head; use a ${which} checkpoint`);
  }

  encode(seqs: Int32Array[], want: EncodeWants): EncoderOutput {
    if (want.classify) this.checkTask('sequence-classification');
    if (want.tokens && !this.tokenTask) this.checkTask('token-classification');
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
    const tokenRows = want.tokens === true ? Array.from({ length: T }, (_, i) => i) : want.tokens || [];
    tokenRows.forEach((r) => {
      if (!Number.isSafeInteger(r) || r < 0 || r >= T) throw new Error(`internal: token row ${r} outside the pass of ${T} rows`);
    });
    const R = tokenRows.length;
    const a = this.reserve({ tokens: T, batch: B, seqLen: Math.max(...lengths), rows: R });
    const host = { ids: new Int32Array(T), positions: new Int32Array(T), typeIds: new Int32Array(T), slots: new Int32Array(T), keyLens: new Int32Array(T) };
    seqs.forEach((s, i) => {
      host.ids.set(s, starts[i]);
      for (let p = 0; p < s.length; p++) {
        host.positions[starts[i] + p] = p;
        host.slots[starts[i] + p] = i;
        // causal models attend to the keys up to their own
        host.keyLens[starts[i] + p] = this.model.causal ? p + 1 : s.length;
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
    if (R) b.writeInt(a.rowSrc, Int32Array.from(tokenRows), R);
    const H = this.model.info.hidden;
    const out: EncoderOutput = { hidden: new Float32Array(0), starts, lengths };
    const run = { pooling: want.pooling === 'max' ? undefined : want.pooling, classify: want.classify, tokens: R > 0 };
    // max pooling is taken on the host from the hidden states
    const readHidden = want.hidden !== false || want.pooling === 'max';
    const pass = a.passes.pass(a.io, T, { table: a.segments, ...seg });
    if (readHidden) {
      this.body(pass, a, B, run, R, (h) => (out.hidden = b.readFloat(h, T * H).slice()));
    } else {
      // nothing read on the way: the pass is a fixed sequence of ops for its shape, replayed as a graph from the
      // second time that shape comes (a short input's time is mostly launches)
      this.graphed(`encode T${T} B${B} S${seg.longest} R${R} ${run.pooling ?? '-'}${run.classify ? ' classify' : ''}`, () => this.body(pass, a, B, run, R));
    }
    if (want.pooling === 'max') out.pooled = maxPool(out.hidden, H, starts, lengths);
    else if (want.pooling) out.pooled = b.readFloat(a.pooled, B * H).slice();
    if (want.classify) out.logits = b.readFloat(a.logits, B * this.model.labels.length).slice();
    if (R) {
      out.tokenLogits = b.readFloat(a.tokenLogits, R * this.tokenWidth).slice();
      out.tokenRows = tokenRows;
    }
    // outputs that are not numbers are refused, never handed out (a vector of NaN looks like any other)
    if (readHidden) this.checkFinite(out.hidden, H, (row) => starts.filter((s) => s <= row).length - 1, 'last hidden states');
    if (out.pooled) this.checkFinite(out.pooled, H, (i) => i, 'pooled vector');
    if (out.logits) this.checkFinite(out.logits, this.model.labels.length, (i) => i, 'classification logits');
    if (out.tokenLogits) this.checkFinite(out.tokenLogits, this.tokenWidth, (i) => starts.filter((s) => s <= tokenRows[i]).length - 1, 'token logits');
    return out;
  }

  /**
   * Runs `body` through the backend's graph cache under `key`. Every input length makes a shape of its own, so the
   * shapes are bounded: past GRAPH_SHAPES of them the graphs are dropped and collected afresh.
   */
  private graphed(key: string, body: () => void): void {
    if (!this.shapes.has(key) && this.shapes.size >= GRAPH_SHAPES) {
      this.backend.invalidateGraphs();
      this.shapes.clear();
    }
    this.shapes.add(key);
    this.backend.graph(key, body);
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
    // the graphs use the buffers about to be freed
    this.backend.invalidateGraphs();
    this.shapes.clear();
    this.bufs.passes.free();
    for (const t of this.bufs.owned) this.backend.free(t);
    this.bufs = null;
  }

  dispose(): void {
    this.release();
  }
}

/** Each sequence's elementwise maximum over its tokens (sentence-transformers' max pooling), [sequences, width]. */
function maxPool(hidden: Float32Array, width: number, starts: number[], lengths: number[]): Float32Array {
  const out = new Float32Array(starts.length * width).fill(-Infinity);
  starts.forEach((s, i) => {
    for (let t = s; t < s + lengths[i]; t++) {
      for (let j = 0; j < width; j++) out[i * width + j] = Math.max(out[i * width + j], hidden[t * width + j]);
    }
  });
  return out;
}
