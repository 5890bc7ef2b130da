// A tensor-parallel rank in a worker thread (test/tensor-parallel.test.ts): loads its slice of a model on the CPU and
// runs the same requests as every other rank, posting the results (or its error's message).
import { parentPort, workerData } from 'node:worker_threads';
import type { GroupHandle } from '../../src/backends/cpu/thread-group.js';
import { loadGenerator } from '../../src/index.js';

const { model, handle, rank, prompts, maxNewTokens } = workerData as { model: string; handle: GroupHandle; rank: number; prompts: number[][]; maxNewTokens: number };
try {
  const gen = await loadGenerator(model, { device: 'cpu', tensorParallel: { group: handle, rank } });
  const out = [];
  for (const p of prompts) {
    const [r] = await gen.generateIds([p], { maxNewTokens, stopAtEos: false, logprobs: true });
    out.push({ ids: r.ids, logprobs: r.logprobs });
  }
  gen.dispose();
  parentPort!.postMessage({ results: out });
} catch (err) {
  parentPort!.postMessage({ error: (err as Error).message });
}
