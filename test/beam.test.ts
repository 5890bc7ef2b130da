// Beam selection on synthetic candidates: FasterTransformer's diversity rate ranks a beam's i-th best
// continuation by score + rate * i, which changes which continuations run on but never the scores.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BeamSearch } from '../src/engine/beam.js';
import { checkOptions } from '../src/engine/options.js';

const cands = (values: number[], ids: number[]) => ({ values: Float32Array.from(values), ids: Int32Array.from(ids) });

function search(diversityRate: number): BeamSearch {
  const spec = checkOptions({ numBeams: 2, numReturnSequences: 2, diversityRate, maxNewTokens: 5, eosTokenId: [99] }, 100, [], null);
  const s = new BeamSearch(spec);
  // first step: beam 0's continuations 10 (-0.1) and 11 (-0.2) become the two beams
  const first = s.step([cands([-0.1, -0.2, -0.3, -0.4], [10, 11, 12, 13])]);
  assert.deepEqual(first.tokens, [10, 11]);
  return s;
}

describe('beam search diversity rate', () => {
  // second step: beam 0 (score -0.1) has two good continuations, beam 1 (score -0.2) only weaker ones
  const step2 = [cands([-0.05, -0.06, -0.9, -1.0], [20, 21, 22, 23]), cands([-0.5, -0.6, -0.7, -0.8], [30, 31, 32, 33])];

  test('without it, the best continuations win, whichever beam they extend', () => {
    const next = search(0).step(step2);
    assert.deepEqual(next.parents, [0, 0]);
    assert.deepEqual(next.tokens, [20, 21]);
  });

  test('a negative rate makes a beam\'s second continuation pay for its rank: the other beam\'s best runs on', () => {
    const next = search(-1).step(step2);
    assert.deepEqual(next.parents, [0, 1]);
    assert.deepEqual(next.tokens, [20, 30]);
  });

  test('the rate changes the choice, not the scores', () => {
    const plain = search(0), diverse = search(-1);
    for (const s of [plain, diverse]) s.step(step2);
    // finish both at max length and compare the scores of the returned hypotheses
    const last = [cands([-0.01, -0.02, -0.03, -0.04], [40, 41, 42, 43]), cands([-0.01, -0.02, -0.03, -0.04], [50, 51, 52, 53])];
    for (const s of [plain, diverse]) {
      s.step(last);
      s.step(last);
      assert.ok(s.step(last).done);
    }
    const best = diverse.best();
    // a hypothesis's score is its summed log-probs over its length, with no diversity term in it
    const f = Math.fround;
    const sum = f(f(f(f(f(-0.2) + f(-0.5)) + f(-0.01)) + f(-0.01)) + f(-0.01));
    assert.ok(best.some((h) => h.ids[0] === 11 && h.ids[1] === 30 && Math.abs(h.score - sum / 5) < 1e-6), JSON.stringify(best));
    assert.ok(plain.best().every((h) => h.ids[0] === 10 && h.ids[1] !== 30));
  });
});
