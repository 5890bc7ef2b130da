// Prompt log-probs and `peregrine perplexity` on the CPU, against Hugging Face (tools/reference/
// make_perplexity_fixture.py: fp32 log-softmax of each prompt token, and the sliding-window perplexity).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadGenerator, PeregrineError, type TokenEvent } from '../src/index.js';
import { perplexity, windows } from '../src/engine/perplexity.js';
import { CLI, fixture, FIXTURES, reference } from './helpers/fixtures.js';

interface Run { context: number | null; stride: number | null; resolved: [number, number]; nll: number; perplexity: number; scored: number }
interface ModelRef { tokens: number; ids: number[]; prompt_logprobs: (number | null)[]; runs: Run[] }
const ref = reference<{ models: Record<string, ModelRef> }>('perplexity');
const TEXT = join(FIXTURES, 'perplexity', 'text.txt');

function close(actual: number | null | undefined, expected: number | null, tol: number, what: string): void {
  if (expected === null) return assert.equal(actual, null, what);
  assert.ok(typeof actual === 'number' && Math.abs(actual - expected) <= tol, `${what}: ${actual} vs ${expected}`);
}

const badArgument = (err: unknown) => err instanceof PeregrineError && !err.message.includes('\n');

describe('prompt log-probs', () => {
  const m = ref.models['llama-tiny'];
  const prompt = m.ids.slice(0, m.prompt_logprobs.length);

  test('each prompt token\'s log-prob matches Hugging Face, in one pass and in chunks of several score groups', async () => {
    // maxBatch 4: each pass scores its rows 4 at a time through the logits buffer; prefill chunks of 16 and 7 tokens
    for (const opts of [{}, { maxBatch: 4, prefillChunk: 16 }, { maxBatch: 4, prefillChunk: 7 }]) {
      const gen = await loadGenerator(fixture('llama-tiny'), opts);
      const [r] = await gen.generateIds([prompt], { maxNewTokens: 2, stopAtEos: false, promptLogprobs: true, topLogprobs: 3 });
      assert.equal(r.promptLogprobs!.length, prompt.length);
      r.promptLogprobs!.forEach((lp, i) => close(lp, m.prompt_logprobs[i], 1e-4, `${JSON.stringify(opts)} token ${i}`));
      // the alternatives: 3 per position but the first, best first, the best at least the token's own
      assert.equal(r.promptTopLogprobs!.length, prompt.length);
      assert.deepEqual(r.promptTopLogprobs![0], []);
      for (let i = 1; i < prompt.length; i++) {
        const top = r.promptTopLogprobs![i];
        assert.equal(top.length, 3);
        assert.ok(top[0].logprob >= top[1].logprob && top[1].logprob >= top[2].logprob);
        assert.ok(top[0].logprob >= r.promptLogprobs![i]! - 1e-6);
        if (top.some((t) => t.id === prompt[i])) close(top.find((t) => t.id === prompt[i])!.logprob, r.promptLogprobs![i], 1e-6, 'alternative');
      }
      // generated tokens get log-probs only when asked for them too
      assert.equal(r.logprobs!.length, 2);
      gen.dispose();
    }
  });

  test('the whole prompt is scored though the prefix cache holds its start, and other requests are unchanged', async () => {
    const gen = await loadGenerator(fixture('llama-tiny'), { maxBatch: 4, prefillChunk: 16 });
    const plain = await gen.generateIds([prompt], { maxNewTokens: 4, stopAtEos: false });
    assert.equal(plain[0].promptLogprobs, undefined);
    assert.equal(plain[0].logprobs, undefined);
    const [scored, other] = await gen.generateIds([prompt, prompt.slice(0, 20)], { maxNewTokens: 4, stopAtEos: false, promptLogprobs: true });
    assert.deepEqual(scored.ids, plain[0].ids);
    assert.equal(scored.logprobs, undefined);
    scored.promptLogprobs!.forEach((lp, i) => close(lp, m.prompt_logprobs[i], 1e-4, `token ${i}`));
    other.promptLogprobs!.forEach((lp, i) => close(lp, m.prompt_logprobs[i], 1e-4, `short prompt token ${i}`));
    // a request beside one that asks for log-probs gets none (nor in its events)
    const events: TokenEvent[] = [];
    const [, [quiet]] = await Promise.all([
      gen.generateIds([prompt], { maxNewTokens: 3, stopAtEos: false, logprobs: true }),
      gen.generateIds([prompt.slice(0, 9)], { maxNewTokens: 3, stopAtEos: false, onToken: (e) => events.push(e) }),
    ]);
    assert.equal(quiet.logprobs, undefined);
    assert.ok(events.length === 3 && events.every((e) => e.logprob === undefined), JSON.stringify(events));
    gen.dispose();
  });

  test('prompt log-probs are refused by name where they cannot be given', async () => {
    const gen = await loadGenerator(fixture('llama-tiny'));
    await assert.rejects(gen.generateIds([prompt], { promptLogprobs: 'yes' as unknown as boolean }), badArgument);
    const s = gen.session();
    await assert.rejects(s.send(prompt, { promptLogprobs: true }), /session turn/);
    gen.dispose();
    const t5 = await loadGenerator(fixture('t5-tiny'));
    await assert.rejects(t5.generateIds([[5, 6, 7]], { promptLogprobs: true }), /decoder-only/);
    t5.dispose();
  });
});

