// Tensor parallelism on the CPU backend: the ranks of a group are worker threads, each holding its slice of every layer
// (query and KV heads, MLP width) and summing the row-parallel products with the thread group's all-reduce. Two ranks
// give the tokens and log-probs one whole model gives, for the Llama-family fixtures (GQA, Qwen2's q/k/v biases,
// Qwen3's head norms, a GGUF file's rows in llama.cpp's order), and with a vocabulary the ranks divide, the embedding
// and the LM head split by vocabulary too (untied and tied); what cannot be split is refused by name.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createBackend } from '../src/backends/select.js';
import { createGroup, loadGenerator, type GenerationResult } from '../src/index.js';
import { fixture } from './helpers/fixtures.js';
import { alone, deterministic, together, tokensOf, workload } from './helpers/generation.js';
import { runRanks } from './helpers/ranks.js';
import { widenVocab } from './helpers/vocab.js';

const WORKER = new URL('./helpers/tp-worker.js', import.meta.url);
const PROMPTS = [[1, 15, 27, 3, 99, 4], [7], [2, 200, 31, 31, 31, 8, 60, 5, 11]];
const NEW = 8;

interface RankResult { results?: { ids: number[]; logprobs: number[] }[]; error?: string }

async function ranks(model: string, size: number): Promise<RankResult[]> {
  const got = await runRanks<RankResult>(WORKER, createGroup(size, 4096), Array.from({ length: size }, () => ({ model, prompts: PROMPTS, maxNewTokens: NEW })));
  return got.map((r, rank) => ('exit' in r ? { error: `rank ${rank} exited with ${r.exit}` } : r));
}

describe('tensor parallelism on the CPU backend', () => {
  // [fixture, ranks, vocabulary rows added]: 951 + 1 and 815 + 1 divide by 2
  const cases: [string, number, number][] = [['llama-tiny', 2, 0], ['mistral-tiny', 2, 0], ['qwen2-tiny', 2, 0], ['qwen3-tiny', 2, 0],
    ['gguf/llama-tiny.gguf', 2, 0], ['llama-tiny', 2, 1], ['qwen2-tiny', 2, 1]];
  for (const [name, size, extra] of cases) {
    const what = extra ? `${name} widened to an even vocabulary (embedding and LM head split by vocabulary${name === 'qwen2-tiny' ? ', tied' : ''})` : name;
    test(`${what}: ${size} ranks give one whole model's greedy tokens, log-probs within 1e-4`, async () => {
      const dir = extra ? widenVocab(fixture(name), extra) : fixture(name);
      const whole = await loadGenerator(dir, { device: 'cpu' });
      const want: GenerationResult[] = [];
      for (const p of PROMPTS) want.push((await whole.generateIds([p], { maxNewTokens: NEW, stopAtEos: false, logprobs: true }))[0]);
      whole.dispose();
      const got = await ranks(dir, size);
      for (const [rank, r] of got.entries()) {
        assert.equal(r.error, undefined, `rank ${rank}: ${r.error}`);
        r.results!.forEach((res, i) => {
          assert.deepEqual(res.ids, want[i].ids, `rank ${rank}, prompt ${i}`);
          res.logprobs.forEach((lp, j) => assert.ok(Math.abs(lp - want[i].logprobs![j]) < 1e-4, `rank ${rank}, prompt ${i}, token ${j}: ${lp} vs ${want[i].logprobs![j]}`));
        });
      }
    });
  }

  test('tensorParallel: 2 from one thread: 42 mixed requests arriving at random, preempted and swapped, give what they give alone, and greedy and beams what one whole model gives', async () => {
    const dir = widenVocab(fixture('llama-tiny'), 1), work = workload(42);
    const whole = await loadGenerator(dir, { device: 'cpu' });
    const want = await alone(whole, work);
    whole.dispose();
    const tp = await loadGenerator(dir, { device: 'cpu', tensorParallel: 2, maxBatch: 8, prefillChunk: 32, blockSize: 4, kvBlocks: 60 });
    const solo = await alone(tp, work);
    const same = work.map((w) => deterministic(w.options));
    assert.ok(same.filter(Boolean).length >= 10, 'greedy and beam requests are compared with the whole model');
    assert.deepEqual(tokensOf(solo.filter((_, i) => same[i])), tokensOf(want.filter((_, i) => same[i])), 'two ranks give the whole model\'s tokens');
    assert.deepEqual(tokensOf(await together(tp, work, 3, 4)), tokensOf(solo), 'random arrivals and a small pool change nothing');
    const stats = tp.scheduler.stats();
    assert.ok(stats.preemptions > 0 && stats.swapOuts > 0, 'preempted caches were swapped out and back, on every rank');
    assert.equal(stats.blocksUsed, 0);
    tp.dispose();
  });

  test('what a rank cannot split, and what does not run tensor-parallel, is refused by name', async () => {
    const tensorParallel = { group: createGroup(2), rank: 0 };
    await assert.rejects(loadGenerator(fixture('llama3-tiny'), { device: 'cpu', tensorParallel }),
      /num_key_value_heads \(1\) is not a multiple of the tensor-parallel size 2/);
    await assert.rejects(loadGenerator(fixture('gpt2-tiny'), { device: 'cpu', tensorParallel }), /GPT2LMHeadModel does not run tensor-parallel yet/);
    await assert.rejects(loadGenerator(fixture('llama-gptq-tiny'), { device: 'cpu', tensorParallel }), /quantization_config \(gptq\) names a checkpoint tensor parallelism does not split yet/);
    await assert.rejects(loadGenerator(fixture('gguf/llama-tiny-q8_0.gguf'), { device: 'cpu', tensorParallel }),
      /is stored as Q8_0; tensor parallelism splits F32, F16 and BF16 weights only/);
    await assert.rejects(loadGenerator(fixture('llama-tiny'), { device: 'cpu', tensorParallel, quantize: 'int8' }),
      /quantize \(Q8_0\) does not combine with tensor parallelism yet/);
    await assert.rejects(createBackend({ device: 'cuda', tensorParallel }), /tensor and pipeline parallelism run on the CPU backend only for now \(device cpu, got cuda\)/);
    await assert.rejects(loadGenerator(fixture('llama-tiny'), { device: 'auto', tensorParallel: 2 }), /tensor and pipeline parallelism run on the CPU backend only for now \(device cpu, got auto\)/);
    await assert.rejects(loadGenerator(fixture('llama-tiny'), { device: 'cpu', tensorParallel: 0 }), /tensor parallel must be a whole number >= 1, got 0/);
  });
});
