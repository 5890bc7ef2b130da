// Numeric comparisons for tests: the error of a tensor is max |a - b| / max |b|, relative to the
// expected tensor's own magnitude (so entries near zero do not make the ratio meaningless).
import assert from 'node:assert/strict';

export function flat(x: unknown): number[] {
  return Array.isArray(x) ? (x as unknown[]).flatMap(flat) : [x as number];
}

export function maxRelError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  assert.equal(actual.length, expected.length, `length ${actual.length} != expected ${expected.length}`);
  let scale = 0, worst = 0;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i]));
    const d = Math.abs(actual[i] - expected[i]);
    worst = Number.isNaN(d) ? Infinity : Math.max(worst, d);
  }
  return worst / Math.max(scale, 1e-30);
}

export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, what: string): void {
  const err = maxRelError(actual, expected);
  assert.ok(err <= rtol, `${what}: max relative error ${err.toExponential(2)} > ${rtol}`);
}
