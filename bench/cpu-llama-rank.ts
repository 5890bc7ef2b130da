// A rank of bench/cpu-llama.ts in a worker thread: the same job as rank 0, its timings discarded.
import { workerData } from 'node:worker_threads';
import type { GroupHandle } from '../src/backends/cpu/thread-group.js';
import { runCpuLlama, type CpuLlamaJob } from './cpu-llama.js';

const { job, handle, rank } = workerData as { job: CpuLlamaJob; handle: GroupHandle; rank: number };
await runCpuLlama(job, { group: handle, rank });
