// The runtime of a causal LM: it owns the paged KV pool, the per-sequence device tables (block tables,
// requests, token histories), the activation plan and the captured decode graphs, and runs two kinds of
// pass: a prefill chunk (packed prompt rows of several sequences, some of which draw their next token)
// and a decode step (one row per running sequence, replayed from a graph per batch-size bucket). Which
// sequence sits in which slot, and which blocks it owns, is the scheduler's business (src/engine/).
import { dtypeBytes, packSegments, type Backend, type Candidates, type SampleRows, type Segments, type SequenceTables, type Tensor } from '../ops/backend.js';
import { CANDIDATE_SCRATCH, LOGPROB_STRIDE, MAX_CANDIDATES, REQUEST_STRIDE } from '../ops/requests.js';
import { cacheLayers, tensorBytes, type CausalLM, type MemoryReport, type Pass } from '../models/model.js';
import { EncoderMemory } from './memory.js';
import { planPasses, PlannedPasses, rowsFrom, segmentsOf, stepRows, type PassInputs } from './pass.js';
import { TableWrites } from './table-writes.js';

export interface RuntimeLimits {
  /** sequences that run at once: decode rows and sequence slots */
  maxBatch: number;
  /** tokens per sequence, prompt and generated */
  maxSeqLen: number;
  /** prompt tokens per prefill pass */
  prefillChunk: number;
  /** blocks in the KV pool (block 0 is reserved for padding rows) */
  kvBlocks: number;
  /** tokens per block */
  blockSize: number;
  /** encoder-decoder models: source tokens per request, and blocks of the encoder-memory pool (block 0 reserved) */
  maxSourceLen?: number;
  memoryBlocks?: number;
}

/** Rows first .. first + n - 1 of a prefill chunk, run as a pass of their own, and their segments. */
interface PromptPart {
  first: number;
  n: number;
  segments: Segments;
}

/** n rows in `parts` micro-batches of rows as even as they divide: each one's first row and rows. */
function microBatches(n: number, parts: number): { first: number; n: number }[] {
  return Array.from({ length: parts }, (_, i) => {
    const first = Math.floor((i * n) / parts);
    return { first, n: Math.floor(((i + 1) * n) / parts) - first };
  });
}

/** A prefill pass: packed prompt rows; `heads` of them draw the next token of their sequence. */
export interface PrefillChunk {
  n: number;
  ids: Int32Array;
  positions: Int32Array;
  slots: Int32Array;
  heads: number;
  /** row in the chunk, its sequence's slot, and the sequence's length (the position of the token drawn) */
  headRows: Int32Array;
  headSlots: Int32Array;
  headLengths: Int32Array;
  /**
   * Prompt log-probs: `scores` rows of the chunk whose logits score the sequence's next prompt token
   * (`scoreTargets`); the log-probs come back in StepOutput.promptLogprobs in this order.
   */
  scores: number;
  scoreRows: Int32Array;
  scoreSlots: Int32Array;
  scoreTargets: Int32Array;
}

/** The decode rows (keyLens = positions + 1), uploaded when the running batch changes. */
export interface DecodeRows {
  n: number;
  ids: Int32Array;
  positions: Int32Array;
  slots: Int32Array;
}

/** What a pass computes beyond drawn tokens. */
export interface StepFlags {
  /** some row has logits processors or is a beam row */
  process: boolean;
  /** some row asked for log-probs */
  logprobs: boolean;
  /** some row is a beam row (its candidates go to the host) */
  candidates: boolean;
}

export interface StepOutput {
  n: number;
  /** the token drawn for each SAMPLE row */
  ids: Int32Array;
  /** 1 for a row whose logits held a NaN or +Infinity (its token means nothing), else 0 */
  status: Int32Array;
  /** [n, LOGPROB_STRIDE], f32 bits for log-probs */
  logprobs: Int32Array | null;
  /** [n, MAX_CANDIDATES] */
  candValues: Float32Array | null;
  candIds: Int32Array | null;
  /** prefill passes with scored rows: [scores, LOGPROB_STRIDE], as `logprobs` */
  promptLogprobs?: Int32Array;
}

