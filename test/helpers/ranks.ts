// One worker thread per rank of a ThreadGroup, for the tests of tensor parallelism: each posts one message with its
// result; a worker that exits without one aborts the group, as the thread that starts a group's workers must.
import { Worker } from 'node:worker_threads';
import { abortGroup, type GroupHandle } from '../../src/backends/cpu/thread-group.js';

/** Each rank's message, or its exit code where it posted none. */
export function runRanks<T>(worker: URL, handle: GroupHandle, workerData: object[]): Promise<(T | { exit: number })[]> {
  return Promise.all(workerData.map((data, rank) => new Promise<T | { exit: number }>((resolve) => {
    const w = new Worker(worker, { workerData: { ...data, handle, rank } });
    let got: T | null = null;
    w.on('message', (m: T) => (got = m));
    w.on('exit', (code) => {
      if (!got) abortGroup(handle, rank);
      resolve(got ?? { exit: code });
    });
  })));
}
