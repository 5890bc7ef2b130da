// peregrine generate --tensor-parallel N (CPU backend): this thread is rank 0 and prints; N - 1 worker threads
// (rank-worker.ts) are the other ranks. Each loads its slice of the model and runs the same prompts with the same
// options, so every rank runs the same passes in the same order and meets the others at each all-reduce. A rank that
// fails or exits stops the group (abortGroup), so the others end with an error naming it instead of waiting.
import { Worker } from 'node:worker_threads';
import { abortGroup, createGroup } from '../backends/cpu/thread-group.js';
import type { LoadOptions } from '../engine/load.js';
import type { GenerateOptions } from '../engine/options.js';
import { fail, PeregrineError } from '../errors.js';
import { runGenerate } from './generate.js';

/** What every rank is given: the same model, load options (less callbacks), prompts and generation options. */
export interface RankJob {
  model: string;
  load: Omit<LoadOptions, 'notice' | 'tensorParallel'>;
  prompts: string[];
  opts: GenerateOptions;
  json: boolean;
}

export async function generateTensorParallel(size: number, job: RankJob, notice: (message: string) => void): Promise<void> {
  if ((job.load.device ?? 'auto') !== 'cpu') {
    fail('bad-argument', `--tensor-parallel runs on the CPU backend only for now (its ranks are threads); add --device cpu (got --device ${job.load.device ?? 'auto'})`);
  }
  const { loadGenerator } = await import('../engine/load.js');
  const handle = createGroup(size);
  // the first worker failure: its message, or its exit
  let failure: string | null = null;
  const ranks = Array.from({ length: size - 1 }, (_, i) => new Promise<void>((resolve) => {
    const rank = i + 1;
    const w = new Worker(new URL('./rank-worker.js', import.meta.url), { workerData: { ...job, handle, rank } });
    let done = false;
    w.on('message', (m: { error?: string }) => {
      done = true;
      if (m.error !== undefined) {
        failure ??= `rank ${rank}: ${m.error}`;
        abortGroup(handle, rank);
      }
    });
    w.on('error', (err) => {
      failure ??= `rank ${rank}: ${err.message}`;
      abortGroup(handle, rank);
    });
    w.on('exit', (code) => {
      if (!done) {
        failure ??= `rank ${rank} exited with code ${code}`;
        abortGroup(handle, rank);
      }
      resolve();
    });
  }));
  try {
    const gen = await loadGenerator(job.model, { ...job.load, notice, tensorParallel: { group: handle, rank: 0 } });
    try {
      await runGenerate(gen, job.prompts, job.opts, job.json);
    } finally {
      gen.dispose();
    }
  } catch (err) {
    abortGroup(handle, 0);
    await Promise.all(ranks);
    // where another rank stopped first, its failure is the cause of this one's
    if (failure !== null && err instanceof PeregrineError && /of the tensor-parallel group (stopped|waited)/.test(err.message)) fail('device', failure);
    throw err;
  }
  await Promise.all(ranks);
  if (failure !== null) fail('device', failure);
}
