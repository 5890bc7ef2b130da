// The HTTP server under load: `peregrine serve` in a child process on loopback, rounds of N streaming
// completions sent at once (mixed prompt and output lengths, ignore_eos so every request's length is known),
// measured the way vLLM's benchmark_serving measures a server: request and token throughput, time to first
// token, time per output token, inter-token latency, end-to-end latency. Every stream is checked: exactly
// max_tokens token chunks, one finish_reason, usage agreeing, [DONE] once; nothing lost or duplicated. GPU
// memory and the server's RSS are read after every round (flat, or the server leaks). Then the same requests
// through the library in this process, without HTTP, to show what the server costs.
//   npm run bench -- serve [--config 124M] [--requests 1000] [--rounds 10] [--max-batch 256] [--device cuda|cpu] [--timeout-s 500] [--out-dir DIR]
//     [--stream-interval N: tokens per chunk]
//     [--profile DIR: the server's V8 CPU profile]
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { setMaxListeners } from 'node:events';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadGenerator } from '../src/index.js';
import { randomGpt2Dir, ROOT, type BenchArgs, type BenchResult } from './common.js';
import { workload } from './serving.js';

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');

interface Timing {
  /** ms from sending to the first token */
  ttft: number;
  /** ms between consecutive tokens */
  itl: number[];
  /** ms from sending to the last byte */
  e2e: number;
  tokens: number;
}

interface Round {
  ms: number;
  timings: Timing[];
  promptTokens: number;
  gpuMiB: number | null;
  rssMiB: number;
  /** the server's V8 heap in use (not collected first: an upper bound on what it holds) */
  heapMiB: number;
  kvBlocksUsed: number;
  serverTokens: number;
}

function startServer(args: string[], timeoutMs: number, nodeArgs: string[]): Promise<{ child: ChildProcess; base: string }> {
  const child = spawn(process.execPath, [...nodeArgs, CLI, 'serve', '--host', '127.0.0.1', '--port', '0', ...args], { stdio: ['ignore', 'inherit', 'pipe'] });
  let err = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start in ${timeoutMs} ms: ${err}`)), timeoutMs);
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      const m = /serving .* at (http:\/\/\S+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({ child, base: m[1] });
      }
    });
    child.on('close', (code) => reject(new Error(`the server exited with ${code}: ${err}`)));
  });
}

/** One streaming completion, checked. */
async function stream(base: string, model: string, prompt: number[], maxTokens: number, interval: number, signal: AbortSignal): Promise<Timing> {
  const t0 = performance.now();
  const r = await fetch(`${base}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, signal,
    body: JSON.stringify({ model, prompt, max_tokens: maxTokens, ignore_eos: true, temperature: 0, stream: true, stream_options: { include_usage: true } }),
  });
  if (r.status !== 200) throw new Error(`status ${r.status}: ${await r.text()}`);
  const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '', chunks = 0, finishes = 0, done = 0, last = 0, ttft = -1, usage = -1;
  const itl: number[] = [];
  for (;;) {
    const { value, done: ended } = await reader.read();
    if (ended) break;
    buffer += value;
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const data = buffer.slice(6, end);
      buffer = buffer.slice(end + 2);
      if (data === '[DONE]') {
        done++;
        continue;
      }
      const chunk = JSON.parse(data) as { choices: { finish_reason: string | null }[]; usage?: { completion_tokens: number }; error?: { message: string } };
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) usage = chunk.usage.completion_tokens;
      if (chunk.choices.length === 0) continue;
      const now = performance.now();
      if (chunks === 0) ttft = now - t0;
      else itl.push(now - last);
      last = now;
      chunks++;
      if (chunk.choices[0].finish_reason) finishes++;
    }
  }
  if (chunks !== Math.ceil(maxTokens / interval) || usage !== maxTokens || finishes !== 1 || done !== 1) {
    throw new Error(`a stream asked for ${maxTokens} tokens ${interval} per chunk got ${chunks} chunks, usage ${usage}, ${finishes} finish reasons and ${done} [DONE]`);
  }
  return { ttft, itl, e2e: performance.now() - t0, tokens: usage };
}

function gpuMiB(): number | null {
  try {
    return Number(execFileSync('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits'], { encoding: 'utf8' }).split('\n')[0]);
  } catch {
    return null;
  }
}

const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

