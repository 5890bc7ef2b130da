// A rank of a ThreadGroup in a worker thread (test/thread-group.test.ts): sums its vector with the others' and posts
// the result, or its error's message; with `cols`, it also gathers its vector as rows of `cols` beside the others';
// with `stop`, it ends without joining (a rank that dies).
import { parentPort, workerData } from 'node:worker_threads';
import { ThreadGroup, type GroupHandle } from '../../src/backends/cpu/thread-group.js';

const { handle, rank, data, stop, rounds, timeoutMs, cols } = workerData as {
  handle: GroupHandle; rank: number; data: Float32Array; stop: boolean; rounds: number; timeoutMs?: number; cols?: number;
};
if (stop) process.exit(3);
try {
  const group = new ThreadGroup(handle, rank, timeoutMs);
  const out = data.slice();
  for (let i = 0; i < rounds; i++) {
    out.set(data);
    group.allReduce(out);
  }
  const gathered = cols ? new Float32Array(data.length * handle.size) : undefined;
  if (gathered) group.allGather(data, gathered, cols!);
  parentPort!.postMessage({ sum: out, gathered });
} catch (err) {
  parentPort!.postMessage({ error: (err as Error).message });
}
