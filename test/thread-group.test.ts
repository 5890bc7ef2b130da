// The CPU backend's collectives (src/backends/cpu/thread-group.ts) across worker threads: the sum in rank order, the
// same bits on every rank, vectors longer than a slot, the gather of rows side by side, stages that sum apart and pass
// rows on, and a group whose rank stops or never comes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createGroup, ThreadGroup, type GroupHandle } from '../src/backends/cpu/thread-group.js';
import { seededRandom } from '../src/ops/rng.js';
import { runRanks } from './helpers/ranks.js';

const WORKER = new URL('./helpers/group-worker.js', import.meta.url);

interface Rank { data: Float32Array; stop?: boolean; timeoutMs?: number }

/** Runs one worker per rank (helpers/ranks.ts); with `cols`, each also gathers its data as rows of `cols`. */
function run(handle: GroupHandle, ranks: Rank[], rounds = 1, cols?: number): Promise<{ sum?: Float32Array; gathered?: Float32Array; received?: Float32Array[]; error?: string; exit?: number }[]> {
  return runRanks(WORKER, handle, ranks.map((r) => ({ data: r.data, stop: r.stop ?? false, rounds, timeoutMs: r.timeoutMs, cols })));
}

function vectors(ranks: number, n: number): Float32Array[] {
  const rand = seededRandom(7);
  return Array.from({ length: ranks }, () => Float32Array.from({ length: n }, () => (rand() - 0.5) * 10 ** Math.floor(rand() * 6)));
}

describe('ThreadGroup', () => {
  test('three ranks get the float32 sum in rank order, bit for bit the same, over vectors longer than a slot', async () => {
    const n = 2 * 1000 + 7, data = vectors(3, n);
    const handle = createGroup(3, 1000);
    const got = await run(handle, data.map((d) => ({ data: d })), 3);
    const want = new Float32Array(n);
    for (let i = 0; i < n; i++) want[i] = Math.fround(Math.fround(data[0][i] + data[1][i]) + data[2][i]);
    for (const [rank, r] of got.entries()) {
      assert.equal(r.error, undefined, `rank ${rank}: ${r.error}`);
      assert.deepEqual(new Uint32Array(r.sum!.buffer), new Uint32Array(want.buffer), `rank ${rank}`);
    }
  });

  test('allGather: three ranks\' rows side by side in rank order, on every rank, through slots that end mid-row', async () => {
    const rows = 7, cols = 301, data = vectors(3, rows * cols);
    const got = await run(createGroup(3, 1000), data.map((d) => ({ data: d })), 1, cols);
    const want = new Float32Array(3 * rows * cols);
    for (let t = 0; t < rows; t++) for (let r = 0; r < 3; r++) want.set(data[r].subarray(t * cols, (t + 1) * cols), (t * 3 + r) * cols);
    for (const [rank, r] of got.entries()) {
      assert.equal(r.error, undefined, `rank ${rank}: ${r.error}`);
      assert.deepEqual(r.gathered, want, `rank ${rank}`);
    }
  });

  test('three stages of two ranks: each stage sums over its own ranks, and rows longer than a channel go from stage to stage in order', async () => {
    const n = 2 * 100 + 3, data = vectors(6, n);
    const got = await run(createGroup(6, 100, 2), data.map((d) => ({ data: d })));
    const sums = [0, 2, 4].map((r) => Float32Array.from(data[r], (v, i) => v + data[r + 1][i]));
    for (const [rank, r] of got.entries()) {
      assert.equal(r.error, undefined, `rank ${rank}: ${r.error}`);
      const stage = Math.floor(rank / 2), prev = sums[(stage + 2) % 3];
      assert.deepEqual(r.sum, sums[stage], `rank ${rank}'s sum is its stage's`);
      assert.deepEqual(r.received, [prev, prev.map((v) => 2 * v)], `rank ${rank} received the stage before it's, in order`);
    }
  });

  test('a rank that stops ends the others\' calls with its rank named, without waiting for the timeout', async () => {
    const handle = createGroup(3, 64), data = vectors(3, 100);
    const t0 = Date.now();
    const got = await run(handle, [{ data: data[0] }, { data: data[1], stop: true }, { data: data[2] }]);
    assert.equal(got[1].exit, 3);
    for (const r of [got[0], got[2]]) assert.match(r.error ?? '', /^rank 1 of the parallel group stopped, so rank [02]'s job ends too$/);
    assert.ok(Date.now() - t0 < 30_000, 'ended by the abort, not by the 60 s timeout');
  });

  test('a stage whose rank stops ends the rank waiting for its rows, without waiting for the timeout', async () => {
    const t0 = Date.now(), data = vectors(2, 10);
    const got = await run(createGroup(2, 64, 1), [{ data: data[0] }, { data: data[1], stop: true }]);
    assert.equal(got[1].exit, 3);
    assert.match(got[0].error ?? '', /^rank 1 of the parallel group stopped, so rank 0's job ends too$/);
    assert.ok(Date.now() - t0 < 30_000, 'ended by the abort, not by the 60 s timeout');
  });

  test('a rank that never comes: the wait ends at the timeout with an error', async () => {
    const handle = createGroup(2, 16);
    const g = new ThreadGroup(handle, 0, 200);
    assert.throws(() => g.allReduce(new Float32Array(4)), /^PeregrineError: rank 0 of the parallel group waited 0.2 s for the other ranks/);
  });

  test('one rank sums nothing; bad groups and ranks are refused by name', () => {
    const x = Float32Array.from([1, 2]);
    new ThreadGroup(createGroup(1), 0).allReduce(x);
    assert.deepEqual([...x], [1, 2]);
    assert.throws(() => createGroup(0), /a whole number of ranks >= 1, got 0/);
    assert.throws(() => new ThreadGroup(createGroup(2), 2), /rank 2 is not one of the group's 2 ranks/);
    assert.throws(() => createGroup(4, 16, 3), /a group of 4 ranks splits into pipeline stages of a whole number of ranks that divides 4, got 3/);
  });
});