async function metric(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `)).reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

function stats(xs: number[]): { mean: number; p50: number; p99: number } {
  const s = Float64Array.from(xs).sort();
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { mean: s.reduce((a, b) => a + b, 0) / s.length, p50: at(0.5), p99: at(0.99) };
}

function row(mode: string, requests: number, ms: number, promptTokens: number, timings: Timing[]): Record<string, string | number> {
  const out = timings.reduce((a, t) => a + t.tokens, 0);
  const ttft = stats(timings.map((t) => t.ttft));
  const tpot = stats(timings.filter((t) => t.tokens > 1).map((t) => (t.e2e - t.ttft) / (t.tokens - 1)));
  const itl = stats(timings.flatMap((t) => t.itl));
  const e2e = stats(timings.map((t) => t.e2e));
  return {
    mode, requests, seconds: ms / 1000, 'req/s': (requests * 1000) / ms, 'output tok/s': (out * 1000) / ms, 'total tok/s': ((out + promptTokens) * 1000) / ms,
    'TTFT mean / p50 / p99 ms': `${ttft.mean.toFixed(0)} / ${ttft.p50.toFixed(0)} / ${ttft.p99.toFixed(0)}`,
    'TPOT mean / p50 / p99 ms': `${tpot.mean.toFixed(2)} / ${tpot.p50.toFixed(2)} / ${tpot.p99.toFixed(2)}`,
    'ITL mean / p50 / p99 ms': `${itl.mean.toFixed(2)} / ${itl.p50.toFixed(2)} / ${itl.p99.toFixed(2)}`,
    'E2E p50 / p99 ms': `${e2e.p50.toFixed(0)} / ${e2e.p99.toFixed(0)}`,
  };
}

export async function serve(args: BenchArgs): Promise<BenchResult> {
  const config = args.string('config') ?? '124M';
  const n = args.int('requests', 1000), rounds = args.int('rounds', 10), maxBatch = args.int('max-batch', 256);
  const device = (args.string('device') ?? 'cuda') as 'cuda' | 'cpu';
  const interval = args.int('stream-interval', 1);
  const deadline = performance.now() + args.int('timeout-s', 500) * 1000;
  const dir = randomGpt2Dir(config);
  const load = ['-m', dir, '-d', device, '--max-batch', String(maxBatch), '--max-seq-len', '1024', '--prefill-chunk', '2048', '--max-queue', String(2 * n), '--stream-interval', String(interval), ...(device === 'cuda' ? ['--dtype', 'f16'] : [])];
  const profile = args.string('profile');
  const { child, base } = await startServer(load, 300_000, profile ? ['--cpu-prof', '--cpu-prof-dir', profile] : []);
  const stop = new AbortController();
  // every stream listens to it
  setMaxListeners(0, stop.signal);
  const timer = setTimeout(() => stop.abort(new Error('the benchmark ran past --timeout-s')), deadline - performance.now());
  const measured: Round[] = [];
  try {
    // warm-up: GEMM shapes and decode graphs of every batch size
    const warm = workload(Math.min(n, 2 * maxBatch), 1e9, 3);
    await Promise.all(warm.map((r) => stream(base, dir, r.prompt, 8, interval, stop.signal)));
    for (let k = 0; k < rounds && performance.now() < deadline; k++) {
      const reqs = workload(n, 1e9, 100 + k);
      const before = await metric(base, 'peregrine_generation_tokens_total');
      const t0 = performance.now();
      const timings = await Promise.all(reqs.map((r) => stream(base, dir, r.prompt, r.maxNewTokens, interval, stop.signal)));
      const ms = performance.now() - t0;
      const serverTokens = (await metric(base, 'peregrine_generation_tokens_total')) - before;
      const round: Round = { ms, timings, promptTokens: reqs.reduce((a, r) => a + r.prompt.length, 0), gpuMiB: gpuMiB(), rssMiB: rssMiB(child.pid!), heapMiB: (await metric(base, 'peregrine_process_nodejs_heap_size_used_bytes')) / 2 ** 20, kvBlocksUsed: await metric(base, 'peregrine_kv_blocks_used'), serverTokens };
      const sent = timings.reduce((a, t) => a + t.tokens, 0);
      if (serverTokens !== sent) throw new Error(`round ${k}: the server generated ${serverTokens} tokens, the clients received ${sent}`);
      if (round.kvBlocksUsed !== 0) throw new Error(`round ${k}: ${round.kvBlocksUsed} KV blocks still in use after every request finished`);
      measured.push(round);
      process.stderr.write(`round ${k}: ${(ms / 1000).toFixed(2)} s, ${sent} tokens, GPU ${round.gpuMiB} MiB, RSS ${round.rssMiB.toFixed(0)} MiB, heap ${round.heapMiB.toFixed(0)} MiB\n`);
    }
  } finally {
    clearTimeout(timer);
    child.kill('SIGTERM');
    await new Promise((f) => child.once('close', f));
  }

  // the same requests as the first round through the library, in this process: no HTTP, no JSON
  const gen = await loadGenerator(dir, { device, dtype: device === 'cuda' ? 'f16' : undefined, maxBatch, maxSeqLen: 1024, prefillChunk: 2048 });
  const warm = workload(Math.min(n, 2 * maxBatch), 1e9, 3);
  await Promise.all(warm.map((r) => gen.generateIds([r.prompt], { maxNewTokens: 8, stopAtEos: false })));
  const reqs = workload(n, 1e9, 100);
  const t0 = performance.now();
  const direct = await Promise.all(reqs.map(async (r) => {
    const s = performance.now();
    let last = 0, ttft = -1;
    const itl: number[] = [];
    // with text, as the server makes it
    const [res] = await gen.runToEnd([r.prompt], gen.checkOptions({ maxNewTokens: r.maxNewTokens, stopAtEos: false, temperature: 0 }), {
      onToken: () => {
        const now = performance.now();
        if (ttft < 0) ttft = now - s;
        else itl.push(now - last);
        last = now;
      },
    });
    return { ttft, itl, e2e: performance.now() - s, tokens: res.ids.length };
  }));
  const directMs = performance.now() - t0;
  const deviceName = 'device' in gen.runtime.backend ? (gen.runtime.backend as unknown as { device: { name: string } }).device.name : 'cpu';
  gen.dispose();

  const all = measured.flatMap((r) => r.timings);
  const rows = [
    row(`HTTP, round 1 of ${measured.length}`, n, measured[0].ms, measured[0].promptTokens, measured[0].timings),
    row(`HTTP, all ${measured.length} rounds`, all.length, measured.reduce((a, r) => a + r.ms, 0), measured.reduce((a, r) => a + r.promptTokens, 0), all),
    row('library (runToEnd, with text), same requests as round 1', n, directMs, measured[0].promptTokens, direct),
  ];
  rows[0]['vs library'] = `${(directMs / measured[0].ms).toFixed(2)}x its output tok/s`;
  rows[1]['vs library'] = '';
  rows[2]['vs library'] = '';
  const memory = measured.map((r, k) => `${k + 1}: GPU ${r.gpuMiB ?? 'n/a'} MiB, RSS ${r.rssMiB.toFixed(0)} MiB, heap ${r.heapMiB.toFixed(0)} MiB`).join('; ');
  const result: BenchResult = {
    name: 'serve',
    config: {
      device: deviceName, model: `GPT-2 ${config}, random fp16 weights`, requestsPerRound: n, rounds: measured.length, streamInterval: interval, maxBatch, prefillChunk: 2048,
      prompts: '16..512 token ids, uniform', outputs: '60% 16..64, 30% 64..256, 10% 256..512 new tokens, ignore_eos, greedy', arrivals: 'all at once (request rate inf)',
      command: `npm run bench -- serve ${process.argv.slice(3).join(' ')}`.trim(),
    },
    rows,
    notes: [
      `Every stream checked: ceil(max_tokens / stream interval) chunks, one finish_reason, usage equal, one [DONE]; server-side generated tokens equal to those received in every round; no KV block held after a round (${all.length} requests, none lost or duplicated).`,
      `Memory after each round: ${memory}.`,
      'Metrics as vLLM\'s benchmark_serving defines them: TTFT from sending the request to the first token; TPOT = (E2E - TTFT) / (output tokens - 1) per request; ITL = every gap between consecutive chunks (a chunk holds stream-interval tokens); throughput over the round\'s wall time.',
    ],
  };
  const outDir = args.string('out-dir');
  if (outDir) {
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'serve.json'), JSON.stringify({ ...result, rounds: measured.map((r) => ({ ms: r.ms, gpuMiB: r.gpuMiB, rssMiB: r.rssMiB, heapMiB: r.heapMiB })) }, null, 1));
  }
  return result;
}
