// Serving: requests with Poisson arrivals and mixed prompt and output lengths, through the scheduler
// (continuous batching: sequences join and leave between decode steps) against static batches of the same
// engine (when the engine is free, every waiting request, up to --max-batch, starts as one batch, and the
// next batch starts only when all of it has finished). Reports generated tokens/s and time to first token.
//   npm run bench -- serving [--config 1.5B] [--requests 256] [--rate 64] [--max-batch 64] [--device cuda|cpu] [--out-dir DIR]
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadGenerator, type TextGenerator } from '../src/index.js';
import { seededRandom } from '../src/ops/rng.js';
import { randomGpt2Dir, type BenchArgs, type BenchResult } from './common.js';

interface Req {
  arrival: number;
  prompt: number[];
  maxNewTokens: number;
}

interface Outcome {
  ttft: number[];
  tokens: number;
  ms: number;
}

/** Prompts of 16..512 tokens; outputs mostly short with a long tail: 60% 16..64, 30% 64..256, 10% 256..512. */
export function workload(n: number, rate: number, seed = 7): Req[] {
  const rand = seededRandom(seed);
  let t = 0;
  return Array.from({ length: n }, (_, i) => {
    t += (-Math.log(1 - rand()) / rate) * 1000;
    const len = 16 + Math.floor(rand() * 497);
    const u = rand();
    const out = u < 0.6 ? 16 + Math.floor(rand() * 48) : u < 0.9 ? 64 + Math.floor(rand() * 192) : 256 + Math.floor(rand() * 256);
    return { arrival: t, prompt: Array.from({ length: len }, (_, j) => (i * 7919 + j * 104729) % 50257), maxNewTokens: out };
  });
}

const sleepUntil = (t0: number, ms: number) => new Promise((r) => setTimeout(r, Math.max(0, t0 + ms - performance.now())));

/** Every request submitted at its arrival time; the scheduler batches them as it goes. */
async function continuous(gen: TextGenerator, reqs: Req[]): Promise<Outcome> {
  const t0 = performance.now();
  const ttft: number[] = new Array(reqs.length);
  let tokens = 0;
  await Promise.all(reqs.map(async (r, i) => {
    await sleepUntil(t0, r.arrival);
    const [res] = await gen.generateIds([r.prompt], {
      maxNewTokens: r.maxNewTokens, stopAtEos: false,
      onToken: () => { ttft[i] ??= performance.now() - t0 - r.arrival; },
    });
    tokens += res.ids.length;
  }));
  return { ttft, tokens, ms: performance.now() - t0 };
}

/** Static batches: a batch starts when the engine is free and runs until every request in it has finished. */
async function staticBatches(gen: TextGenerator, reqs: Req[], maxBatch: number): Promise<Outcome> {
  const t0 = performance.now();
  const ttft: number[] = new Array(reqs.length);
  let tokens = 0, next = 0;
  while (next < reqs.length) {
    const now = performance.now() - t0;
    if (reqs[next].arrival > now) await sleepUntil(t0, reqs[next].arrival);
    const at = performance.now() - t0;
    const batch: number[] = [];
    while (next < reqs.length && batch.length < maxBatch && reqs[next].arrival <= at) batch.push(next++);
    await Promise.all(batch.map(async (i) => {
      const r = reqs[i];
      const [res] = await gen.generateIds([r.prompt], {
        maxNewTokens: r.maxNewTokens, stopAtEos: false,
        onToken: () => { ttft[i] ??= performance.now() - t0 - r.arrival; },
      });
      tokens += res.ids.length;
    }));
  }
  return { ttft, tokens, ms: performance.now() - t0 };
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

export async function serving(args: BenchArgs): Promise<BenchResult> {
  const config = args.string('config') ?? '1.5B';
  const n = args.int('requests', 256), rate = args.int('rate', 64), maxBatch = args.int('max-batch', 64);
  const device = (args.string('device') ?? 'cuda') as 'cuda' | 'cpu';
  const gen = await loadGenerator(randomGpt2Dir(config), { device, dtype: device === 'cuda' ? 'f16' : undefined, maxBatch, maxSeqLen: 1024, prefillChunk: 512 });
  const reqs = workload(n, rate);
  // warm-up: GEMM shapes and decode graphs of every bucket
  await continuous(gen, workload(Math.min(n, 2 * maxBatch), 1e6, 3).map((r) => ({ ...r, maxNewTokens: 8 })));
  const before = gen.scheduler.stats();
  const cont = await continuous(gen, reqs);
  const mid = gen.scheduler.stats();
  const stat = await staticBatches(gen, reqs, maxBatch);
  const stats = gen.scheduler.stats();
  const delta = (a: typeof stats, b: typeof stats) => Object.fromEntries(
    (['iterations', 'prefillPasses', 'decodeSteps', 'prefillMs', 'decodeMs', 'preemptions'] as const).map((k) => [k, Math.round(b[k] - a[k])]));
  const deviceName = 'device' in gen.runtime.backend ? (gen.runtime.backend as unknown as { device: { name: string } }).device.name : 'cpu';
  gen.dispose();
  const row = (engine: string, o: Outcome) => ({
    mode: engine, requests: n, 'generated tokens': o.tokens, 'seconds': o.ms / 1000, 'tokens/s': (o.tokens * 1000) / o.ms,
    'TTFT p50 ms': pct(o.ttft, 50), 'TTFT p99 ms': pct(o.ttft, 99),
  });
  const rows: Record<string, string | number>[] = [row('continuous batching (scheduler)', cont), row(`static batches of up to ${maxBatch}`, stat)];
  rows[0]['vs static'] = `${((cont.tokens / cont.ms) / (stat.tokens / stat.ms)).toFixed(2)}x tokens/s`;
  rows[1]['vs static'] = '';
  const result: BenchResult = {
    name: 'serving',
    config: {
      device: deviceName, model: `GPT-2 ${config}, random fp16 weights`, requests: n, arrivalRatePerS: rate, maxBatch, prefillChunk: 512, scheduler: { continuous: delta(before, mid), static: delta(mid, stats) },
      prompts: '16..512 tokens, uniform', outputs: '60% 16..64, 30% 64..256, 10% 256..512 new tokens',       command: `npm run bench -- serving ${process.argv.slice(3).join(' ')}`.trim(),
    },
    rows,
    notes: ['tokens/s: generated tokens / (last completion - first arrival); TTFT: first token - arrival. Same requests, same arrival times, same engine instance.'],
  };
  const outDir = args.string('out-dir');
  if (outDir) {
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'serving.json'), JSON.stringify({ ...result, ttft: { continuous: cont.ttft, static: stat.ttft } }, null, 1));
  }
  return result;
}
