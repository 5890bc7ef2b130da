// A parallel group over several processes, possibly on several hosts, bootstrapped as torchrun does: every process runs
// the same command with its own --node-rank; node 0 (the leader) listens on --master-addr:--master-port, loads the
// generator and drives the group (engine/ranks.ts); each other node connects to it, loads its share of the ranks as
// worker threads, and runs the calls the leader sends until the leader disposes its model (runNode).
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { abortGroup } from '../../backends/cpu/thread-group.js';
import { createNetHandle, netStopped, type NetHandle } from '../../backends/cpu/net-group.js';
import { fail, PeregrineError } from '../../errors.js';
import type { LoadOptions } from '../load.js';
import type { RankStart } from '../ranks.js';
import type { BridgeNews, BridgeStart } from './bridge.js';
import { nodeShape } from './shape.js';
import type { Agreement } from './wire.js';

export type { NodesOption } from './shape.js';

/** The load options the processes of a group must share: those that shape each rank's model and runtime. */
const AGREED = ['device', 'dtype', 'quantize', 'maxBatch', 'maxSeqLen', 'prefillChunk', 'kvBlocks', 'blockSize', 'batchInvariant', 'revision'] as const;

/** The model at `path` (a directory or a .gguf file) as the nodes compare it: config.json's SHA-256, or the file's size. */
function modelIdentity(path: string): string {
  if (statSync(path).isFile()) return `a GGUF file of ${statSync(path).size} bytes`;
  return `config.json ${createHash('sha256').update(readFileSync(join(path, 'config.json'))).digest('hex').slice(0, 16)}`;
}

export function agreement(path: string, options: LoadOptions, tensor: number, stages: number): Agreement {
  const o = options as Record<string, unknown>;
  return {
    nodes: options.nodes!.count, tensor, stages, model: modelIdentity(path),
    options: JSON.stringify(Object.fromEntries(AGREED.filter((k) => o[k] !== undefined).map((k) => [k, o[k]]))),
  };
}

/** This process's bridge thread (net/bridge.ts), for `handle`'s ranks of the model at `path`. */
export function startBridge(path: string, handle: NetHandle, options: LoadOptions, tensor: number, stages: number): Worker {
  const nodes = options.nodes!;
  const start: BridgeStart = {
    handle, node: nodes.rank, nodes: nodes.count, host: nodes.masterAddr ?? '127.0.0.1', port: nodes.masterPort ?? 29500,
    agreement: agreement(path, options, tensor, stages), joinTimeoutMs: 1000 * (nodes.joinTimeout ?? 120),
  };
  return new Worker(new URL('./bridge.js', import.meta.url), { workerData: start });
}

/** The options a worker rank loads with: this process's, less what only the starting thread uses. */
export function rankOptions(options: LoadOptions): RankStart['options'] {
  const { notice: _notice, tensorParallel: _tp, pipelineParallel: _pp, nodes: _nodes, ...plain } = options;
  return plain;
}

/**
 * Node `options.nodes.rank` (>= 1) of a group led by another process: joins the leader, loads this node's ranks of
 * `model` (a local directory or .gguf file, the same model as the leader's) and runs the leader's calls on them.
 * Resolves once the leader disposes its model; rejects, naming the rank, when the group stops.
 */
export async function runNode(model: string, options: LoadOptions): Promise<void> {
  const { tensor, stages, size, local, nodes } = nodeShape(options);
  if (nodes.rank === 0) fail('bad-argument', 'node rank 0 is the leader: load the generator there (loadGenerator with nodes), not runNode');
  if ((options.device ?? 'auto') !== 'cpu') fail('unsupported-config', `a group over several nodes runs on the CPU backend only for now (device cpu, got ${options.device ?? 'auto'}); on GPUs it needs NCCL, which Peregrine does not drive yet`);
  const { modelPath } = await import('../load.js');
  const path = await modelPath(model, options);
  const handle = createNetHandle(size, tensor, nodes.rank * local, local);
  const bridge = startBridge(path, handle, options, tensor, stages);
  const workers: Worker[] = [];
  let failure: string | null = null, byeSaid = false, disposing = false, ready = 0;
  return new Promise<void>((resolve, reject) => {
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      for (const w of workers) void w.terminate();
      void bridge.terminate();
      if (failure) reject(new PeregrineError('device', failure));
      else resolve();
    };
    /** why the group stopped, whichever of its news comes first: the rank that stopped it and its reason */
    const groupStop = () => {
      const s = netStopped(handle);
      return s && `rank ${s.rank} of the parallel group stopped: ${s.why}`;
    };
    // a stop that begins here ends this node once the bridge has told the other nodes (its 'stopped' news), or after 2 s
    let reported = false;
    const stopped = (why: string) => {
      failure ??= why;
      abortGroup(handle, handle.first, why);
      if (reported) end();
      else setTimeout(end, 2000).unref();
    };
    bridge.on('message', (m: BridgeNews) => {
      if ('welcome' in m) {
        options.notice?.(`node ${nodes.rank} of ${nodes.count} joined the leader; loading ranks ${handle.first} to ${handle.first + local - 1}`);
        for (let i = 0; i < local; i++) {
          const start: RankStart = { model: path, options: { ...rankOptions(options), offline: true }, handle, rank: handle.first + i };
          const w = new Worker(new URL('../rank-worker.js', import.meta.url), { workerData: start });
          // a rank that fails stops the group with its error (rank-worker.ts), which the group's stop then reports
          w.on('message', (r: { ready?: boolean }) => {
            if (r.ready && ++ready === local) bridge.postMessage({ ready: true });
          });
          w.on('error', (err) => stopped(groupStop() ?? `rank ${start.rank} of the parallel group (node ${nodes.rank}): ${err.message}`));
          w.on('exit', (code) => {
            workers.splice(workers.indexOf(w), 1);
            if (!disposing) stopped(groupStop() ?? `rank ${start.rank} of the parallel group (node ${nodes.rank}) exited with code ${code}`);
            else if (byeSaid && workers.length === 0) end();
          });
          workers.push(w);
        }
      }
      if ('call' in m) {
        if (m.call.call.method === 'dispose') disposing = true;
        for (const w of workers) w.postMessage(m.call.call);
      }
      if ('bye' in m) {
        byeSaid = true;
        if (workers.length === 0) end();
      }
      if ('stopped' in m) {
        reported = true;
        stopped(groupStop()!);
      }
      if ('fatal' in m) {
        failure ??= m.fatal;
        end();
      }
    });
    bridge.on('error', (err) => stopped(`node ${nodes.rank}'s bridge: ${err.message}`));
  });
}
