// Tensor and pipeline parallelism driven from one thread: `loadGenerator(model, { device: 'cpu', tensorParallel: t,
// pipelineParallel: s })` makes this thread rank 0 and starts t * s - 1 worker threads (rank-worker.ts), each loading
// its part of the same model (its stage's layers, its slice of each). Rank 0's scheduler drives everything: each call
// it makes on its runtime that changes state or runs a pass is posted to every other rank before rank 0 runs it, and
// each rank runs the same call on its own runtime, so the ranks run the same passes in the same order and meet at each
// all-reduce and each hand-over between stages whatever requests arrive, and when. A rank that fails stops the group,
// which ends the others' passes with an error naming it (src/backends/cpu/thread-group.ts).
//
// With options.nodes the group spans processes (net/nodes.ts): this process holds ranks 0 .. local - 1, its bridge
// thread (net/bridge.ts) lets the other nodes join and carries the calls to them and their rows, and a stop anywhere
// (a rank that fails, a process that ends) reaches every rank through it.
import { Worker } from 'node:worker_threads';
import { createNetHandle, type NetHandle } from '../backends/cpu/net-group.js';
import { abortGroup, createGroup, type GroupHandle } from '../backends/cpu/thread-group.js';
import { fail } from '../errors.js';
import type { CausalRuntime } from '../runtime/causal.js';
import type { LoadOptions } from './load.js';
import type { BridgeNews } from './net/bridge.js';
import { rankOptions, startBridge } from './net/nodes.js';
import { nodeShape } from './net/shape.js';

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
  options: Omit<LoadOptions, 'notice' | 'tensorParallel' | 'pipelineParallel' | 'nodes'>;
  handle: GroupHandle | NetHandle;
  rank: number;
}

export class Ranks {
  readonly handle: GroupHandle | NetHandle;
  private readonly workers: Worker[];
  /** the thread that carries calls and rows to the other nodes, when there are other nodes */
  private bridge: Worker | null = null;
  /** resolves once every worker rank has loaded; rejects with the first one's failure */
  readonly ready: Promise<void>;
  private failure: string | null = null;
  /** set as the model's dispose is posted: a worker rank that exits from then on is ending, not failing */
  private disposing = false;
  private saves = 0;
  private readonly saved = new WeakMap<Uint8Array, number>();
  /** rank 0's saved bytes, collected: the other ranks drop theirs (after a restore they hold none already) */
  private readonly collected = new FinalizationRegistry<number>((save) => this.post({ method: 'forgetSaved', save }));

  /**
   * Starts ranks 1 .. tensor * stages - 1 on `model` (a local directory or .gguf file) with `options`: `stages`
   * pipeline stages of `tensor` ranks.
   */
  constructor(model: string, options: LoadOptions, tensor: number, stages: number) {
    const size = tensor * stages, local = options.nodes ? nodeShape(options).local : size;
    this.handle = options.nodes ? createNetHandle(size, tensor, 0, local) : createGroup(size, undefined, tensor);
    const plain = rankOptions(options);
    const loaded: Promise<void>[] = [];
    if (options.nodes) loaded.push(this.lead(startBridge(model, this.handle as NetHandle, options, tensor, stages), options));
    this.workers = Array.from({ length: local - 1 }, (_, i) => {
      const rank = i + 1;
      const start: RankStart = { model, options: plain, handle: this.handle, rank };
      const w = new Worker(new URL('./rank-worker.js', import.meta.url), { workerData: start });
      loaded.push(new Promise<void>((resolve, reject) => {
        w.on('message', (m: { ready?: boolean; error?: string }) => {
          if (m.ready) resolve();
          if (m.error !== undefined) this.stopped(rank, `rank ${rank} of the parallel group: ${m.error}`, reject);
        });
        w.on('error', (err) => this.stopped(rank, `rank ${rank} of the parallel group: ${err.message}`, reject));
        w.on('exit', (code) => {
          if (!this.disposing) this.stopped(rank, `rank ${rank} of the parallel group: exited with code ${code}`, reject);
        });
      }));
      return w;
    });
    // once loaded, the ranks only wait for calls from this thread: they no longer keep the process alive on their own
    this.ready = Promise.all(loaded).then(() => {
      for (const w of this.workers) w.unref();
      this.bridge?.unref();
    });
    this.ready.catch(() => {});
  }

  /** Resolves once every other node's ranks have loaded; a stop or failure the bridge reports stops this group. */
  private lead(bridge: Worker, options: LoadOptions): Promise<void> {
    this.bridge = bridge;
    const { count } = options.nodes!;
    return new Promise<void>((resolve, reject) => {
      const ready = new Set<number>();
      bridge.on('message', (m: BridgeNews) => {
        if ('joined' in m) options.notice?.(`node ${m.joined} of ${count} joined`);
        if ('ready' in m && ready.add(m.ready).size === count - 1) resolve();
        if ('stopped' in m) this.stopped(m.stopped.rank, `rank ${m.stopped.rank} of the parallel group stopped: ${m.stopped.why}`, reject);
        if ('fatal' in m) this.stopped(0, m.fatal, reject);
      });
      bridge.on('error', (err) => this.stopped(0, `the bridge to the other nodes failed: ${err.message}`, reject));
    });
  }

  /** The group stops because of `rank`, for the reason `message` gives (the first such message is the group's error). */
  private stopped(rank: number, message: string, reject: (err: Error) => void): void {
    this.failure ??= message;
    abortGroup(this.handle, rank, message);
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
    // a rank that exits after the dispose (its own, or the terminate below) must not stop the other nodes before
    // the bridge says bye: they would report it as the group's failure
    if (method === 'dispose') this.disposing = true;
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
      if (method === 'dispose') {
        for (const w of this.workers) void w.terminate();
        // the process waits for the bridge to say bye to the other nodes, which then end
        this.bridge?.ref();
        this.bridge?.postMessage({ bye: true });
      }
      return out;
    } catch (err) {
      abortGroup(this.handle, 0, (err as Error).message);
      if (this.failure) fail('device', this.failure);
      throw err;
    }
  }

  private post(c: RankCall): void {
    for (const w of this.workers) w.postMessage(c);
    this.bridge?.postMessage({ call: { t: 'call', call: c } });
  }

  /** Stops the group and ends the worker ranks (this rank's load failed); the bridge tells the other nodes, then ends. */
  stop(why = 'the leader\'s load failed'): void {
    abortGroup(this.handle, 0, why);
    for (const w of this.workers) void w.terminate();
    this.bridge?.unref();
  }
}