describe('perplexity', () => {
  test('windows are Hugging Face\'s', () => {
    assert.deepEqual(windows(10, 4, 2), [{ begin: 0, end: 4, from: 1 }, { begin: 2, end: 6, from: 2 }, { begin: 4, end: 8, from: 2 }, { begin: 6, end: 10, from: 2 }]);
    assert.deepEqual(windows(7, 3, 3), [{ begin: 0, end: 3, from: 1 }, { begin: 3, end: 6, from: 1 }, { begin: 6, end: 7, from: 1 }]);
    assert.deepEqual(windows(5, 8, 4), [{ begin: 0, end: 5, from: 1 }]);
  });

  for (const name of ['llama-tiny', 'gpt2-tiny']) {
    test(`${name}: the sliding-window perplexity of Hugging Face for each context and stride`, async () => {
      const m = ref.models[name];
      const gen = await loadGenerator(fixture(name), { maxBatch: 3 });
      const ids = gen.tokenizer.encode(readFileSync(TEXT, 'utf8'));
      assert.deepEqual(ids, m.ids);
      for (const run of m.runs) {
        const r = await perplexity(gen, ids, { context: run.context ?? undefined, stride: run.stride ?? undefined });
        assert.deepEqual([r.context, r.stride, r.scored, r.tokens], [...run.resolved, run.scored, m.tokens]);
        close(r.nll, run.nll, 1e-5 * run.nll, `${name} ${run.resolved} nll`);
      }
      await assert.rejects(perplexity(gen, ids, { context: 100_000 }), badArgument);
      await assert.rejects(perplexity(gen, ids, { context: 10, stride: 11 }), badArgument);
      await assert.rejects(perplexity(gen, ids.slice(0, 1)), badArgument);
      gen.dispose();
    });
  }

  test('peregrine perplexity prints it, and refuses a missing file in one line', () => {
    const run = ref.models['llama-tiny'].runs[1];
    const r = spawnSync(process.execPath, [CLI, 'perplexity', '-m', fixture('llama-tiny'), '--file', TEXT, '--context', '96', '--stride', '40', '--json', '-d', 'cpu'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    close(out.nll, run.nll, 1e-5 * run.nll, 'nll');
    assert.equal(out.scored, run.scored);
    const text = spawnSync(process.execPath, [CLI, 'perplexity', '-m', fixture('llama-tiny'), '--file', TEXT, '--context', '33', '--stride', '33', '-d', 'cpu'], { encoding: 'utf8' });
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /^perplexity \d+\.\d{4} \(mean NLL [\d.]+ nats\) over 739 tokens of 763: 24 windows of at most 33 tokens, stride 33\n$/);
    const missing = spawnSync(process.execPath, [CLI, 'perplexity', '-m', fixture('llama-tiny'), '--file', join(FIXTURES, 'nope.txt'), '-d', 'cpu'], { encoding: 'utf8' });
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /^peregrine: error: cannot read --file .*nope\.txt: ENOENT\n$/);
  });
});