/** Decode batch sizes that get their own graph; a batch runs in the smallest bucket that holds it. */
export function buckets(maxBatch: number): number[] {
  const out: number[] = [];
  for (let b = 1; b < maxBatch; b = b < 8 ? b * 2 : b + (b >= 64 ? 32 : b >= 16 ? 16 : 8)) out.push(b);
  out.push(maxBatch);
  return out;
}

interface Rows {
  ids: Tensor;
  positions: Tensor;
  slots: Tensor;
  keyLens: Tensor;
  /** PassInputs.lengths: in a decode step, keyLens itself */
  lengths: Tensor;
}

export class CausalRuntime {
  readonly nullSlot: number;
  readonly maxBlocks: number;
  readonly capacity: number;
  private readonly pool: Tensor;
  private readonly caches: { k: Tensor; v: Tensor }[] = [];
  readonly tables: SequenceTables;
  private readonly blockTables: Tensor;
  private readonly prefillRows: Rows;
  private readonly segments: Tensor;
  private readonly gather: { src: Tensor; dst: Tensor; headSlots: Tensor; headLengths: Tensor; headIds: Tensor; headStatus: Tensor };
  private readonly decodeRows: Rows;
  private readonly decodeStatus: Tensor;
  /**
   * [2, maxBatch] i32 each: a pass's drawn ids (row 0: gather.headIds, decodeRows.ids) and the rows' status
   * from selectCandidates (row 1), so that one copy brings both back.
   */
  private readonly headOut: Tensor;
  private readonly decodeOut: Tensor;
  private readonly logits: Tensor;
  private readonly scores: Tensor;
  private readonly candidates: Candidates;
  private readonly lpScratch: Candidates;
  private readonly lpOut: Tensor;
  /** prompt log-probs: rows of the chunk scored, their slots, targets and lengths ([capacity] i32), and the results */
  private readonly score: { src: Tensor; slots: Tensor; targets: Tensor; lengths: Tensor; out: Tensor };
  private readonly passes: PlannedPasses;
  private readonly buckets: number[];
  private readonly segmentHost: Int32Array;
  /** a pipeline stage's micro-batches' segments (prefillParts) */
  private readonly partSegmentHost: Int32Array;
  /** 0, 1, 2, ...: the rows a prefill pass's heads are gathered into */
  private readonly identity: Int32Array;
  private readonly keyLenHost: Int32Array;
  private readonly lengthHost: Int32Array;
  private readonly padded: { ids: Int32Array; positions: Int32Array; slots: Int32Array; keyLens: Int32Array };
  private readonly prefillIO: PassInputs;
  private readonly decodeIO: PassInputs;
  /** (source, destination) block pairs of a copy-on-write */
  private readonly pairs: Tensor;
  private decodeN = 0;
  private disposed = false;
  /** an encoder-decoder model's memory (its encoder runs through it); null for a decoder-only model */
  readonly encoderMemory: EncoderMemory | null = null;
  /** changes to the tables, applied as the next pass starts */
  private readonly writes: TableWrites;

