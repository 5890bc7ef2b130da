// The scheduler on the CPU: concurrent calls on one generator (random arrivals, mixed options, a pool too
// small for the load) each get exactly what they get alone; cancelled streams free their blocks; shared
// prompt prefixes are computed once; sessions keep their cache between turns.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { seededRandom } from '../src/ops/rng.js';
import { loadGenerator, PeregrineError, type GenerationResult, type LoadOptions, type TextGenerator } from '../src/index.js';
import { writeRandomGpt2 } from './helpers/random-model.js';
import { FIXTURES } from './helpers/fixtures.js';
import { PROMPTS, workload } from './helpers/generation.js';

const root = mkdtempSync(join(tmpdir(), 'peregrine-sched-'));
after(() => rmSync(root, { recursive: true, force: true }));
const model = join(root, 'gpt2');
writeRandomGpt2(model, { hidden: 32, layers: 2, heads: 4, positions: 128 }, join(FIXTURES, 'tokenizers', 'gpt2'));

const load = (o: LoadOptions = {}) => loadGenerator(model, { device: 'cpu', ...o });

/** Each request alone, one after another, on a fresh generator. */
async function alone(gen: TextGenerator, work: ReturnType<typeof workload>): Promise<GenerationResult[]> {
  const out: GenerationResult[] = [];
  for (const w of work) out.push(await gen.generate(w.prompt, w.options));
  return out;
}

/** The same requests arriving at random times (seeded) within `spreadMs`, all in flight together. */
async function together(gen: TextGenerator, work: ReturnType<typeof workload>, seed: number, spreadMs = 40): Promise<GenerationResult[]> {
  const rand = seededRandom(seed);
  return Promise.all(work.map(async (w) => {
    if (spreadMs > 0) await new Promise((resolve) => setTimeout(resolve, Math.floor(rand() * spreadMs)));
    return gen.generate(w.prompt, w.options);
  }));
}

function same(got: GenerationResult[], want: GenerationResult[]): void {
  got.forEach((r, i) => assert.deepEqual(r, want[i], `request ${i}`));
}

describe('concurrent calls on one generator', () => {
  test('64 requests with different options, arriving at random times, each get exactly the tokens they get alone', async () => {
    const work = workload();
    const want = await alone(await load(), work);
    assert.ok(want.some((r) => r.finishReason === 'stop') && want.some((r) => r.sequences) && want.some((r) => r.logprobs), 'the workload covers stops, beams and log-probs');
    // few slots and small prefill chunks: requests queue, prompts take several passes, blocks of 4 tokens
    const gen = await load({ maxBatch: 6, prefillChunk: 16, blockSize: 4 });
    same(await together(gen, work, 1), want);
    const s = gen.scheduler.stats();
    assert.equal(s.blocksUsed, 0, 'every block came back');
    assert.equal(s.running + s.waiting, 0);
  });

  test('a pool too small for the load preempts the newest sequences and still gives identical tokens', async () => {
    const work = workload(24);
    const want = await alone(await load(), work);
    // preempted caches swapped out to the host and back; then, with no swap space, recomputed
    for (const swapSpace of [undefined, 0]) {
      const gen = await load({ maxBatch: 8, prefillChunk: 32, blockSize: 4, kvBlocks: 40, swapSpace });
      // all at once: with arrivals spread in time, whether the pool fills depends on the machine's speed
      same(await together(gen, work, 2, 0), want);
      const s = gen.scheduler.stats();
      assert.ok(s.preemptions > 0, 'the pool ran out at least once');
      if (swapSpace === 0) assert.equal(s.swapOuts, 0);
      else assert.ok(s.swapOuts > 0, 'a preempted cache was swapped out');
      assert.equal(s.swapBytes, 0, 'every swapped cache came back');
      assert.equal(s.blocksUsed, 0);
    }
  });

  test('two streams read in turn, and generate() calls in Promise.all', async () => {
    const gen = await load();
    const [a, b] = [{ maxNewTokens: 10, temperature: 1, seed: 3 }, { maxNewTokens: 14 }];
    const wantA = await gen.generate(PROMPTS[0], a), wantB = await gen.generate(PROMPTS[1], b);
    const sa = gen.stream(PROMPTS[0], a), sb = gen.stream(PROMPTS[1], b);
    const ids: number[][] = [[], []];
    for (let done = [false, false]; !done[0] || !done[1];) {
      for (const [i, s] of [sa, sb].entries()) {
        if (done[i]) continue;
        const e = await s.next();
        if (e.done) done[i] = true;
        else ids[i].push(e.value.id);
      }
    }
    assert.deepEqual(ids, [wantA.ids, wantB.ids]);
    const [ra, rb] = await Promise.all([gen.generate(PROMPTS[0], a), gen.generate(PROMPTS[1], b)]);
    assert.deepEqual([ra, rb], [wantA, wantB]);
  });
});

