// A rank of `peregrine generate --tensor-parallel N` (tensor-parallel.ts) in a worker thread: it loads its slice of the
// model and runs the job as rank 0 does, printing nothing; it posts one message, empty or with its error.
import { parentPort, workerData } from 'node:worker_threads';
import type { GroupHandle } from '../backends/cpu/thread-group.js';
import { loadGenerator } from '../engine/load.js';
import { runGenerate } from './generate.js';
import type { RankJob } from './tensor-parallel.js';

const job = workerData as RankJob & { handle: GroupHandle; rank: number };
try {
  const gen = await loadGenerator(job.model, { ...job.load, tensorParallel: { group: job.handle, rank: job.rank } });
  try {
    await runGenerate(gen, job.prompts, job.opts, job.json, () => {});
  } finally {
    gen.dispose();
  }
  parentPort!.postMessage({});
} catch (err) {
  parentPort!.postMessage({ error: (err as Error).message });
}