  constructor(readonly model: CausalLM, readonly backend: Backend, readonly limits: RuntimeLimits) {
    const b = backend;
    const { maxBatch, maxSeqLen, prefillChunk, kvBlocks, blockSize } = limits;
    const L = cacheLayers(model), W = model.cacheWidth, V = model.info.vocabSize, act = b.activationDtype;
    const slots = maxBatch + 1;
    this.nullSlot = maxBatch;
    this.maxBlocks = Math.ceil(maxSeqLen / blockSize);
    this.capacity = Math.max(prefillChunk, maxBatch);
    this.buckets = buckets(maxBatch);
    this.pool = b.buffer([2 * L, kvBlocks, blockSize, W], act);
    const plane = kvBlocks * blockSize * W * dtypeBytes(act);
    for (let l = 0; l < L; l++) {
      this.caches.push({
        k: b.view(this.pool, 2 * l * plane, [kvBlocks, blockSize, W], act),
        v: b.view(this.pool, (2 * l + 1) * plane, [kvBlocks, blockSize, W], act),
      });
    }
    this.blockTables = b.buffer([slots, this.maxBlocks], 'i32');
    this.writes = new TableWrites(b);
    this.tables = { requests: b.buffer([slots, REQUEST_STRIDE], 'i32'), history: b.buffer([slots, maxSeqLen], 'i32'), topP: b.buffer([slots], 'f32') };
    const T = this.capacity;
    this.prefillRows = {
      ids: b.buffer([T], 'i32'), positions: b.buffer([T], 'i32'), slots: b.buffer([T], 'i32'), keyLens: b.buffer([T], 'i32'), lengths: b.buffer([T], 'i32'),
    };
    this.segments = b.buffer([T, 3], 'i32');
    this.headOut = b.buffer([2, maxBatch], 'i32');
    this.decodeOut = b.buffer([2, maxBatch], 'i32');
    const half = (t: Tensor, i: number) => b.view(t, i * maxBatch * 4, [maxBatch], 'i32');
    this.gather = {
      src: b.buffer([maxBatch], 'i32'), dst: b.buffer([maxBatch], 'i32'), headSlots: b.buffer([maxBatch], 'i32'),
      headLengths: b.buffer([maxBatch], 'i32'), headIds: half(this.headOut, 0), headStatus: half(this.headOut, 1),
    };
    const decodeKeyLens = b.buffer([maxBatch], 'i32');
    this.decodeRows = {
      ids: half(this.decodeOut, 0), positions: b.buffer([maxBatch], 'i32'), slots: b.buffer([maxBatch], 'i32'), keyLens: decodeKeyLens, lengths: decodeKeyLens,
    };
    this.decodeStatus = half(this.decodeOut, 1);
    // logits and scores stay fp32 for sampling, whatever the compute dtype; the host may read them after a pass
    this.logits = b.buffer([maxBatch, V], 'f32');
    this.scores = b.buffer([maxBatch, V], 'f32');
    const cands = (): Candidates => ({
      values: b.buffer([maxBatch, MAX_CANDIDATES], 'f32'), ids: b.buffer([maxBatch, MAX_CANDIDATES], 'i32'),
      scratch: b.buffer([maxBatch, CANDIDATE_SCRATCH], 'i32'),
    });
    this.candidates = cands();
    this.lpScratch = cands();
    this.lpOut = b.buffer([maxBatch, LOGPROB_STRIDE], 'i32');
    this.score = {
      src: b.buffer([T], 'i32'), slots: b.buffer([T], 'i32'), targets: b.buffer([T], 'i32'), lengths: b.buffer([T], 'i32'),
      out: b.buffer([T, LOGPROB_STRIDE], 'i32'),
    };
    this.segmentHost = new Int32Array(3 * T);
    this.partSegmentHost = new Int32Array(3 * T);
    this.identity = Int32Array.from({ length: maxBatch }, (_, i) => i);
    this.keyLenHost = new Int32Array(T);
    this.lengthHost = new Int32Array(T);
    this.padded = { ids: new Int32Array(maxBatch), positions: new Int32Array(maxBatch), slots: new Int32Array(maxBatch), keyLens: new Int32Array(maxBatch) };

    const s2s = model.seq2seq;
    if (s2s) {
      const maxSourceLen = limits.maxSourceLen ?? s2s.maxSourcePositions;
      const blocks = limits.memoryBlocks ?? maxBatch * Math.ceil(maxSourceLen / blockSize) + 1;
      this.encoderMemory = new EncoderMemory(s2s, b, { maxSourceLen, blocks, blockSize, slots }, L, this.writes);
    }
    // plan the activations over every kind of pass the runtime runs
    const planSegments: Segments = { table: this.segments, count: 1, longest: T };
    const variants: { body: (p: Pass) => void; segments: Segments | null }[] = [];
    for (const process of [false, true]) {
      for (const logprobs of [false, true]) {
        const flags = { process, logprobs, candidates: process };
        variants.push({ body: (p) => this.prefillBody(p, maxBatch, flags, 0), segments: planSegments });
        // two groups of scored rows keep the hidden rows alive across a group's logits, as every group but the last needs
        variants.push({ body: (p) => this.prefillBody(p, maxBatch, flags, Math.min(2 * maxBatch, T)), segments: planSegments });
        variants.push({ body: (p) => this.decodeBody(p, flags), segments: null });
      }
    }
    this.prefillIO = this.inputs(this.prefillRows);
    this.decodeIO = this.inputs(this.decodeRows);
    this.passes = new PlannedPasses(b, planPasses(b, this.prefillIO, variants));
    this.pairs = b.buffer([maxBatch, 2], 'i32');
  }

