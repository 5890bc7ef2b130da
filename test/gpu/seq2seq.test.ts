// Encoder-decoder models on the GPU (cross-attention and T5's position bias in kernels/attention.cu, the n-gram and
// forced-token processors in kernels/sampling.cu): every fixture of test/seq2seq.test.ts in fp32 against Hugging Face
// generate() (greedy and beam ids identical, beam scores and log-probs within 1e-3), the decode step replayed from a
// captured graph; in fp16 close to Hugging Face's fp32 (log-probs within 4e-2 x the step's largest |logit|, while the
// tokens agree); and the processors on the GPU giving the CPU's tokens.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import type { CudaBackend } from '../../src/backends/cuda/backend.js';
import { loadGenerator, type GenerateOptions, type GenerationResult } from '../../src/index.js';
import { CLI, fixture, reference } from '../helpers/fixtures.js';
import { checkAll, logSoftmax, options, type Reference } from '../helpers/seq2seq.js';
import { noGpu } from './helpers.js';

const skip = noGpu();
const FIXTURES = ['bart-tiny', 'mbart-tiny', 'marian-tiny', 't5-tiny', 't5v11-tiny'];
/**
 * fp16 against Hugging Face's fp32: a log-prob within F16_TOL times the largest |logit| of its step (the relative
 * error of 16-bit logits that test/gpu/models.test.ts allows, 2e-2, twice: a log-prob is a logit less the log-sum-exp).
 */
const F16_TOL = 4e-2;

describe('encoder-decoder models on the GPU against Hugging Face generate() (fp32)', { skip: skip ?? false }, () => {
  for (const name of FIXTURES) {
    test(`${name}: ids identical, scores and log-probs within 1e-3, decode replayed from a graph`, async () => {
      const g = await loadGenerator(fixture(name), { device: 'cuda', dtype: 'f32' });
      try {
        const ref = reference<Reference>(name);
        await checkAll(g, ref, 1e-3);
        // greedy again, without log-probs and past the end tokens, so that every step has all the rows: from the
        // second step on, the decode step is a graph replay (the cross-attention reads the memory through device tables)
        const greedy = ref.sources.map((s) => s.runs.find((r) => r.name === 'greedy')!.sequences[0]);
        const steps = ref.sources[0].runs.find((r) => r.name === 'greedy')!.kwargs.max_new_tokens as number;
        const again = await g.generateIds(ref.sources.map((s) => s.ids), { maxNewTokens: steps, stopAtEos: false });
        again.forEach((r, i) => {
          assert.equal(r.ids.length, steps);
          assert.deepEqual(r.ids.slice(0, greedy[i].length), greedy[i], `greedy past the end, source ${i}`);
        });
        const backend = g.runtime.backend as CudaBackend;
        const nodes = Math.max(...[false, true].map((p) => backend.graphNodes(g.runtime.graphKey(ref.sources.length, { process: p, logprobs: false, candidates: p }))));
        assert.ok(nodes > 10, `the decode step was captured as a graph (${nodes} nodes)`);
        assert.equal(g.scheduler.stats().blocksUsed, 0);
      } finally {
        g.dispose();
      }
    });
  }
});

describe('encoder-decoder models on the GPU in fp16, close to Hugging Face (fp32)', { skip: skip ?? false }, () => {
  for (const name of FIXTURES) {
    test(`${name}: greedy log-probs within ${F16_TOL} x the largest |logit| while the tokens agree; beams ranked, agreeing beams' scores close`, async () => {
      const g = await loadGenerator(fixture(name), { device: 'cuda', dtype: 'f16' });
      try {
        const ref = reference<Reference>(name);
        const greedy = ref.sources.map((s) => s.runs.find((r) => r.name === 'greedy')!);
        const results = await g.generateIds(ref.sources.map((s) => s.ids), { ...options(greedy[0].kwargs), topLogprobs: 3 });
        // the bound of a log-prob at each source's first step (its inputs are the same whatever was drawn)
        const firstTol: number[] = [];
        results.forEach((res, i) => {
          const want = greedy[i].sequences[0], logits = greedy[i].logits!;
          for (let step = 0; step < logits.length; step++) {
            // a step after a token that differs has other inputs: not compared
            if (step > 0 && res.ids[step - 1] !== want[step - 1]) break;
            const lp = logSoftmax(logits[step]), tol = F16_TOL * Math.max(1, ...logits[step].map(Math.abs));
            if (step === 0) firstTol.push(tol);
            const where = `source ${i}, step ${step}`;
            assert.ok(Math.abs(res.logprobs![step] - lp[res.ids[step]]) < tol, `${where}: log-prob ${res.logprobs![step]} vs ${lp[res.ids[step]]} (tolerance ${tol})`);
            for (const t of res.topLogprobs![step]) assert.ok(Math.abs(t.logprob - lp[t.id]) < tol, `${where}: token ${t.id}`);
            // a clear winner is the token drawn
            const [best, second] = [...lp].sort((a, b) => b - a);
            if (best - second > 2 * tol) assert.equal(res.ids[step], want[step], `${where}: the clear winner`);
            if (res.ids[step] !== want[step]) break;
          }
        });
        for (const run of ref.sources[0].runs.filter((r) => r.scores)) {
          const runs = ref.sources.map((s) => s.runs.find((r) => r.name === run.name)!);
          const o = options(run.kwargs);
          const out = await g.generateIds(ref.sources.map((s) => s.ids), o);
          out.forEach((res, i) => {
            const seqs = res.sequences!, where = `${run.name}, source ${i}`;
            assert.equal(seqs.length, runs[i].sequences.length, where);
            seqs.forEach((s, j) => {
              assert.ok(Number.isFinite(s.score), `${where}, beam ${j}: score ${s.score}`);
              if (j > 0) assert.ok(s.score <= seqs[j - 1].score, `${where}: beams best first`);
              const hf = runs[i].sequences[j];
              if (!s.ids.every((id, k) => id === hf[k])) return;
              // a score is the sum of its log-probs over length^penalty; twice the first step's bound per log-prob
              // (later steps' logits may be larger)
              const len = s.ids.length + 1, penalty = o.lengthPenalty ?? 1;
              const tol = 2 * firstTol[i] * Math.max(1, len ** (1 - penalty));
              assert.ok(Math.abs(s.score - runs[i].scores![j]) < tol, `${where}, beam ${j}: score ${s.score} vs ${runs[i].scores![j]} (tolerance ${tol})`);
            });
          });
        }
      } finally {
        g.dispose();
      }
    });
  }
});

