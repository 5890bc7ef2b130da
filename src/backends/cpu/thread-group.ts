// The CPU backend's collectives for tensor and pipeline parallelism: the ranks of a group are threads of one process
// (worker threads, or the main thread and workers), sharing one SharedArrayBuffer. A group of `size` ranks runs
// size / tensor pipeline stages of `tensor` ranks each: rank g is tensor rank g % tensor of stage floor(g / tensor).
// allReduce sums a vector over the ranks of a stage in rank order, so that every rank gets the same bits: each rank
// keeps a replica of the residual stream, and the tensor-parallel model needs the replicas to stay identical. send and
// recv move rows between the ranks of two stages that share a tensor rank, through a channel per (from, to) pair that
// holds one piece at a time. Ranks wait on each other with Atomics.wait; a rank that stops (the thread that started
// the group calls abort) or a wait past the timeout ends every waiting rank's call with an error that names the rank,
// within the wait.
import { fail } from '../../errors.js';
import { abortNet, isNetHandle, type NetHandle } from './net-group.js';

/** Int32 words at the start of the buffer: 1 + the rank that stopped (0: none), then per stage its barrier's generation and arrivals. */
const STOPPED = 0;
const generationWord = (stage: number) => 1 + 2 * stage;
const arrivedWord = (stage: number) => 2 + 2 * stage;

/** What a rank needs to join a group (it crosses to a worker thread in workerData). */
export interface GroupHandle {
  buffer: SharedArrayBuffer;
  /** ranks in the group */
  size: number;
  /** ranks per pipeline stage (the tensor-parallel size); size / tensor stages */
  tensor: number;
  /** floats each rank's slot (and each channel) holds: longer vectors move in pieces of this many */
  capacity: number;
}

/** The buffer's layout: header words, then each rank's collective slot, then one channel per (from stage, to stage, tensor rank). */
function layout(h: { size: number; tensor: number; capacity: number }) {
  const stages = h.size / h.tensor, channels = stages > 1 ? h.tensor * stages * stages : 0;
  // header: STOPPED, two words per stage, then a full flag per channel; padded to 16 bytes
  const headerWords = Math.ceil((1 + 2 * stages + channels) / 4) * 4;
  const slots = headerWords * 4, channelData = slots + 4 * h.size * h.capacity;
  return { stages, channels, headerWords, flagWord: 1 + 2 * stages, slots, channelData, bytes: channelData + 4 * channels * h.capacity };
}

/**
 * A group of `size` ranks whose slots hold `capacity` floats each, in pipeline stages of `tensor` ranks (default: one
 * stage of all of them).
 */
export function createGroup(size: number, capacity = 1 << 16, tensor = size): GroupHandle {
  if (!Number.isSafeInteger(size) || size < 1) fail('bad-argument', `a parallel group needs a whole number of ranks >= 1, got ${size}`);
  if (!Number.isSafeInteger(capacity) || capacity < 1) fail('bad-argument', `a group's slots need a whole number of floats >= 1, got ${capacity}`);
  if (!Number.isSafeInteger(tensor) || tensor < 1 || size % tensor !== 0) {
    fail('bad-argument', `a group of ${size} ranks splits into pipeline stages of a whole number of ranks that divides ${size}, got ${tensor}`);
  }
  return { buffer: new SharedArrayBuffer(layout({ size, tensor, capacity }).bytes), size, tensor, capacity };
}

/** What the backend asks of the group its rank is in: ThreadGroup, or NetGroup (net-group.ts) where the ranks span processes. */
export type RankGroup = Pick<ThreadGroup, 'size' | 'tensorRank' | 'stage' | 'stages' | 'allReduce' | 'allGather' | 'send' | 'recv'> & {
  /** lets go of what the rank holds outside the heap (NetGroup: its channel to the bridge) */
  close?(): void;
};