  private inputs(rows: Rows): PassInputs {
    return {
      capacity: this.capacity, ids: rows.ids, positions: rows.positions, slots: rows.slots, keyLens: rows.keyLens, lengths: rows.lengths, typeIds: null,
      blockTables: this.blockTables, cache: (l) => this.caches[l], memory: this.encoderMemory?.inputs ?? null,
    };
  }

  // ---- per-sequence tables (changes queued in `writes`, applied as the next pass starts) ----

  setRequest(slot: number, request: Int32Array, topP: number): void {
    this.writes.put(this.tables.requests, slot, 0, request);
    this.writes.put(this.tables.topP, slot, 0, new Int32Array(new Float32Array([topP]).buffer));
  }

  /** The sequence's tokens from position `from` on, as the logits processors see its history. */
  setHistory(slot: number, tokens: ArrayLike<number>, from = 0): void {
    const n = Math.min(tokens.length, this.limits.maxSeqLen) - from;
    this.writes.put(this.tables.history, slot, from, tokens, from, n);
  }

  /** Entries `from` .. of the sequence's block table. */
  setBlocks(slot: number, blocks: ArrayLike<number>, from = 0): void {
    this.writes.put(this.blockTables, slot, from, blocks, from);
  }

  /** Copies whole blocks (every layer's K and V): pairs of (source, destination). */
  copyBlocks(pairs: number[]): void {
    const most = this.pairs.shape[0];
    for (let i = 0; i < pairs.length; i += 2 * most) {
      const part = Int32Array.from(pairs.slice(i, i + 2 * most));
      this.backend.writeInt(this.pairs, part, part.length);
      this.backend.copyBlocks(this.pool, this.pairs, part.length / 2);
    }
  }

  /** bytes of one block of the KV pool, every layer's K and V */
  get blockBytes(): number {
    return tensorBytes([this.pool]) / this.limits.kvBlocks;
  }

  /** The cache of `blocks` (every layer's K and V), as host bytes: a preempted sequence swapped out. */
  saveBlocks(blocks: readonly number[]): Uint8Array {
    return this.backend.readBlocks(this.pool, blocks);
  }

  /** Puts what saveBlocks returned into `blocks` (as many, any of them). */
  restoreBlocks(blocks: readonly number[], data: Uint8Array): void {
    this.backend.writeBlocks(this.pool, blocks, data);
  }

  // ---- passes ----

  private sampling(p: Pass, rows: SampleRows, ids: Tensor, status: Tensor, m: number, flags: StepFlags): void {
    const b = p.ops, seqs = this.tables;
    const scores = flags.process ? this.scores : this.logits;
    if (flags.process) b.processLogits(this.scores, this.logits, rows, seqs, m);
    b.selectCandidates(this.candidates, scores, rows, seqs, m, status);
    b.sample(ids, scores, this.candidates, rows, seqs, m);
    if (flags.logprobs) b.logprobs(this.lpOut, this.logits, ids, rows, seqs, m, this.lpScratch);
  }

