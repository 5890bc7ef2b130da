// A rank of a ThreadGroup in a worker thread (test/thread-group.test.ts): sums its vector with the others' and posts
// the result, or its error's message; with `stop`, it ends without joining (a rank that dies).
import { parentPort, workerData } from 'node:worker_threads';
import { ThreadGroup, type GroupHandle } from '../../src/backends/cpu/thread-group.js';

const { handle, rank, data, stop, rounds, timeoutMs } = workerData as {
  handle: GroupHandle; rank: number; data: Float32Array; stop: boolean; rounds: number; timeoutMs?: number;
};
if (stop) process.exit(3);
try {
  const group = new ThreadGroup(handle, rank, timeoutMs);
  const out = data.slice();
  for (let i = 0; i < rounds; i++) {
    out.set(data);
    group.allReduce(out);
  }
  parentPort!.postMessage({ sum: out });
} catch (err) {
  parentPort!.postMessage({ error: (err as Error).message });
}