describe('cancellation', () => {
  test('breaking out of a stream frees its blocks; the others finish unharmed', async () => {
    const gen = await load();
    const want = await gen.generate(PROMPTS[1], { maxNewTokens: 20 });
    const other = gen.generate(PROMPTS[1], { maxNewTokens: 20 });
    let n = 0;
    for await (const _ of gen.stream(PROMPTS[3], { maxNewTokens: 50 })) if (++n === 3) break;
    assert.deepEqual(await other, want);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(gen.scheduler.stats().blocksUsed, 0);
    assert.equal(gen.scheduler.stats().running, 0);
  });

  test('an AbortSignal cancels generate() with its reason, before or during generation', async () => {
    const gen = await load();
    const ac = new AbortController();
    const p = gen.generate(PROMPTS[3], { maxNewTokens: 60, signal: ac.signal, onToken: (e) => { if (e.id >= 0) ac.abort(new Error('enough')); } });
    await assert.rejects(p, /enough/);
    await assert.rejects(gen.generate('x', { signal: AbortSignal.abort(new Error('already')) }), /already/);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(gen.scheduler.stats().blocksUsed, 0);
  });
});

describe('shared prompts', () => {
  test('identical prompt prefixes are computed once (prefix cache over full blocks)', async () => {
    const gen = await load();
    const long = PROMPTS[3];
    const n = gen.tokenizer.encode(long).length;
    const first = await gen.generate(long, { maxNewTokens: 4 });
    const before = gen.scheduler.stats().prefillTokens;
    const again = await gen.generate(long, { maxNewTokens: 4 });
    const computed = gen.scheduler.stats().prefillTokens - before;
    assert.deepEqual(again, first);
    assert.ok(computed <= n - Math.floor((n - 1) / 16) * 16, `the second run computed ${computed} of ${n} prompt tokens`);
    // a prompt sharing only the beginning reuses the blocks of that beginning
    const shorter = PROMPTS[4];
    const m = gen.tokenizer.encode(shorter).length;
    const b2 = gen.scheduler.stats().prefillTokens;
    await gen.generate(shorter, { maxNewTokens: 2 });
    assert.ok(gen.scheduler.stats().prefillTokens - b2 < m, 'the shared beginning came from the cache');
  });
});

