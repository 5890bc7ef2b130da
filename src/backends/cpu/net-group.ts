// The CPU backend's collectives when a group's ranks are in several processes (--nodes): the same allReduce,
// allGather, send and recv as thread-group.ts, built on two requests a rank makes of its process's bridge thread
// (src/engine/net/bridge.ts), which holds the TCP connections: "send these floats to rank r" (buffered: it returns once
// the bridge has them) and "give me the next floats rank r sent me". A rank and the bridge meet in a SharedArrayBuffer:
// the rank writes its request, tells the bridge on a BroadcastChannel, and waits (Atomics.wait) for the bridge to mark
// it done, so the ops stay synchronous as the backend needs. allReduce adds the stage's parts in rank order, as ThreadGroup does, so that the replicas agree
// bit for bit. The bridge marks the group stopped, with the reason, when a rank anywhere fails or a process's
// connection closes; a waiting rank then ends its call at once with that reason.
import { randomUUID } from 'node:crypto';
import { BroadcastChannel } from 'node:worker_threads';
import { fail } from '../../errors.js';

/** Int32 words of the header: 1 + the rank that stopped (0: none), the claim on writing the reason, its length in bytes. */
export const STOPPED = 0;
const CLAIM = 1, REASON_LENGTH = 2;
/** Per local rank, words at requestBase(i) + these: request number, the number last done, op, peer rank, floats. */
export const REQUEST = 0, DONE = 1, OP = 2, PEER = 3, LENGTH = 4;
export const SEND = 1, RECV = 2;
const REASON_BYTES = 1024;

/** What a rank (or the bridge) needs to join a group whose ranks are in several processes; it crosses to workers in workerData. */
export interface NetHandle {
  kind: 'net';
  /** names the BroadcastChannel on which this process's ranks tell its bridge of a new request or of a stop */
  id: string;
  buffer: SharedArrayBuffer;
  /** ranks in the group, over every process */
  size: number;
  /** ranks per pipeline stage: rank g is tensor rank g % tensor of stage floor(g / tensor) */
  tensor: number;
  /** floats a request moves at most: longer vectors move in pieces */
  capacity: number;
  /** this process's ranks: first .. first + local - 1; process n holds ranks n * local .. */
  first: number;
  local: number;
}

export const requestBase = (i: number) => 4 + 8 * i;

export function netLayout(h: { local: number; capacity: number }) {
  const headerWords = requestBase(h.local), reason = 4 * headerWords, buffers = reason + REASON_BYTES;
  return { headerWords, reason, buffers, bytes: buffers + 4 * h.local * h.capacity };
}

export function isNetHandle(h: object): h is NetHandle {
  return (h as { kind?: string }).kind === 'net';
}

/** This process's part of a group of `size` ranks in stages of `tensor`: the `local` ranks from `first`. */
export function createNetHandle(size: number, tensor: number, first: number, local: number, capacity = 1 << 16): NetHandle {
  if (size % local !== 0 || first % local !== 0 || size % tensor !== 0) throw new Error(`internal: ${local} ranks from ${first} are not a process's share of ${size} in stages of ${tensor}`);
  return { kind: 'net', id: `peregrine-net-${randomUUID()}`, buffer: new SharedArrayBuffer(netLayout({ local, capacity }).bytes), size, tensor, capacity, first, local };
}

/**
 * A thread's end of the channel to the bridge: a message says that local rank i has a new request, or (-1) that the
 * group stopped. (The bridge first waited with Atomics.waitAsync instead: on Node 20, one run in five of the test over
 * three processes lost a wake-up and hung; with messages, 22 runs in a row passed.)
 */
function bridgeChannel(h: NetHandle): BroadcastChannel {
  const c = new BroadcastChannel(h.id);
  (c as unknown as { unref(): void }).unref();
  return c;
}

/** The process's ranks' view of one another's header (the bridge reads requests through it too). */
export function netHeader(h: NetHandle): Int32Array {
  return new Int32Array(h.buffer, 0, netLayout(h).headerWords);
}

/**
 * Marks the group stopped because `rank` stopped, for `why`, and wakes this process's waiting ranks and bridge;
 * false when it was stopped already (the first reason stays). The bridge tells the other processes.
 */
export function abortNet(handle: NetHandle, rank: number, why: string): boolean {
  const h = netHeader(handle);
  if (Atomics.compareExchange(h, CLAIM, 0, 1) !== 0) return false;
  const l = netLayout(handle), bytes = new Uint8Array(handle.buffer, l.reason, REASON_BYTES);
  const { written } = new TextEncoder().encodeInto(why, bytes);
  Atomics.store(h, REASON_LENGTH, written);
  Atomics.store(h, STOPPED, rank + 1);
  for (let i = 0; i < handle.local; i++) Atomics.notify(h, requestBase(i) + DONE);
  const c = bridgeChannel(handle);
  c.postMessage(-1);
  c.close();
  return true;
}

/** Why the group stopped, and which rank stopped it; null while it runs. */
export function netStopped(handle: NetHandle): { rank: number; why: string } | null {
  const h = netHeader(handle), stopped = Atomics.load(h, STOPPED);
  if (!stopped) return null;
  const l = netLayout(handle);
  const why = new TextDecoder().decode(new Uint8Array(handle.buffer, l.reason, Atomics.load(h, REASON_LENGTH)).slice());
  return { rank: stopped - 1, why };
}

export class NetGroup {
  /** ranks of this rank's stage: those its allReduce and allGather span */
  readonly size: number;
  readonly tensorRank: number;
  readonly stage: number;
  readonly stages: number;
  private readonly header: Int32Array;
  private readonly base: number;
  /** where this rank's requests' floats go to and come back from the bridge */
  private readonly buf: Float32Array;
  /** a piece from each rank of the stage, for allReduce and allGather */
  private readonly parts: Float32Array[];
  private readonly bridge: BroadcastChannel;
  private readonly local: number;

