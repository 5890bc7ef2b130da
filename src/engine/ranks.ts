// Tensor and pipeline parallelism driven from one thread: `loadGenerator(model, { device: 'cpu', tensorParallel: t,
// pipelineParallel: s })` makes this thread rank 0 and starts t * s - 1 worker threads (rank-worker.ts), each loading
// its part of the same model (its stage's layers, its slice of each). Rank 0's scheduler drives everything: each call
// it makes on its runtime that changes state or runs a pass is posted to every other rank before rank 0 runs it, and
// each rank runs the same call on its own runtime, so the ranks run the same passes in the same order and meet at each
// all-reduce and each hand-over between stages whatever requests arrive, and when. A rank that fails stops the group,
// which ends the others' passes with an error naming it (src/backends/cpu/thread-group.ts).
import { Worker } from 'node:worker_threads';
import { abortGroup, createGroup, type GroupHandle } from '../backends/cpu/thread-group.js';
import { fail } from '../errors.js';
import type { CausalRuntime } from '../runtime/causal.js';
import type { LoadOptions } from './load.js';

/** The runtime calls a rank mirrors (everything the scheduler calls that writes state or runs a pass). */
export const MIRRORED = ['setRequest', 'setHistory', 'setBlocks', 'copyBlocks', 'saveBlocks', 'restoreBlocks', 'prefill', 'setDecodeRows',
  'decodeLaunch', 'decodeRead', 'dispose'] as const;
export type Mirrored = (typeof MIRRORED)[number];

/**
 * A call as it crosses to the other ranks. Each rank keeps the bytes of its own swapped-out blocks: a restore names
 * the save it restores by its number, and a save whose bytes rank 0 dropped unrestored (a request cancelled while
 * swapped out) is forgotten.
 */
export type RankCall = { method: Mirrored; args: unknown[] } | { method: 'restoreSaved'; blocks: readonly number[]; save: number }
  | { method: 'forgetSaved'; save: number };

/** What a worker rank is given (workerData). */
export interface RankStart {
  model: string;
  options: Omit<LoadOptions, 'notice' | 'tensorParallel' | 'pipelineParallel'>;
  handle: GroupHandle;
  rank: number;
}

export class Ranks {
  readonly handle: GroupHandle;
  private readonly workers: Worker[];
  /** resolves once every worker rank has loaded; rejects with the first one's failure */
  readonly ready: Promise<void>;
  private failure: string | null = null;
  private saves = 0;
  private readonly saved = new WeakMap<Uint8Array, number>();
  /** rank 0's saved bytes, collected: the other ranks drop theirs (after a restore they hold none already) */
  private readonly collected = new FinalizationRegistry<number>((save) => this.post({ method: 'forgetSaved', save }));

  /**
   * Starts ranks 1 .. tensor * stages - 1 on `model` (a local directory or .gguf file) with `options`: `stages`
   * pipeline stages of `tensor` ranks.
   */
  constructor(model: string, options: LoadOptions, tensor: number, stages: number) {
    const size = tensor * stages;
    this.handle = createGroup(size, undefined, tensor);
    const { notice: _notice, tensorParallel: _tp, pipelineParallel: _pp, ...plain } = options;
    const loaded: Promise<void>[] = [];
    this.workers = Array.from({ length: size - 1 }, (_, i) => {
      const rank = i + 1;
      const start: RankStart = { model, options: plain, handle: this.handle, rank };
      const w = new Worker(new URL('./rank-worker.js', import.meta.url), { workerData: start });
      loaded.push(new Promise<void>((resolve, reject) => {
        w.on('message', (m: { ready?: boolean; error?: string }) => {
          if (m.ready) resolve();
          if (m.error !== undefined) this.stopped(rank, m.error, reject);
        });
        w.on('error', (err) => this.stopped(rank, err.message, reject));
        w.on('exit', (code) => this.stopped(rank, `exited with code ${code}`, reject));
      }));
      return w;
    });
    // once loaded, the ranks only wait for calls from this thread: they no longer keep the process alive on their own
    this.ready = Promise.all(loaded).then(() => {
      for (const w of this.workers) w.unref();
    });
    this.ready.catch(() => {});
  }

  private stopped(rank: number, why: string, reject: (err: Error) => void): void {
    this.failure ??= `rank ${rank} of the parallel group: ${why}`;
    abortGroup(this.handle, rank);
    reject(new Error(this.failure));
  }

  /** The first worker rank's failure, if one failed. */
  get error(): string | null {
    return this.failure;
  }

  /** `rt`, whose state-changing calls are posted to the other ranks before it runs them; a failure stops the group. */
  mirror(rt: CausalRuntime): CausalRuntime {
    // the methods the scheduler reaches through the proxy, made once: mirrored calls, and the runtime's own others
    const methods = new Map<string | symbol, unknown>(MIRRORED.map((m) => [m, (...args: unknown[]) => this.call(rt, m, args)]));
    return new Proxy(rt, {
      get: (target, prop, receiver) => {
        const value = Reflect.get(target, prop, receiver);
        if (typeof value !== 'function') return value;
        if (!methods.has(prop)) methods.set(prop, value.bind(target));
        return methods.get(prop);
      },
    });
  }

  private call(rt: CausalRuntime, method: Mirrored, args: unknown[]): unknown {
    if (method === 'restoreBlocks') {
      const save = this.saved.get(args[1] as Uint8Array);
      if (save === undefined) throw new Error('internal: restoring blocks no saveBlocks of this group returned');
      this.post({ method: 'restoreSaved', blocks: args[0] as readonly number[], save });
    } else {
      this.post({ method, args });
    }
    try {
      const out = (rt[method] as (...a: unknown[]) => unknown).apply(rt, args);
      if (method === 'saveBlocks') {
        this.saved.set(out as Uint8Array, this.saves);
        this.collected.register(out as Uint8Array, this.saves++);
      }
      if (method === 'dispose') for (const w of this.workers) void w.terminate();
      return out;
    } catch (err) {
      abortGroup(this.handle, 0);
      if (this.failure) fail('device', this.failure);
      throw err;
    }
  }

  private post(c: RankCall): void {
    for (const w of this.workers) w.postMessage(c);
  }

  /** Stops the group and ends the worker ranks (this rank's load failed). */
  stop(): void {
    abortGroup(this.handle, 0);
    for (const w of this.workers) void w.terminate();
  }
}
