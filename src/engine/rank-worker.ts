// A worker rank of a tensor-parallel generator (ranks.ts): loads its slice of the model, says so, then runs each
// runtime call rank 0 posts on its own runtime, in order. It keeps the bytes of its own swapped-out blocks, by the
// number of the save, until they are restored or forgotten. On a failure it stops the group, so that rank 0's pass
// ends with this rank named.
import { parentPort, workerData } from 'node:worker_threads';
import { abortGroup } from '../backends/cpu/thread-group.js';
import { loadGenerator } from './load.js';
import type { RankCall, RankStart } from './ranks.js';

const start = workerData as RankStart;
const port = parentPort!;

function failed(err: unknown): void {
  abortGroup(start.handle, start.rank, (err as Error).message);
  port.postMessage({ error: (err as Error).message });
  port.close();
}

try {
  const gen = await loadGenerator(start.model, { ...start.options, tensorParallel: { group: start.handle, rank: start.rank } });
  const rt = gen.runtime as unknown as Record<string, (...args: unknown[]) => unknown>;
  const saved = new Map<number, Uint8Array>();
  let saves = 0;
  port.on('message', (c: RankCall) => {
    try {
      if (c.method === 'restoreSaved') {
        gen.runtime.restoreBlocks(c.blocks, saved.get(c.save)!);
        saved.delete(c.save);
      } else if (c.method === 'forgetSaved') {
        saved.delete(c.save);
      } else if (c.method === 'saveBlocks') {
        saved.set(saves++, gen.runtime.saveBlocks(c.args[0] as number[]));
      } else if (c.method === 'dispose') {
        gen.dispose();
        port.close();
      } else {
        rt[c.method](...c.args);
      }
    } catch (err) {
      failed(err);
    }
  });
  port.postMessage({ ready: true });
} catch (err) {
  failed(err);
}
