// Non-finite outputs are errors, never results: a checkpoint of NaN weights generated "!!!" and exited 0.
// Generation stops the request whose logits hold a NaN or +Infinity (read back with its tokens, from the
// pass's selectCandidates status), in prefill and in decode steps, while the rest of the batch goes on;
// embeddings and classification refuse to hand out NaN. On the CPU here; test/gpu/non-finite.test.ts runs
// the same on the GPU.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CpuBackend } from '../src/backends/cpu/backend.js';
import { loadEmbedder, loadGenerator, PeregrineError, type GenerateOptions } from '../src/index.js';
import { CANDIDATE_SCRATCH, MAX_CANDIDATES, MODE, REQ, REQUEST_STRIDE } from '../src/ops/requests.js';
import { writeBert, writeGpt2 } from './helpers/checkpoints.js';
import { CLI } from './helpers/fixtures.js';

const root = mkdtempSync(join(tmpdir(), 'peregrine-nan-'));
after(() => rmSync(root, { recursive: true, force: true }));
const nanGpt2 = writeGpt2(join(root, 'nan-gpt2'), {}, { nan: true }).dir;
const nanBert = writeBert(join(root, 'nan-bert'), {}, 2, { nan: true, vocab: 30522 }).dir;
const clean = writeGpt2(join(root, 'clean')).dir;
// position 10's embedding is NaN: a sequence is broken from the pass that reaches position 10 on
const POISONED = 10;
const poisoned = writeGpt2(join(root, 'poisoned'), {}, { edit: (w) => w.get('wpe.weight')!.fill(NaN, POISONED * 32, (POISONED + 1) * 32) }).dir;

/** A one-line non-finite error matching `pattern`. */
function nonFinite(pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof PeregrineError, `expected a PeregrineError, got ${(err as Error)?.stack ?? err}`);
    assert.equal(err.code, 'non-finite', err.message);
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes('\n'));
    return true;
  };
}

describe('generation stops on non-finite logits', () => {
  test('selectCandidates reports rows holding NaN or +Infinity, in every mode, and leaves padding rows alone', () => {
    const b = new CpuBackend(), V = 7;
    const modes = [{ mode: MODE.SAMPLE, temperature: 0 }, { mode: MODE.SAMPLE, temperature: 1, topK: 0 }, { mode: MODE.BEAM, candidates: 4 }, { mode: MODE.NONE }];
    const requests = new Int32Array(modes.length * REQUEST_STRIDE), f = new Float32Array(requests.buffer);
    modes.forEach((m, s) => {
      requests[s * REQUEST_STRIDE + REQ.MODE] = m.mode;
      f[s * REQUEST_STRIDE + REQ.TEMPERATURE] = m.temperature ?? 1;
      requests[s * REQUEST_STRIDE + REQ.CANDIDATES] = m.candidates ?? 0;
    });
    const rows: [number[], number][] = [
      [[0, 1, 2, 3, 4, 5, 6], 0], [[0, 1, NaN, 3, 4, 5, 6], 1], [[0, 1, 2, 3, 4, 5, Infinity], 1],
      [[-Infinity, 1, 2, 3, 4, 5, -Infinity], 0], [Array(V).fill(-Infinity), 0], [Array(V).fill(NaN), 1],
    ];
    const n = rows.length * modes.length;
    const scores = b.buffer([n, V], 'f32'), slots = b.buffer([n], 'i32'), status = b.buffer([n], 'i32');
    b.writeInt(status, new Int32Array(n).fill(-5), n);
    const slotOf = (r: number) => r % modes.length;
    for (let r = 0; r < n; r++) b.readFloat(scores, n * V).set(rows[Math.floor(r / modes.length)][0], r * V);
    b.writeInt(slots, Int32Array.from({ length: n }, (_, r) => slotOf(r)), n);
    const seqs = { requests: b.buffer([modes.length, REQUEST_STRIDE], 'i32'), history: b.buffer([modes.length, 1], 'i32'), topP: b.buffer([modes.length], 'f32') };
    b.writeInt(seqs.requests, requests, requests.length);
    const cand = { values: b.buffer([n, MAX_CANDIDATES], 'f32'), ids: b.buffer([n, MAX_CANDIDATES], 'i32'), scratch: b.buffer([n, CANDIDATE_SCRATCH], 'i32') };
    b.selectCandidates(cand, scores, { slots, lengths: b.buffer([n], 'i32') }, seqs, n, status);
    const got = b.readInt(status, n);
    for (let r = 0; r < n; r++) {
      const want = modes[slotOf(r)].mode === MODE.NONE ? -5 : rows[Math.floor(r / modes.length)][1];
      assert.equal(got[r], want, `row ${r}: ${rows[Math.floor(r / modes.length)][0]} in mode ${JSON.stringify(modes[slotOf(r)])}`);
    }
  });

  test('a checkpoint of NaN weights: every kind of request fails with one line', async () => {
    const gen = await loadGenerator(nanGpt2, { device: 'cpu' });
    const kinds: GenerateOptions[] = [{}, { temperature: 0.8, seed: 1 }, { topK: 5, seed: 1 }, { repetitionPenalty: 1.2 }, { logprobs: true, topLogprobs: 2 }, { numBeams: 2 }];
    for (const o of kinds) {
      await assert.rejects(gen.generateIds([[1, 2, 3]], { maxNewTokens: 4, ...o }),
        nonFinite(/^the model computed non-finite logits \(NaN or infinity\) for prompt 0 at 3 tokens, so its generation stopped: the weights hold NaN or infinity, or the computation overflowed; check the checkpoint$/), JSON.stringify(o));
    }
    await assert.rejects(async () => { for await (const _ of gen.stream('a', { maxNewTokens: 4 })) { /* nothing comes */ } }, nonFinite(/non-finite logits/));
    const session = gen.session();
    await assert.rejects(session.send([4, 5], { maxNewTokens: 3 }), nonFinite(/non-finite logits/));
    assert.equal(gen.scheduler.stats().blocksUsed, 0, 'the failed requests left no blocks behind');
  });

  test('in prefill and in decode steps; only the broken request stops, the batch goes on', async () => {
    const gen = await loadGenerator(poisoned, { device: 'cpu' });
    const reference = await loadGenerator(clean, { device: 'cpu' });
    const opts = { maxNewTokens: 10, stopAtEos: false };
    const long = Array.from({ length: 12 }, (_, i) => i + 20); // passes position 10 in its prompt
    const grows = [7, 8, 9, 10, 11]; // reaches position 10 in its sixth decode step
    const short = [3, 1, 4]; // stays below position 10
    const shortOpts = { maxNewTokens: 5, stopAtEos: false };
    let drawn = 0;
    const results = await Promise.allSettled([
      gen.generateIds([long], opts),
      gen.generateIds([short], shortOpts),
      gen.generateIds([grows], { ...opts, onToken: () => drawn++ }),
    ]);
    assert.equal(results[0].status, 'rejected');
    nonFinite(/for prompt 0 at 12 tokens/)((results[0] as PromiseRejectedResult).reason);
    assert.equal(results[2].status, 'rejected');
    // the token drawn in prefill, and one per decode step over positions 5 .. 9
    nonFinite(/for prompt 0 at 11 tokens/)((results[2] as PromiseRejectedResult).reason);
    assert.equal(drawn, 6, 'tokens handed out before the broken step');
    assert.equal(results[1].status, 'fulfilled');
    const [want] = await reference.generateIds([short], shortOpts);
    assert.deepEqual((results[1] as PromiseFulfilledResult<{ ids: number[] }[]>).value[0].ids, want.ids, 'the healthy request, as on the unpoisoned model');
    // the generator goes on after the failures
    const [again] = await gen.generateIds([short], shortOpts);
    assert.deepEqual(again.ids, want.ids);
    assert.equal(gen.scheduler.stats().blocksUsed, 0);
  });
});