describe('sessions', () => {
  test('each turn prefills only its new tokens, and gives what one call over the whole conversation gives', async () => {
    const gen = await load();
    const s = gen.session();
    const t1 = await s.send(PROMPTS[0], { maxNewTokens: 6 });
    const held = [...s.tokens];
    assert.equal(s.cachedTokens, held.length - 1);
    const before = gen.scheduler.stats().prefillTokens;
    const t2 = await s.send(' and then', { maxNewTokens: 6 });
    const added = gen.tokenizer.encode(' and then', false).length;
    assert.equal(gen.scheduler.stats().prefillTokens - before, added + 1, 'the turn computed its own tokens and the last reply token');
    const [whole] = await gen.generateIds([[...held, ...gen.tokenizer.encode(' and then', false)]], { maxNewTokens: 6 });
    assert.deepEqual(t2.ids, whole.ids);
    assert.equal(t1.ids.length, 6);
    s.close();
    await new Promise((resolve) => setImmediate(resolve));
    // blocks named by the prefix cache may stay cached, but nobody holds them
    assert.equal(gen.scheduler.stats().blocksUsed, 0);
    await assert.rejects(s.send('more'), (e: unknown) => e instanceof PeregrineError && /closed/.test(e.message));
  });

  test('a turn preempted by an older request runs again and keeps the conversation intact', async () => {
    const roomy = await load({ blockSize: 4 });
    const s0 = roomy.session();
    await s0.send(PROMPTS[0], { maxNewTokens: 4 });
    const want = await s0.send(' and then', { maxNewTokens: 20 });
    const wantTokens = [...s0.tokens];
    // a pool that fits the older request and the turn only by taking the turn's blocks away
    const tight = await load({ blockSize: 4, kvBlocks: 20 });
    const s = tight.session();
    await s.send(PROMPTS[0], { maxNewTokens: 4 });
    const older = tight.generate(PROMPTS[3], { maxNewTokens: 40 });
    const turn = s.send(' and then', { maxNewTokens: 20 });
    const [, got] = await Promise.all([older, turn]);
    assert.ok(tight.scheduler.stats().preemptions > 0, 'the turn was preempted');
    assert.deepEqual(got, want);
    assert.deepEqual([...s.tokens], wantTokens);
    s.close();
    s0.close();
  });

  test('an idle session\'s cache is reclaimed before running requests are preempted, and its next turn still matches', async () => {
    const roomy = await load({ blockSize: 4 });
    const s0 = roomy.session();
    await s0.send(PROMPTS[0], { maxNewTokens: 4 });
    await s0.send(' and then', { maxNewTokens: 20 });
    const want = await s0.send(' so', { maxNewTokens: 6 });
    const tight = await load({ blockSize: 4, kvBlocks: 22 });
    const s = tight.session();
    await s.send(PROMPTS[0], { maxNewTokens: 4 });
    // the older request outgrows the pool once the turn is over: the session's idle cache goes, nobody is preempted
    await Promise.all([tight.generate(PROMPTS[3], { maxNewTokens: 40 }), s.send(' and then', { maxNewTokens: 20 })]);
    assert.equal(tight.scheduler.stats().preemptions, 0);
    assert.equal(s.cachedTokens, 0, 'the idle session gave its blocks back');
    assert.deepEqual(await s.send(' so', { maxNewTokens: 6 }), want);
    s.close();
    s0.close();
  });

  test('a session has a length limit, refuses beams, and runs one turn at a time', async () => {
    const gen = await load();
    const s = gen.session({ maxTokens: 20 });
    await assert.rejects(s.send(PROMPTS[1], { maxNewTokens: 4 }), (e: unknown) => e instanceof PeregrineError && /beyond its limit of 20/.test(e.message));
    await assert.rejects(s.send('hi', { numBeams: 2 }), /num beams must be 1/);
    const first = s.send('hi', { maxNewTokens: 3 });
    await assert.rejects(s.send('again', { maxNewTokens: 3 }), /already generating/);
    await first;
    assert.throws(() => gen.session({ maxTokens: 10_000 }), /session max tokens/);
    s.close();
  });
});

describe('a dropped session', () => {
  test('a session nobody holds any more gives its cache back when it is garbage-collected', () => {
    // a child process with --expose-gc: the session is created in a function scope and never closed
    const index = new URL('../src/index.js', import.meta.url).href;
    const script = `
      import { loadGenerator } from ${JSON.stringify(index)};
      const gen = await loadGenerator(${JSON.stringify(model)}, { device: 'cpu', blockSize: 4 });
      await (async () => { const s = gen.session(); await s.send('Once upon a time', { maxNewTokens: 6 }); })();
      const held = gen.scheduler.stats().blocksUsed;
      let after = held;
      for (let i = 0; i < 50 && after > 0; i++) {
        globalThis.gc();
        await new Promise((resolve) => setTimeout(resolve, 10));
        after = gen.scheduler.stats().blocksUsed;
      }
      console.log(JSON.stringify({ held, after }));`;
    const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, PEREGRINE_DEVICE: 'cpu' } });
    assert.equal(r.status, 0, r.stderr);
    const { held, after: left } = JSON.parse(r.stdout.trim().split('\n').pop()!);
    assert.ok(held > 0, 'the idle session held blocks');
    assert.equal(left, 0, 'its blocks came back once it was collected');
  });
});

describe('a failing consumer', () => {
  test('an onToken that throws fails its own call only', async () => {
    const gen = await load();
    const want = await gen.generate(PROMPTS[1], { maxNewTokens: 12 });
    const [bad, good] = await Promise.allSettled([
      gen.generate(PROMPTS[0], { maxNewTokens: 12, onToken: () => { throw new Error('consumer bug'); } }),
      gen.generate(PROMPTS[1], { maxNewTokens: 12 }),
    ]);
    assert.equal(bad.status, 'rejected');
    assert.match((bad as PromiseRejectedResult).reason.message, /consumer bug/);
    assert.deepEqual((good as PromiseFulfilledResult<GenerationResult>).value, want);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(gen.scheduler.stats().blocksUsed, 0);
  });
});