  /**
   * `parts`: the chunk's rows in micro-batches, a pipeline stage's (prefillParts), whose forwards run one after another
   * so that the stage works on the next while the stage after it takes the one before; each writes its rows of the
   * same residual stream, which lives through the whole forward (the arena shares no bytes with it).
   */
  private prefillBody(p: Pass, heads: number, flags: StepFlags, scores: number, parts: PromptPart[] | null = null): void {
    const x = parts ? parts.map((r) => this.model.forward(stepRows(this.backend, p, r.first, r.n, r.segments)))[0] : this.model.forward(p);
    const M = this.limits.maxBatch;
    const last = p.buffer('last', [M, this.model.info.hidden]);
    const g = this.gather;
    if (heads > 0) {
      p.ops.gatherRows(last, x, g.src, g.dst, heads);
      this.model.logits(p, last, this.logits, heads);
      this.sampling(p, { slots: g.headSlots, lengths: g.headLengths }, g.headIds, g.headStatus, heads, flags);
    }
    // scored prompt rows, maxBatch at a time through the logits buffer
    const s = this.score, b = this.backend;
    for (let first = 0; first < scores; first += M) {
      const k = Math.min(M, scores - first);
      const at = (t: Tensor, width: number) => b.view(t, first * width * 4, [k, width], 'i32');
      p.ops.gatherRows(last, x, at(s.src, 1), g.dst, k);
      this.model.logits(p, last, this.logits, k);
      p.ops.logprobs(at(s.out, LOGPROB_STRIDE), this.logits, at(s.targets, 1), { slots: at(s.slots, 1), lengths: at(s.lengths, 1) }, this.tables, k, this.lpScratch);
    }
  }

  private decodeBody(p: Pass, flags: StepFlags): void {
    this.decodeLogits(p);
    const r = this.decodeRows;
    const rows = { slots: r.slots, lengths: r.keyLens };
    this.sampling(p, rows, r.ids, this.decodeStatus, p.n, flags);
    p.ops.advance(r.positions, r.keyLens, rows, this.tables, p.n);
  }

  /**
   * The model's forward and logits over a decode step's rows. A pipeline stage runs them in micro-batches of rows, every
   * micro-batch's forward before any one's logits, so that it works on the next micro-batch while the stage after it
   * takes the one before. While planning (the ops are the recorder's) they run as one: each micro-batch's ops then
   * run in the recorded order, over other rows of the same buffers.
   */
  private decodeLogits(p: Pass): void {
    const pp = this.backend.pipeline, b = this.backend;
    const parts = pp && p.ops === b ? Math.min(p.n, pp.stages) : 1;
    if (parts === 1) return this.model.logits(p, this.model.forward(p), this.logits, p.n);
    const rows = microBatches(p.n, parts);
    const steps = rows.map((r) => stepRows(b, p, r.first, r.n));
    const xs = steps.map((s) => this.model.forward(s));
    steps.forEach((s, i) => this.model.logits(s, xs[i], rowsFrom(b, this.logits, rows[i].first), s.n));
  }

  /**
   * A pipeline stage's micro-batches of a prefill chunk of n rows in `count` segments (segmentHost): as many parts as
   * stages, each with its segments, written to the device in place of the chunk's; null off a pipeline.
   */
  private prefillParts(n: number, count: number): PromptPart[] | null {
    const pp = this.backend.pipeline, b = this.backend;
    if (!pp || n < 2) return null;
    const out: PromptPart[] = [];
    let at = 0;
    for (const { first, n: rows } of microBatches(n, Math.min(n, pp.stages))) {
      const s = segmentsOf(this.segmentHost, count, first, first + rows, this.partSegmentHost, at);
      out.push({ first, n: rows, segments: { table: b.view(this.segments, 12 * at, [s.count, 3], 'i32'), ...s } });
      at += s.count;
    }
    b.writeInt(this.segments, this.partSegmentHost, 3 * at);
    return out;
  }