describe('encoders refuse non-finite outputs', () => {
  test('a checkpoint of NaN weights: embed, hidden states and classify fail with one line', async () => {
    const emb = await loadEmbedder(nanBert, { device: 'cpu' });
    // each call checks what it hands out (embed and classify leave the hidden states on the device)
    const msg = (what: string) => new RegExp(`^the model computed non-finite values \\(NaN or infinity\\) in the ${what} of input 0: the weights hold NaN or infinity, or the computation overflowed; check the checkpoint$`);
    assert.throws(() => emb.embed(['[CLS] [SEP]']), nonFinite(msg('pooled vector')));
    assert.throws(() => emb.hiddenStates(['[CLS] [SEP]']), nonFinite(msg('last hidden states')));
    assert.throws(() => emb.classify(['[CLS] [SEP]']), nonFinite(msg('classification logits')));
  });

  test('the input whose outputs are broken is named; a broken classifier fails classify only', async () => {
    const positions = writeBert(join(root, 'bert-position'), {}, 0, { edit: (w) => w.get('embeddings.position_embeddings.weight')!.fill(NaN, 5 * 32, 6 * 32) }).dir;
    const emb = await loadEmbedder(positions, { device: 'cpu' });
    assert.throws(() => emb.model.encode([Int32Array.of(2, 5, 3), Int32Array.of(2, 5, 6, 7, 8, 9, 3)], { pooling: 'mean' }), nonFinite(/last hidden states of input 1:/));
    assert.throws(() => emb.model.encode([Int32Array.of(2, 5, 6, 7, 8, 9, 3), Int32Array.of(2, 5, 3)], {}), nonFinite(/last hidden states of input 0:/));
    assert.ok(emb.model.encode([Int32Array.of(2, 5, 3)], { pooling: 'mean' }).pooled!.every(Number.isFinite), 'a short input is fine');
    const head = writeBert(join(root, 'bert-head'), {}, 2, { vocab: 30522, edit: (w) => w.get('classifier.weight')!.fill(NaN) }).dir;
    const cls = await loadEmbedder(head, { device: 'cpu' });
    assert.ok(cls.embed(['[CLS]'])[0].every(Number.isFinite));
    assert.throws(() => cls.classify(['[CLS]', '[SEP]']), nonFinite(/classification logits of input 0:/));
  });
});

describe('the CLI exits 1 with one line', () => {
  const env = { ...process.env, PEREGRINE_CACHE: join(root, 'cache'), PEREGRINE_OFFLINE: '1', PEREGRINE_DEVICE: 'cpu' };
  for (const [args, pattern] of [
    [['generate', '-m', nanGpt2, '-p', 'a', '-n', '4'], /non-finite logits/],
    [['generate', '-m', nanGpt2, '-p', 'a', 'b', '-n', '4', '--json'], /non-finite logits/],
    [['embed', '-m', nanBert, 'Hello'], /non-finite values/],
    [['classify', '-m', nanBert, 'Hello'], /non-finite values/],
  ] as [string[], RegExp][]) {
    test(args.filter((a) => !a.includes(root)).join(' '), () => {
      const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env });
      assert.equal(r.status, 1, r.stderr);
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], /^peregrine: error: /);
      assert.match(lines[0], pattern);
      assert.doesNotMatch(r.stdout, /\S/, 'nothing but the newline of an empty stream on stdout');
    });
  }
});