  /** Rank `rank` of the group, one of this process's; a wait longer than `timeoutMs` for the bridge is an error. */
  constructor(private readonly handle: NetHandle, readonly rank: number, private readonly timeoutMs = 60_000) {
    const i = rank - handle.first;
    if (!Number.isSafeInteger(rank) || i < 0 || i >= handle.local) fail('bad-argument', `rank ${rank} is not one of this process's ranks (${handle.first} to ${handle.first + handle.local - 1})`);
    this.size = handle.tensor;
    this.tensorRank = rank % handle.tensor;
    this.stage = Math.floor(rank / handle.tensor);
    this.stages = handle.size / handle.tensor;
    this.header = netHeader(handle);
    this.base = requestBase(i);
    this.local = i;
    this.bridge = bridgeChannel(handle);
    this.buf = new Float32Array(handle.buffer, netLayout(handle).buffers + 4 * i * handle.capacity, handle.capacity);
    this.parts = Array.from({ length: this.size }, () => new Float32Array(handle.capacity));
  }

  /** Closes this rank's channel to the bridge (its backend is disposed). */
  close(): void {
    this.bridge.close();
  }

  /** data := the sum over the stage's ranks of their `data`, added in rank order (the same bits on every rank). */
  allReduce(data: Float32Array): void {
    if (this.size === 1) return;
    for (let at = 0; at < data.length; at += this.handle.capacity) {
      const part = data.subarray(at, Math.min(data.length, at + this.handle.capacity));
      this.exchange(part);
      part.set(this.parts[0].subarray(0, part.length));
      for (let r = 1; r < this.size; r++) {
        const s = this.parts[r];
        for (let i = 0; i < part.length; i++) part[i] += s[i];
      }
    }
  }

  /** out := every stage rank's `part` side by side (rows x cols each; out rows x (size * cols)), as ThreadGroup.allGather. */
  allGather(part: Float32Array, out: Float32Array, cols: number): void {
    const width = this.size * cols, cap = this.handle.capacity;
    for (let at = 0; at < part.length; at += cap) {
      const len = Math.min(part.length, at + cap) - at;
      this.exchange(part.subarray(at, at + len));
      for (let r = 0; r < this.size; r++) {
        for (let i = 0; i < len;) {
          const row = Math.floor((at + i) / cols), col = at + i - row * cols, run = Math.min(cols - col, len - i);
          out.set(this.parts[r].subarray(i, i + run), row * width + r * cols + col);
          i += run;
        }
      }
    }
  }

  /** `data` to the rank of stage `stage` with this rank's tensor rank (which takes it with recv, in order sent). */
  send(data: Float32Array, stage: number): void {
    const peer = this.peer(stage);
    for (let at = 0; at < data.length; at += this.handle.capacity) this.request(SEND, peer, data.subarray(at, Math.min(data.length, at + this.handle.capacity)));
  }

  /** out := what the rank of stage `stage` with this rank's tensor rank sent this one, next in order (as long). */
  recv(out: Float32Array, stage: number): void {
    const peer = this.peer(stage);
    for (let at = 0; at < out.length; at += this.handle.capacity) this.request(RECV, peer, out.subarray(at, Math.min(out.length, at + this.handle.capacity)));
  }

  /** parts[r] := `part` of each rank r of the stage (this one's own included), however long `part` is (<= capacity). */
  private exchange(part: Float32Array): void {
    const first = this.stage * this.size;
    // every rank sends before it receives: the bridge keeps what arrives until it is asked for
    for (let r = 0; r < this.size; r++) if (r !== this.tensorRank) this.request(SEND, first + r, part);
    this.parts[this.tensorRank].set(part);
    for (let r = 0; r < this.size; r++) if (r !== this.tensorRank) this.request(RECV, first + r, this.parts[r].subarray(0, part.length));
  }

  private peer(stage: number): number {
    if (stage === this.stage || !(stage >= 0 && stage < this.stages)) throw new Error(`internal: no channel between stage ${this.stage} and stage ${stage} of ${this.stages}`);
    return stage * this.size + this.tensorRank;
  }

  /** One request of the bridge: SEND `data` to rank `peer`, or RECV into `data` the next piece `peer` sent. */
  private request(op: number, peer: number, data: Float32Array): void {
    const h = this.header, b = this.base;
    if (op === SEND) this.buf.set(data);
    h[b + OP] = op;
    h[b + PEER] = peer;
    h[b + LENGTH] = data.length;
    const seq = (Atomics.load(h, b + REQUEST) + 1) | 0;
    Atomics.store(h, b + REQUEST, seq);
    this.bridge.postMessage(this.local);
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      this.check();
      const done = Atomics.load(h, b + DONE);
      if (done === seq) break;
      const left = deadline - Date.now();
      if (left <= 0 || Atomics.wait(h, b + DONE, done, left) === 'timed-out') {
        fail('device', `rank ${this.rank} of the parallel group waited ${this.timeoutMs / 1000} s for ${op === SEND ? 'its bridge to take rows for' : 'rows from'} rank ${peer}; a rank is stuck or gone, so the job ends`);
      }
    }
    if (op === RECV) {
      if (h[b + LENGTH] !== data.length) throw new Error(`internal: rank ${this.rank} asked rank ${peer} for ${data.length} floats and got ${h[b + LENGTH]}`);
      data.set(this.buf.subarray(0, data.length));
    }
  }

  private check(): void {
    const stopped = netStopped(this.handle);
    if (stopped) fail('device', `rank ${stopped.rank} of the parallel group stopped (${stopped.why}), so rank ${this.rank}'s job ends too`);
  }
}
