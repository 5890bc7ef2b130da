// The shape of a parallel group over several processes (LoadOptions.nodes), checked by name: kept apart from
// nodes.ts so that a load without nodes imports nothing of the group's machinery.
import { fail } from '../../errors.js';
import type { LoadOptions } from '../load.js';

export interface NodesOption {
  /** processes in the group, each holding (tensor x pipeline) / count ranks */
  count: number;
  /** this process's place: 0 is the leader, which loads the generator; the others run runNode */
  rank: number;
  /** where the leader listens (default 127.0.0.1) */
  masterAddr?: string;
  /** the leader's port (default 29500) */
  masterPort?: number;
  /** seconds the leader waits for every node to connect, and a node for the leader (default 120) */
  joinTimeout?: number;
}

/** The group's shape: ranks in all, in stages of `tensor`, `local` of them in each process. */
export function nodeShape(options: LoadOptions): { tensor: number; stages: number; size: number; local: number; nodes: NodesOption } {
  const nodes = options.nodes!, tensor = typeof options.tensorParallel === 'number' ? options.tensorParallel : 1, stages = options.pipelineParallel ?? 1;
  const size = tensor * stages;
  if (!(Number.isSafeInteger(nodes.count) && nodes.count >= 1)) fail('bad-argument', `nodes must be a whole number >= 1, got ${nodes.count}`);
  if (!(Number.isSafeInteger(nodes.rank) && nodes.rank >= 0 && nodes.rank < nodes.count)) fail('bad-argument', `node rank must be one of 0 to ${nodes.count - 1} (--nodes ${nodes.count}), got ${nodes.rank}`);
  const port = nodes.masterPort ?? 29500;
  if (!(Number.isSafeInteger(port) && port >= 1 && port <= 65535)) fail('bad-argument', `master port must be a whole number from 1 to 65535, got ${port}`);
  if (nodes.joinTimeout !== undefined && !(nodes.joinTimeout > 0)) fail('bad-argument', `join timeout must be a number of seconds > 0, got ${nodes.joinTimeout}`);
  if (typeof options.tensorParallel === 'object') fail('bad-argument', 'nodes with a { group, rank } rank: give tensorParallel as a number; each node starts its own ranks');
  if (size % nodes.count !== 0) fail('bad-argument', `${size} ranks (tensor parallel ${tensor} x pipeline parallel ${stages}) do not split evenly over ${nodes.count} nodes`);
  return { tensor, stages, size, local: size / nodes.count, nodes };
}
