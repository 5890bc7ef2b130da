// node tools/profile-decode.mjs <dist dir> <batch>: 4 greedy tokens for `batch` 128-token prompts of random GPT-2 1.5B,
// warm-up twice, then once more between cuProfilerStart/Stop (for ncu --profile-from-start off).
// Run under Nsight Compute for per-kernel times of a replayed decode graph, e.g.
//   ncu --profile-from-start off --graph-profiling node --metrics gpu__time_duration.sum --csv --log-file x.csv \
//     node tools/profile-decode.mjs dist 64
// (the last step of the profiled call, from its embedding kernel on, is one decode step).
import koffi from 'koffi';
import { resolve } from 'node:path';
const [dist, batchArg] = process.argv.slice(2);
const batch = Number(batchArg);
const { randomGpt2Dir } = await import(resolve('dist/bench/common.js'));
const { loadGenerator } = await import(resolve(dist, 'src/index.js'));
const dir = randomGpt2Dir('1.5B');
const gen = await loadGenerator(dir, { device: 'cuda', dtype: 'f16', maxBatch: batch, maxSeqLen: 320, prefillChunk: batch * 128 });
const prompts = Array.from({ length: batch }, (_, b) => Array.from({ length: 128 }, (_, i) => (b * 7919 + i * 104729) % 50257));
const opts = { maxNewTokens: 4, stopAtEos: false };
await gen.generateIds(prompts, opts);
await gen.generateIds(prompts, opts);
const cuda = koffi.load('libcuda.so.1');
const start = cuda.func('int cuProfilerStart()'), stop = cuda.func('int cuProfilerStop()');
start();
await gen.generateIds(prompts, opts);
stop();
console.log('done', dist, batch);
