// Inputs of the sampling ops (kernels/sampling.cu, src/backends/cpu/sampling.ts) for their tests and their
// micro-benchmark: request rows as the runtime writes them, logit rows of awkward styles, token histories, and the
// tensors of one call on one backend.
import type { CpuBackend } from '../../src/backends/cpu/backend.js';
import type { CudaBackend } from '../../src/backends/cuda/backend.js';
import type { Backend, Candidates, SampleRows, SequenceTables, Tensor } from '../../src/ops/backend.js';
import { CANDIDATE_SCRATCH, LOGPROB_STRIDE, MAX_CANDIDATES, MODE, REQ, REQUEST_STRIDE } from '../../src/ops/requests.js';
import { get } from './helpers.js';

// ---- request rows ----

export interface Request {
  mode: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  decay?: number;
  topPMin?: number;
  seed?: number;
  stream?: number;
  repetition?: number;
  presence?: number;
  frequency?: number;
  promptLen?: number;
  minNew?: number;
  eos?: number[];
  resets?: number[];
  badWords?: number[][];
  logprobs?: number;
  candidates?: number;
  noRepeatNgram?: number;
  forcedBos?: number;
  forcedEos?: number;
  maxNew?: number;
  /** force the PROCESS flag (default: set when a processor applies) */
  process?: number;
}

/** The request table of `reqs` (slot s = reqs[s]; undefined: an unused slot, all zero). */
export function requestTable(reqs: (Request | undefined)[]): Int32Array {
  const t = new Int32Array(reqs.length * REQUEST_STRIDE), f = new Float32Array(t.buffer);
  reqs.forEach((q, s) => {
    if (!q) return;
    const o = s * REQUEST_STRIDE;
    t[o + REQ.MODE] = q.mode;
    f[o + REQ.TEMPERATURE] = q.temperature ?? 1;
    t[o + REQ.TOP_K] = q.topK ?? 0;
    f[o + REQ.TOP_P] = q.topP ?? 1;
    f[o + REQ.MIN_P] = q.minP ?? 0;
    f[o + REQ.TOP_P_DECAY] = q.decay ?? 1;
    f[o + REQ.TOP_P_MIN] = q.topPMin ?? 0;
    t[o + REQ.SEED] = q.seed ?? 12345 + s;
    t[o + REQ.STREAM] = q.stream ?? s;
    f[o + REQ.REPETITION] = q.repetition ?? 1;
    f[o + REQ.PRESENCE] = q.presence ?? 0;
    f[o + REQ.FREQUENCY] = q.frequency ?? 0;
    t[o + REQ.PROMPT_LEN] = q.promptLen ?? 0;
    t[o + REQ.MIN_NEW] = q.minNew ?? 0;
    const eos = q.eos ?? [], resets = q.resets ?? [], bad = (q.badWords ?? []).flatMap((w) => [w.length, ...w]);
    t[o + REQ.EOS_COUNT] = eos.length;
    t[o + REQ.RESET_COUNT] = resets.length;
    t[o + REQ.BAD_INTS] = bad.length;
    t.set([...eos, ...resets, ...bad], o + REQ.LIST);
    t[o + REQ.LOGPROBS] = q.logprobs ?? -1;
    t[o + REQ.CANDIDATES] = q.candidates ?? 0;
    t[o + REQ.NO_REPEAT_NGRAM] = q.noRepeatNgram ?? 0;
    t[o + REQ.FORCED_BOS] = q.forcedBos ?? -1;
    t[o + REQ.FORCED_EOS] = q.forcedEos ?? -1;
    t[o + REQ.MAX_NEW] = q.maxNew ?? 0;
    const processes = (q.repetition ?? 1) !== 1 || (q.presence ?? 0) !== 0 || (q.frequency ?? 0) !== 0 || bad.length > 0 || (q.minNew ?? 0) > 0 ||
      (q.noRepeatNgram ?? 0) > 0 || (q.forcedBos ?? -1) >= 0 || (q.forcedEos ?? -1) >= 0;
    t[o + REQ.PROCESS] = q.process ?? (processes ? 1 : 0);
  });
  return t;
}

/** A padding row whose other fields ask for everything: MODE NONE must win. */
export const JUNK: Request = { mode: MODE.NONE, temperature: 0.5, topK: 5, repetition: 1.5, logprobs: 5, candidates: 8, badWords: [[1]], minNew: 9, eos: [0], process: 1 };

// ---- logits ----

export type Style = 'random' | 'ties' | 'periodic' | 'flat' | 'neginf' | 'sparse' | 'peaked' | 'allneginf';

export function logitRow(style: Style, V: number, rand: () => number): Float32Array {
  const x = new Float32Array(V);
  for (let i = 0; i < V; i++) {
    switch (style) {
      case 'random': x[i] = (rand() * 2 - 1) * 4; break;
      case 'ties': x[i] = Math.round(rand() * 6) / 2 - 1; break; // 7 values: ties everywhere
      case 'periodic': x[i] = ((i * 37) % 256) / 64 - 2; break; // the same value every 256 ids: defeats the top-k filter
      case 'flat': x[i] = 0.5; break;
      case 'neginf': x[i] = rand() < 0.3 ? -Infinity : (rand() * 2 - 1) * 3; break;
      case 'sparse': x[i] = -Infinity; break;
      case 'peaked': x[i] = (rand() * 2 - 1) * 2 + (rand() < 0.002 ? 9 : 0); break;
      case 'allneginf': x[i] = -Infinity; break;
    }
  }
  if (style === 'sparse') for (let j = 0; j < 12; j++) x[Math.floor(rand() * V)] = (rand() * 2 - 1) * 3;
  return x;
}