/**
 * Marks the group failed because `rank` stopped, and wakes every rank waiting in it. `why` reaches the other ranks of
 * a group that spans processes; a group of threads names the rank only (the thread that started it knows why).
 */
export function abortGroup(handle: GroupHandle | NetHandle, rank: number, why = 'it stopped'): void {
  if (isNetHandle(handle)) {
    abortNet(handle, rank, why);
    return;
  }
  const l = layout(handle);
  const h = new Int32Array(handle.buffer, 0, l.headerWords);
  Atomics.compareExchange(h, STOPPED, 0, rank + 1);
  for (let s = 0; s < l.stages; s++) {
    Atomics.add(h, generationWord(s), 1);
    Atomics.notify(h, generationWord(s));
  }
  for (let c = 0; c < l.channels; c++) Atomics.notify(h, l.flagWord + c);
}

export class ThreadGroup {
  /** ranks of this rank's stage: those its allReduce and allGather span */
  readonly size: number;
  /** this rank's place in its stage */
  readonly tensorRank: number;
  readonly stage: number;
  readonly stages: number;
  private readonly header: Int32Array;
  /** the slots of this stage's ranks, in tensor-rank order */
  private readonly slots: Float32Array[];
  private readonly capacity: number;
  /** this rank's channels by the other stage: its header word (1: a piece waits) and its piece */
  private readonly sendTo: { flag: number; buf: Float32Array }[];
  private readonly recvFrom: { flag: number; buf: Float32Array }[];

  /** Rank `rank` of the group; a wait longer than `timeoutMs` for the other ranks is an error. */
  constructor(handle: GroupHandle, readonly rank: number, private readonly timeoutMs = 60_000) {
    if (!Number.isSafeInteger(rank) || rank < 0 || rank >= handle.size) fail('bad-argument', `rank ${rank} is not one of the group's ${handle.size} ranks`);
    const l = layout(handle);
    this.size = handle.tensor;
    this.tensorRank = rank % handle.tensor;
    this.stage = Math.floor(rank / handle.tensor);
    this.stages = l.stages;
    this.capacity = handle.capacity;
    this.header = new Int32Array(handle.buffer, 0, l.headerWords);
    const channel = (from: number, to: number) => {
      const c = (this.tensorRank * l.stages + from) * l.stages + to;
      return { flag: l.flagWord + c, buf: new Float32Array(handle.buffer, l.channelData + 4 * c * handle.capacity, handle.capacity) };
    };
    // one stage has no channels (nor bytes for them)
    const stages = l.channels > 0 ? Array.from({ length: l.stages }, (_, s) => s) : [];
    this.sendTo = stages.map((s) => channel(this.stage, s));
    this.recvFrom = stages.map((s) => channel(s, this.stage));
    const first = this.stage * handle.tensor;
    this.slots = Array.from({ length: handle.tensor }, (_, r) => new Float32Array(handle.buffer, l.slots + 4 * (first + r) * handle.capacity, handle.capacity));
  }

  /** data := the sum over the stage's ranks of their `data` (the same length on every rank), added in rank order. */
  allReduce(data: Float32Array): void {
    if (this.size === 1) return;
    const cap = this.capacity;
    for (let at = 0; at < data.length; at += cap) {
      const part = data.subarray(at, Math.min(data.length, at + cap));
      this.slots[this.tensorRank].set(part);
      this.barrier();
      part.set(this.slots[0].subarray(0, part.length));
      for (let r = 1; r < this.size; r++) {
        const s = this.slots[r];
        for (let i = 0; i < part.length; i++) part[i] += s[i];
      }
      // nobody writes its slot again before every rank has read them all
      this.barrier();
    }
  }

