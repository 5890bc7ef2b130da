// The cost of one all-reduce between two CPU ranks: threads of one process (ThreadGroup: shared memory) against two
// processes joined over TCP on localhost (NetGroup: each rank's request goes to its process's bridge thread, over the
// socket, and to the other rank through that process's bridge), the cost a tensor-parallel layer pays twice.
//   npm run bench -- cpu-collectives [--floats 1024,16384] [--rounds 2000]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { createNetHandle, NetGroup } from '../src/backends/cpu/net-group.js';
import { createGroup, ThreadGroup } from '../src/backends/cpu/thread-group.js';
import { startBridge } from '../src/engine/net/nodes.js';
import type { BenchArgs, BenchResult } from './common.js';

const PEER = new URL('./collective-peer.js', import.meta.url);
/** the load options both processes agree on (bench/collective-peer.ts passes the same) */
const OPTIONS = { device: 'cpu' as const, tensorParallel: 2 };
const WARM = 200;

/** Microseconds per all-reduce of `floats` over `rounds` rounds, after WARM more. */
function time(g: { allReduce(d: Float32Array): void }, floats: number, rounds: number): number {
  const data = new Float32Array(floats);
  for (let i = 0; i < WARM; i++) g.allReduce(data);
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) g.allReduce(data);
  return (1000 * (performance.now() - t0)) / rounds;
}

async function threads(floats: number, rounds: number): Promise<number> {
  const handle = createGroup(2);
  const w = new Worker(PEER, { workerData: { handle, floats, n: WARM + rounds } });
  const us = time(new ThreadGroup(handle, 0), floats, rounds);
  await w.terminate();
  return us;
}

async function processes(dir: string, floats: number, rounds: number): Promise<number> {
  const port = 29500 + Math.floor(Math.random() * 1000);
  const handle = createNetHandle(2, 2, 0, 1);
  const bridge = startBridge(dir, handle, { ...OPTIONS, nodes: { count: 2, rank: 0, masterPort: port } }, 2, 1);
  const peer = spawn(process.execPath, [PEER.pathname, String(port), dir, String(floats), String(WARM + rounds)], { stdio: 'inherit' });
  await new Promise<void>((resolve) => bridge.on('message', (m: object) => 'joined' in m && resolve()));
  const us = time(new NetGroup(handle, 0), floats, rounds);
  await new Promise((resolve) => peer.on('close', resolve));
  await bridge.terminate();
  return us;
}

export async function cpuCollectives(args: BenchArgs): Promise<BenchResult> {
  const rounds = args.int('rounds', 2000);
  // the processes agree on a model: an empty configuration stands for one
  const dir = mkdtempSync(join(tmpdir(), 'peregrine-collectives-'));
  writeFileSync(join(dir, 'config.json'), '{}');
  const rows: Record<string, string | number>[] = [];
  try {
    for (const floats of args.list('floats', ['1024', '16384']).map(Number)) {
      const t = await threads(floats, rounds), p = await processes(dir, floats, rounds);
      rows.push({ floats, 'threads us': t, 'processes us': p, 'processes / threads': `${(p / t).toFixed(1)}x` });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return {
    name: 'cpu-collectives',
    config: { rounds, warmup: WARM, cpu: `${cpus().length} x ${cpus()[0]?.model}`, node: process.version, command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim() },
    rows,
    notes: ['One all-reduce between two ranks that do nothing else, timed on rank 0: threads of one process meet in shared memory; '
      + 'processes of this host meet through their bridge threads and a TCP connection on localhost. A tensor-parallel Llama layer makes two of 1024 floats '
      + '(hidden 1024) a decode row.'],
  };
}