describe('the encoder-decoder processors on the GPU give the CPU\'s tokens (fp32)', { skip: skip ?? false }, () => {
  const cases: GenerateOptions[] = [
    { maxNewTokens: 10, noRepeatNgramSize: 1 },
    { maxNewTokens: 10, noRepeatNgramSize: 3, forcedBosTokenId: 5 },
    { maxNewTokens: 7, forcedBosTokenId: 4, forcedEosTokenId: 3, minNewTokens: 2 },
    { maxNewTokens: 9, numBeams: 3, numReturnSequences: 3, noRepeatNgramSize: 2, forcedEosTokenId: 6 },
    { maxNewTokens: 8, numBeams: 4, numReturnSequences: 2, forcedBosTokenId: 6, repetitionPenalty: 1.3, noRepeatNgramSize: 2 },
  ];
  const same = (got: GenerationResult, want: GenerationResult, where: string) => {
    assert.deepEqual(got.ids, want.ids, where);
    assert.equal(got.sequences?.length, want.sequences?.length, where);
    got.sequences?.forEach((s, j) => {
      assert.deepEqual(s.ids, want.sequences![j].ids, `${where}, beam ${j}`);
      assert.ok(Math.abs(s.score - want.sequences![j].score) < 1e-3, `${where}, beam ${j}: score ${s.score} vs ${want.sequences![j].score}`);
    });
  };

  for (const name of ['bart-tiny', 'mbart-tiny', 't5-tiny']) {
    test(`${name}: no-repeat n-grams, forced BOS and EOS, greedy and beams`, async () => {
      const sources = reference<Reference>(name).sources.map((s) => s.ids);
      const [cpu, gpu] = [await loadGenerator(fixture(name), { device: 'cpu' }), await loadGenerator(fixture(name), { device: 'cuda', dtype: 'f32' })];
      try {
        for (const [c, o] of cases.entries()) {
          const [want, got] = [await cpu.generateIds(sources, o), await gpu.generateIds(sources, o)];
          got.forEach((r, i) => same(r, want[i], `case ${c}, source ${i}`));
          if (o.forcedBosTokenId !== undefined) got.forEach((r, i) => assert.equal(r.ids[0], o.forcedBosTokenId, `case ${c}, source ${i}: forced BOS`));
        }
        if (name === 'mbart-tiny') {
          // generation_config.json's forced_bos_token_id (the language code), on the GPU
          const [res] = await gpu.generateIds([[0, 50, 60, 2]], { maxNewTokens: 3 });
          assert.equal(res.ids[0], 7);
        }
      } finally {
        cpu.dispose();
        gpu.dispose();
      }
    });
  }
});

// The "done when": a Marian, a BART and a T5 checkpoint translate / summarize from the CLI on the GPU as on the
// CPU (fp32: the same ids; the CPU's are Hugging Face's, test/seq2seq.test.ts).
describe('peregrine translate, summarize and generate on seq2seq models, on the GPU', { skip: skip ?? false }, () => {
  const run = (device: string, args: string[]) => {
    const r = spawnSync(process.execPath, [CLI, ...args, '--device', device, '--dtype', 'f32', '--json'], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${device}: ${r.stderr}`);
    return r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { index: number; ids: number[]; text: string })
      .sort((a, b) => a.index - b.index).map((l) => ({ ids: l.ids, text: l.text }));
  };
  const cases: [string, string[]][] = [
    ['marian-tiny', ['translate', '-m', fixture('marian-tiny'), '-n', '8', '--num-beams', '4', 'Hello, world!', 'The quick brown fox.']],
    ['bart-tiny', ['summarize', '-m', fixture('bart-tiny'), '-n', '8', 'A long text about nothing in particular, said once.']],
    ['t5-tiny', ['generate', '-m', fixture('t5-tiny'), '-n', '8', '-p', 'translate English to German: Hello, world!', 'summarize: the cat sat on the mat']],
  ];
  for (const [name, args] of cases) {
    test(`${name}: peregrine ${args[0]} gives the CPU's ids and text`, () => {
      const [cpu, gpu] = [run('cpu', args), run('cuda', args)];
      assert.ok(cpu.length >= 1 && cpu.every((r) => r.ids.length > 0));
      assert.deepEqual(gpu, cpu);
    });
  }
});
