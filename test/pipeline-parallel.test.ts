// Pipeline parallelism on the CPU backend: the layers split into stages, each run by its own worker-thread ranks; a
// stage takes its rows from the stage before it and passes them on (a decode step's and a prompt chunk's rows in
// micro-batches), and the last stage's logits go back to every stage. Alone it changes no arithmetic, so the tokens
// and log-probs are one whole model's bit for bit: for Llama-family and GPT-2 fixtures, a quantized GGUF file (a stage
// reads only its layers' blocks), an uneven split of five layers into three stages, and with tensor parallelism inside
// each stage. Everything the scheduler does (requests arriving at any time, preemption, swapping, beams) runs through
// it; what cannot run pipeline-parallel is refused by name.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createGroup, loadGenerator, type GenerationResult, type LoadOptions } from '../src/index.js';
import { stageLayers } from '../src/models/stages.js';
import { segmentsOf } from '../src/runtime/pass.js';
import { fixture } from './helpers/fixtures.js';
import { alone, deterministic, together, tokensOf, workload } from './helpers/generation.js';
import { deepenLayers } from './helpers/layers.js';
import { widenVocab } from './helpers/vocab.js';

const PROMPTS = [[1, 15, 27, 3, 99, 4], [7], [2, 200, 31, 31, 31, 8, 60, 5, 11]];
const NEW = 8;

async function generations(dir: string, options: LoadOptions): Promise<GenerationResult[]> {
  const gen = await loadGenerator(dir, { device: 'cpu', ...options });
  try {
    const out: GenerationResult[] = [];
    for (const p of PROMPTS) out.push((await gen.generateIds([p], { maxNewTokens: NEW, stopAtEos: false, logprobs: true }))[0]);
    // and the prompts together, in one batch
    out.push(...await gen.generateIds(PROMPTS, { maxNewTokens: NEW, stopAtEos: false, logprobs: true }));
    return out;
  } finally {
    gen.dispose();
  }
}