  /**
   * out := every stage rank's `part` side by side: row t of out is row t of rank 0's part, then rank 1's, and so on (a
   * vocabulary-parallel LM head's logits). `part` is rows x cols on every rank, out rows x (size * cols).
   */
  allGather(part: Float32Array, out: Float32Array, cols: number): void {
    const width = this.size * cols, cap = this.capacity;
    for (let at = 0; at < part.length; at += cap) {
      const len = Math.min(part.length, at + cap) - at;
      this.slots[this.tensorRank].set(part.subarray(at, at + len));
      this.barrier();
      // each rank's piece, one row's run of columns at a time
      for (let r = 0; r < this.size; r++) {
        for (let i = 0; i < len;) {
          const row = Math.floor((at + i) / cols), col = at + i - row * cols, run = Math.min(cols - col, len - i);
          out.set(this.slots[r].subarray(i, i + run), row * width + r * cols + col);
          i += run;
        }
      }
      this.barrier();
    }
  }

  /**
   * `data` to the rank of stage `stage` with this rank's tensor rank, which takes it with recv(…, this stage) in the
   * order sent. Returns once the last piece is in the channel (the receiver may not have taken it yet).
   */
  send(data: Float32Array, stage: number): void {
    const { flag, buf } = this.channel(this.sendTo, stage);
    for (let at = 0; at < data.length; at += this.capacity) {
      this.waitFor(flag, 0, `stage ${stage} to take rows`);
      const part = data.subarray(at, Math.min(data.length, at + this.capacity));
      buf.set(part);
      Atomics.store(this.header, flag, 1);
      Atomics.notify(this.header, flag);
    }
  }

  /** out := what the rank of stage `stage` with this rank's tensor rank sent to this one, next in order (as long). */
  recv(out: Float32Array, stage: number): void {
    const { flag, buf } = this.channel(this.recvFrom, stage);
    for (let at = 0; at < out.length; at += this.capacity) {
      this.waitFor(flag, 1, `rows from stage ${stage}`);
      const part = out.subarray(at, Math.min(out.length, at + this.capacity));
      part.set(buf.subarray(0, part.length));
      Atomics.store(this.header, flag, 0);
      Atomics.notify(this.header, flag);
    }
  }

  private channel(channels: { flag: number; buf: Float32Array }[], stage: number): { flag: number; buf: Float32Array } {
    if (stage === this.stage || !(stage >= 0 && stage < this.stages)) throw new Error(`internal: no channel between stage ${this.stage} and stage ${stage} of ${this.stages}`);
    return channels[stage];
  }

  /** Returns once header word `word` is `want`. */
  private waitFor(word: number, want: number, what: string): void {
    const h = this.header, deadline = Date.now() + this.timeoutMs;
    for (;;) {
      this.check();
      const now = Atomics.load(h, word);
      if (now === want) return;
      const left = deadline - Date.now();
      if (left <= 0 || Atomics.wait(h, word, now, left) === 'timed-out') this.timedOut(what);
    }
  }

  /** Returns once every rank of this stage has called it as often as this one. */
  barrier(): void {
    const h = this.header, gen = generationWord(this.stage), arrived = arrivedWord(this.stage);
    this.check();
    const generation = Atomics.load(h, gen);
    if (Atomics.add(h, arrived, 1) === this.size - 1) {
      Atomics.store(h, arrived, 0);
      Atomics.add(h, gen, 1);
      Atomics.notify(h, gen);
      return;
    }
    const deadline = Date.now() + this.timeoutMs;
    while (Atomics.load(h, gen) === generation) {
      const left = deadline - Date.now();
      if (left <= 0 || Atomics.wait(h, gen, generation, left) === 'timed-out') this.timedOut('the other ranks');
    }
    this.check();
  }

  private timedOut(what: string): never {
    fail('device', `rank ${this.rank} of the parallel group waited ${this.timeoutMs / 1000} s for ${what}; one of them is stuck or gone, so the job ends`);
  }

  private check(): void {
    const stopped = Atomics.load(this.header, STOPPED);
    if (stopped) fail('device', `rank ${stopped - 1} of the parallel group stopped, so rank ${this.rank}'s job ends too`);
  }
}
