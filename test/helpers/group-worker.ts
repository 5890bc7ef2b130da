// A rank of a ThreadGroup in a worker thread (test/thread-group.test.ts): sums its vector with the others' of its stage
// and posts the result, or its error's message; with `cols`, it also gathers its vector as rows of `cols` beside the
// others'; with `stop`, it ends without joining (a rank that dies). In a group of several stages, each stage then sends
// its sum, and its sum doubled, to the next stage, and the last to the first: each rank posts what it received.
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
  const gathered = cols ? new Float32Array(data.length * group.size) : undefined;
  if (gathered) group.allGather(data, gathered, cols!);
  let received: Float32Array[] | undefined;
  if (group.stages > 1) {
    const next = (group.stage + 1) % group.stages, prev = (group.stage + group.stages - 1) % group.stages;
    received = [new Float32Array(out.length), new Float32Array(out.length)];
    // the first stage sends before it receives, the others the other way round (one piece at a time in a channel)
    const send = () => {
      group.send(out, next);
      group.send(out.map((v) => 2 * v), next);
    };
    if (group.stage === 0) send();
    for (const r of received) group.recv(r, prev);
    if (group.stage !== 0) send();
  }
  parentPort!.postMessage({ sum: out, gathered, received });
} catch (err) {
  parentPort!.postMessage({ error: (err as Error).message });
}