describe('pipeline parallelism on the CPU backend', () => {
  // [fixture or directory, stages, tensor-parallel size, what]
  const cases: [() => string, number, number, string][] = [
    [() => fixture('llama-tiny'), 2, 1, 'llama-tiny'],
    [() => fixture('gpt2-tiny'), 3, 1, 'gpt2-tiny, a layer a stage'],
    [() => fixture('qwen3-tiny'), 2, 1, 'qwen3-tiny (head norms)'],
    [() => fixture('gguf/llama-tiny-q8_0.gguf'), 2, 1, 'a Q8_0 GGUF file'],
    [() => deepenLayers(fixture('qwen2-tiny'), 5), 3, 1, 'qwen2-tiny deepened to 5 layers, in 3 stages'],
    [() => widenVocab(fixture('llama-tiny'), 1), 2, 2, 'llama-tiny widened to an even vocabulary, 2 stages of 2 tensor-parallel ranks'],
  ];
  for (const [dirOf, stages, tensor, what] of cases) {
    test(`${what}: one whole model's greedy tokens and log-probs${tensor > 1 ? ' (within 1e-4: the ranks sum in another order)' : ', bit for bit'}`, async () => {
      const dir = dirOf();
      const want = await generations(dir, {});
      const got = await generations(dir, { pipelineParallel: stages, tensorParallel: tensor });
      got.forEach((r, i) => {
        assert.deepEqual(r.ids, want[i].ids, `generation ${i}`);
        if (tensor === 1) assert.deepEqual(r.logprobs, want[i].logprobs, `generation ${i}`);
        else r.logprobs!.forEach((lp, j) => assert.ok(Math.abs(lp - want[i].logprobs![j]) < 1e-4, `generation ${i}, token ${j}: ${lp} vs ${want[i].logprobs![j]}`));
      });
    });
  }

  test('pipelineParallel: 2: 42 mixed requests arriving at random, preempted and swapped, give what they give alone, and one whole model\'s tokens', async () => {
    const dir = fixture('llama-tiny'), work = workload(42);
    const whole = await loadGenerator(dir, { device: 'cpu' });
    const want = await alone(whole, work);
    whole.dispose();
    const pp = await loadGenerator(dir, { device: 'cpu', pipelineParallel: 2, maxBatch: 8, prefillChunk: 32, blockSize: 4, kvBlocks: 60 });
    const solo = await alone(pp, work);
    // no arithmetic changes, so seeded sampling gives the whole model's tokens too
    assert.deepEqual(tokensOf(solo), tokensOf(want), 'two stages give the whole model\'s tokens');
    assert.ok(work.filter((w) => !deterministic(w.options)).length >= 10, 'sampled requests are compared too');
    assert.deepEqual(tokensOf(await together(pp, work, 3, 4)), tokensOf(solo), 'random arrivals and a small pool change nothing');
    const stats = pp.scheduler.stats();
    assert.ok(stats.preemptions > 0 && stats.swapOuts > 0, 'preempted caches were swapped out and back, on every stage');
    assert.equal(stats.blocksUsed, 0);
    pp.dispose();
  });

  test('a prefill chunk\'s micro-batches take the segments of the rows they hold, counted from their first row', () => {
    // rows 0-4 of one sequence, 5-6 of another, 7 of a third; the parts are rows 0-3 and 4-7
    const table = new Int32Array([0, 5, 0, 5, 2, 0, 7, 1, 0]), out = new Int32Array(18);
    assert.deepEqual(segmentsOf(table, 3, 0, 4, out, 0), { count: 1, longest: 4 });
    assert.deepEqual(segmentsOf(table, 3, 4, 8, out, 1), { count: 3, longest: 2 });
    assert.deepEqual([...out.subarray(0, 12)], [0, 4, 0, 0, 1, 0, 1, 2, 0, 3, 1, 0]);
  });

  test('the stages split the layers as if the LM head were layers of its own, a layer a stage at least', () => {
    const split = (layers: number, stages: number, head: number) => Array.from({ length: stages }, (_, stage) => {
      const s = stageLayers(layers, { stage, stages }, head);
      assert.equal(s.embeds, stage === 0);
      assert.equal(s.heads, stage === stages - 1);
      return [s.first, s.end];
    });
    assert.deepEqual(split(5, 3, 0), [[0, 1], [1, 3], [3, 5]]);
    // bench/cpu-llama's 160M configuration: the head weighs 2.8 of its layers
    assert.deepEqual(split(8, 2, 2.8), [[0, 5], [5, 8]]);
    assert.deepEqual(split(32, 4, 2.4), [[0, 8], [8, 17], [17, 25], [25, 32]]);
    assert.deepEqual(split(5, 3, 100), [[0, 3], [3, 4], [4, 5]]);
    assert.deepEqual(stageLayers(5, null, 9), { first: 0, end: 5, embeds: true, heads: true });
  });

  test('what does not run pipeline-parallel, and bad sizes, are refused by name', async () => {
    await assert.rejects(loadGenerator(fixture('t5-tiny'), { device: 'cpu', tensorParallel: { group: createGroup(2, 1024, 1), rank: 0 } }),
      /T5ForConditionalGeneration does not run pipeline-parallel yet/);
    await assert.rejects(loadGenerator(fixture('llama-tiny'), { device: 'cpu', tensorParallel: { group: createGroup(3, 1024, 1), rank: 0 } }),
      /a pipeline of 3 stages needs a layer a stage at least, and the model has 2; use at most 2 stages/);
    await assert.rejects(loadGenerator(fixture('llama-tiny'), { device: 'auto', pipelineParallel: 2 }),
      /tensor and pipeline parallelism run on the CPU backend only for now \(device cpu, got auto\)/);
    await assert.rejects(loadGenerator(fixture('llama-tiny'), { device: 'cpu', pipelineParallel: 0 }), /pipeline parallel must be a whole number >= 1, got 0/);
    await assert.rejects(loadGenerator(fixture('llama-tiny'), { device: 'cpu', pipelineParallel: 2, tensorParallel: { group: createGroup(2), rank: 0 } }),
      /pipelineParallel with a \{ group, rank \} rank/);
  });
});