  /** Runs a prefill chunk; returns the tokens drawn for its head rows. */
  prefill(c: PrefillChunk, flags: StepFlags): StepOutput {
    const b = this.backend, r = this.prefillRows, g = this.gather;
    this.writes.flush();
    for (let i = 0; i < c.n; i++) this.keyLenHost[i] = c.positions[i] + 1;
    b.writeInt(r.ids, c.ids, c.n);
    b.writeInt(r.positions, c.positions, c.n);
    b.writeInt(r.slots, c.slots, c.n);
    b.writeInt(r.keyLens, this.keyLenHost, c.n);
    const seg = packSegments(c.slots, c.n, this.segmentHost);
    b.writeInt(this.segments, this.segmentHost, 3 * seg.count);
    for (let s = 0; s < seg.count; s++) {
      const first = this.segmentHost[3 * s], end = first + this.segmentHost[3 * s + 1];
      this.lengthHost.fill(this.keyLenHost[end - 1], first, end);
    }
    b.writeInt(r.lengths, this.lengthHost, c.n);
    b.writeInt(g.src, c.headRows, c.heads);
    b.writeInt(g.dst, this.identity, Math.max(c.heads, Math.min(c.scores, this.limits.maxBatch)));
    b.writeInt(g.headSlots, c.headSlots, c.heads);
    b.writeInt(g.headLengths, c.headLengths, c.heads);
    const s = this.score;
    if (c.scores > 0) {
      b.writeInt(s.src, c.scoreRows, c.scores);
      b.writeInt(s.slots, c.scoreSlots, c.scores);
      b.writeInt(s.targets, c.scoreTargets, c.scores);
      for (let i = 0; i < c.scores; i++) this.lengthHost[i] = this.keyLenHost[c.scoreRows[i]];
      b.writeInt(s.lengths, this.lengthHost, c.scores);
    }
    const parts = this.prefillParts(c.n, seg.count);
    this.prefillBody(this.passes.pass(this.prefillIO, c.n, { table: this.segments, ...seg }), c.heads, flags, c.scores, parts);
    const out = this.read(this.headOut, c.heads, flags);
    if (c.scores > 0) out.promptLogprobs = b.readInt(s.out, c.scores * LOGPROB_STRIDE).slice();
    return out;
  }

  /** Uploads the decode rows (when the running batch changed since the last step). */
  setDecodeRows(rows: DecodeRows): void {
    const bucket = this.bucketOf(rows.n);
    const p = this.padded;
    for (let i = 0; i < bucket; i++) {
      const real = i < rows.n;
      p.ids[i] = real ? rows.ids[i] : 0;
      p.positions[i] = real ? rows.positions[i] : 0;
      p.keyLens[i] = p.positions[i] + 1;
      p.slots[i] = real ? rows.slots[i] : this.nullSlot;
    }
    const r = this.decodeRows, b = this.backend;
    b.writeInt(r.ids, p.ids, bucket);
    b.writeInt(r.positions, p.positions, bucket);
    b.writeInt(r.keyLens, p.keyLens, bucket);
    b.writeInt(r.slots, p.slots, bucket);
    this.decodeN = rows.n;
  }

  private bucketOf(n: number): number {
    const bucket = this.buckets.find((x) => x >= n);
    if (bucket === undefined) throw new Error(`internal: ${n} decode rows beyond max batch ${this.limits.maxBatch}`);
    return bucket;
  }

