// The other rank of bench/cpu-collectives.ts: a worker thread of a threads-only group (workerData: its handle), or a
// process of a group over TCP (argv: the leader's port, a model directory to agree on, floats, rounds). It runs the
// same all-reduces as rank 0, which times them.
import { workerData } from 'node:worker_threads';
import { createNetHandle, NetGroup } from '../src/backends/cpu/net-group.js';
import { ThreadGroup, type GroupHandle } from '../src/backends/cpu/thread-group.js';
import { startBridge } from '../src/engine/net/nodes.js';

/** the load options both processes agree on (bench/cpu-collectives.ts passes the same) */
const OPTIONS = { device: 'cpu' as const, tensorParallel: 2 };

function rounds(g: { allReduce(d: Float32Array): void }, floats: number, n: number): void {
  const data = new Float32Array(floats);
  for (let i = 0; i < n; i++) g.allReduce(data);
}

if (workerData) {
  const { handle, floats, n } = workerData as { handle: GroupHandle; floats: number; n: number };
  rounds(new ThreadGroup(handle, 1), floats, n);
} else {
  const [port, dir, floats, n] = [Number(process.argv[2]), process.argv[3], Number(process.argv[4]), Number(process.argv[5])];
  const options = { ...OPTIONS, nodes: { count: 2, rank: 1, masterPort: port } };
  const handle = createNetHandle(2, 2, 1, 1);
  const bridge = startBridge(dir, handle, options, 2, 1);
  bridge.on('message', (m: object) => {
    if (!('welcome' in m)) return;
    rounds(new NetGroup(handle, 1), floats, n);
    process.exit(0);
  });
}