export function logitRows(styles: Style[], V: number, rand: () => number): Float32Array {
  const x = new Float32Array(styles.length * V);
  styles.forEach((s, r) => x.set(logitRow(s, V, rand), r * V));
  return x;
}

// ---- tensors of one call, on one backend ----

export interface Setup {
  V: number;
  logits: Float32Array;
  slots: number[];
  lengths: number[];
  reqs: (Request | undefined)[];
  maxSeq: number;
  /** [slots * maxSeq] */
  history: Int32Array;
  /** runtime top-p per slot (default: each request's TOP_P) */
  topP?: Float32Array;
}

export const SCORE_SENTINEL = 7.25, VALUE_SENTINEL = -3.5, ID_SENTINEL = -5, OUT_SENTINEL = 0x5eed;

export class Io {
  readonly logits: Tensor;
  readonly scores: Tensor;
  readonly rows: SampleRows;
  readonly seqs: SequenceTables;
  readonly cand: Candidates;
  readonly scratch: Candidates;
  readonly ids: Tensor;
  readonly out: Tensor;
  /** selectCandidates' status per row, and a second one for the radix run */
  readonly status: Tensor;
  readonly status2: Tensor;
  readonly n: number;

  constructor(readonly b: CpuBackend | CudaBackend, s: Setup) {
    const n = (this.n = s.slots.length), V = s.V, nslots = s.reqs.length;
    this.logits = floats(b, s.logits, [n, V]);
    this.scores = floats(b, new Float32Array(n * V).fill(SCORE_SENTINEL), [n, V]);
    this.rows = { slots: ints(b, Int32Array.from(s.slots), [n]), lengths: ints(b, Int32Array.from(s.lengths), [n]) };
    const table = requestTable(s.reqs);
    const topP = s.topP ?? Float32Array.from(s.reqs, (q) => q?.topP ?? 1);
    this.seqs = {
      requests: ints(b, table, [nslots, REQUEST_STRIDE]),
      history: ints(b, s.history, [nslots, s.maxSeq]),
      topP: floats(b, topP, [nslots]),
    };
    const candidates = (): Candidates => ({
      values: floats(b, new Float32Array(n * MAX_CANDIDATES).fill(VALUE_SENTINEL), [n, MAX_CANDIDATES]),
      ids: ints(b, new Int32Array(n * MAX_CANDIDATES).fill(ID_SENTINEL), [n, MAX_CANDIDATES]),
      scratch: b.buffer([n, CANDIDATE_SCRATCH], 'i32'),
    });
    this.cand = candidates();
    this.scratch = candidates();
    this.ids = ints(b, new Int32Array(n).fill(ID_SENTINEL), [n]);
    this.status = ints(b, new Int32Array(n).fill(ID_SENTINEL), [n]);
    this.status2 = ints(b, new Int32Array(n).fill(ID_SENTINEL), [n]);
    this.out = ints(b, new Int32Array(n * LOGPROB_STRIDE).fill(OUT_SENTINEL), [n, LOGPROB_STRIDE]);
  }

  get ops(): Backend {
    return this.b;
  }

  /** Every tensor made for the call (to free them). */
  tensors(): Tensor[] {
    const { rows, seqs, cand, scratch } = this;
    return [this.logits, this.scores, rows.slots, rows.lengths, seqs.requests, seqs.history, seqs.topP, cand.values, cand.ids, cand.scratch,
      scratch.values, scratch.ids, scratch.scratch, this.ids, this.status, this.status2, this.out];
  }

  floats(t: Tensor): Float32Array {
    return get(this.b, t);
  }

  ints(t: Tensor): Int32Array {
    return this.b.readInt(t, t.shape.reduce((a, d) => a * d, 1)).slice();
  }
}

/** An f32 tensor of `shape` holding x, on a backend of any dtype (logits, scores and top-p are f32 everywhere). */
export function floats(b: CpuBackend | CudaBackend, x: Float32Array, shape: number[]): Tensor {
  const t = b.buffer(shape, 'f32');
  b.writeInt(b.view(t, 0, [x.length], 'i32'), new Int32Array(x.buffer, x.byteOffset, x.length), x.length);
  return t;
}

export function ints(b: CpuBackend | CudaBackend, x: Int32Array, shape: number[]): Tensor {
  const t = b.buffer(shape, 'i32');
  b.writeInt(t, x, x.length);
  return t;
}

/** A history of `len` tokens drawn from a few ids (so tokens repeat), as one row of maxSeq. */
export function historyRow(len: number, maxSeq: number, V: number, rand: () => number, pool = 8): Int32Array {
  const ids = Array.from({ length: Math.min(pool, V) }, () => Math.floor(rand() * V));
  const h = new Int32Array(maxSeq);
  for (let i = 0; i < len; i++) h[i] = ids[Math.floor(rand() * ids.length)];
  return h;
}

export function histories(rows: Int32Array[], maxSeq: number): Int32Array {
  const h = new Int32Array(rows.length * maxSeq);
  rows.forEach((r, s) => h.set(r.subarray(0, maxSeq), s * maxSeq));
  return h;
}
