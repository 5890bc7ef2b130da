// The CPU backend's collective for tensor parallelism: the ranks of a group are threads of one process (worker
// threads, or the main thread and workers), sharing one SharedArrayBuffer. allReduce sums a vector over the ranks
// in rank order, so that every rank gets the same bits: each rank keeps a replica of the residual stream, and the
// tensor-parallel model needs the replicas to stay identical. Ranks wait on each other
// with Atomics.wait; a rank that stops (the thread that started the group calls abort) or a wait past the timeout
// ends every waiting rank's call with an error that names the rank, within the wait.
import { fail } from '../../errors.js';

/** Int32 words at the start of the buffer: the barrier's generation and arrivals, and 1 + the rank that stopped (0: none). */
const GENERATION = 0, ARRIVED = 1, STOPPED = 2, HEADER_BYTES = 16;

/** What a rank needs to join a group (it crosses to a worker thread in workerData). */
export interface GroupHandle {
  buffer: SharedArrayBuffer;
  size: number;
  /** floats each rank's slot holds: allReduce moves longer vectors in pieces of this many */
  capacity: number;
}

/** A group of `size` ranks whose slots hold `capacity` floats each. */
export function createGroup(size: number, capacity = 1 << 16): GroupHandle {
  if (!Number.isSafeInteger(size) || size < 1) fail('bad-argument', `a tensor-parallel group needs a whole number of ranks >= 1, got ${size}`);
  if (!Number.isSafeInteger(capacity) || capacity < 1) fail('bad-argument', `a group's slots need a whole number of floats >= 1, got ${capacity}`);
  return { buffer: new SharedArrayBuffer(HEADER_BYTES + 4 * size * capacity), size, capacity };
}

/** Marks the group failed because `rank` stopped, and wakes every rank waiting in it. */
export function abortGroup(handle: GroupHandle, rank: number): void {
  const h = new Int32Array(handle.buffer, 0, HEADER_BYTES / 4);
  Atomics.compareExchange(h, STOPPED, 0, rank + 1);
  Atomics.add(h, GENERATION, 1);
  Atomics.notify(h, GENERATION);
}

export class ThreadGroup {
  readonly size: number;
  private readonly header: Int32Array;
  private readonly slots: Float32Array[];

  /** Rank `rank` of the group; a wait longer than `timeoutMs` for the other ranks is an error. */
  constructor(handle: GroupHandle, readonly rank: number, private readonly timeoutMs = 60_000) {
    if (!Number.isSafeInteger(rank) || rank < 0 || rank >= handle.size) fail('bad-argument', `rank ${rank} is not one of the group's ${handle.size} ranks`);
    this.size = handle.size;
    this.header = new Int32Array(handle.buffer, 0, HEADER_BYTES / 4);
    this.slots = Array.from({ length: handle.size }, (_, r) => new Float32Array(handle.buffer, HEADER_BYTES + 4 * r * handle.capacity, handle.capacity));
  }

  /** data := the sum over the ranks of their `data` (the same length on every rank), added in rank order. */
  allReduce(data: Float32Array): void {
    if (this.size === 1) return;
    const cap = this.slots[0].length;
    for (let at = 0; at < data.length; at += cap) {
      const part = data.subarray(at, Math.min(data.length, at + cap));
      this.slots[this.rank].set(part);
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
   * out := every rank's `part` side by side: row t of out is row t of rank 0's part, then rank 1's, and so on (a
   * vocabulary-parallel LM head's logits). `part` is rows x cols on every rank, out rows x (size * cols).
   */
  allGather(part: Float32Array, out: Float32Array, cols: number): void {
    const width = this.size * cols, cap = this.slots[0].length;
    for (let at = 0; at < part.length; at += cap) {
      const len = Math.min(part.length, at + cap) - at;
      this.slots[this.rank].set(part.subarray(at, at + len));
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

  /** Returns once every rank has called it as often as this one. */
  barrier(): void {
    const h = this.header;
    this.check();
    const generation = Atomics.load(h, GENERATION);
    if (Atomics.add(h, ARRIVED, 1) === this.size - 1) {
      Atomics.store(h, ARRIVED, 0);
      Atomics.add(h, GENERATION, 1);
      Atomics.notify(h, GENERATION);
      return;
    }
    const deadline = Date.now() + this.timeoutMs;
    while (Atomics.load(h, GENERATION) === generation) {
      const left = deadline - Date.now();
      if (left <= 0 || Atomics.wait(h, GENERATION, generation, left) === 'timed-out') {
        fail('device', `rank ${this.rank} of the tensor-parallel group waited ${this.timeoutMs / 1000} s for the other ranks; `
          + 'one of them is stuck or gone, so the job ends');
      }
    }
    this.check();
  }

  private check(): void {
    const stopped = Atomics.load(this.header, STOPPED);
    if (stopped) fail('device', `rank ${stopped - 1} of the tensor-parallel group stopped, so rank ${this.rank}'s job ends too`);
  }
}