  /**
   * One decode step for the rows last set: every row's next token (device-side for SAMPLE rows). The step
   * is replayed from the graph of its batch-size bucket; `eager` runs it op by op (profiling).
   */
  decode(flags: StepFlags, eager = false): StepOutput {
    this.decodeLaunch(flags, eager);
    return this.decodeRead(flags);
  }

  /** Starts a decode step (the device continues from its own decode state); decodeRead waits for its tokens. */
  decodeLaunch(flags: StepFlags, eager = false): void {
    this.writes.flush();
    const bucket = this.bucketOf(this.decodeN);
    const body = () => this.decodeBody(this.passes.pass(this.decodeIO, bucket, null), flags);
    if (eager) body();
    else this.backend.graph(this.graphKey(this.decodeN, flags), body);
  }

  /** The tokens (and what the flags ask for) of the last decode step launched. */
  decodeRead(flags: StepFlags): StepOutput {
    return this.read(this.decodeOut, this.decodeN, flags);
  }

  /** The graph a decode step of n rows with these flags replays. */
  graphKey(n: number, flags: StepFlags): string {
    return `decode:${this.bucketOf(n)}:${flags.process ? 'p' : ''}${flags.logprobs ? 'l' : ''}`;
  }

  /** The first n ids and statuses of `out` (headOut or decodeOut) in one read, and what the flags ask for. */
  private read(out: Tensor, n: number, flags: StepFlags): StepOutput {
    const b = this.backend, M = this.limits.maxBatch;
    const both = b.readInt(out, M + n);
    return {
      n,
      ids: both.slice(0, n),
      status: both.slice(M, M + n),
      logprobs: flags.logprobs ? b.readInt(this.lpOut, n * LOGPROB_STRIDE).slice() : null,
      candValues: flags.candidates ? b.readFloat(this.candidates.values, n * MAX_CANDIDATES).slice() : null,
      candIds: flags.candidates ? b.readInt(this.candidates.ids, n * MAX_CANDIDATES).slice() : null,
    };
  }

  /** The raw logits of the rows of the last pass (tests and perplexity). */
  readLogits(n: number): Float32Array {
    return this.backend.readFloat(this.logits, n * this.model.info.vocabSize).slice();
  }

  /** What the runtime holds: weights, the KV pool, logits, tables and the activation arena, and its limits. */
  memory(): MemoryReport {
    const { maxBatch, maxSeqLen, kvBlocks, blockSize, prefillChunk } = this.limits;
    return {
      regions: [
        { name: 'weights', bytes: tensorBytes(this.model.weights()) },
        { name: 'kv-cache', bytes: tensorBytes([this.pool]) },
        { name: 'logits', bytes: tensorBytes([this.logits, this.scores]) },
        { name: 'tables', bytes: tensorBytes(this.tableTensors()) },
        { name: 'activations', bytes: this.passes.arena.plan.bytes },
        ...(this.encoderMemory?.regions() ?? []),
      ],
      buffers: this.passes.arena.plan.buffers,
      capacity: { maxBatch, maxSeqLen, prefillChunk, kvBlocks, blockSize, kvTokens: (kvBlocks - 1) * blockSize },
    };
  }

  /** The tables, row inputs and step outputs the runtime allocated (each once, views left out). */
  private tableTensors(): Tensor[] {
    const c = this.candidates, l = this.lpScratch, t = this.tables, g = this.gather, d = this.decodeRows;
    return [this.blockTables, t.requests, t.history, t.topP, c.values, c.ids, c.scratch, l.values, l.ids, l.scratch, this.lpOut, this.segments,
      this.pairs, this.writes.staging, ...Object.values(this.prefillRows), g.src, g.dst, g.headSlots, g.headLengths, this.headOut, d.positions, d.slots, d.keyLens, this.decodeOut];
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const b = this.backend;
    b.invalidateGraphs();
    this.passes.free();
    this.encoderMemory?.free();
    for (const t of [this.pool, this.logits, this.scores, ...this.tableTensors()]) b.free(t);
  }
}
