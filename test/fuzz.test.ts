// The fuzz targets (test/fuzz/) with fixed seeds and a bounded number of cases; `npm run fuzz` runs the
// same properties with random seeds for as long as it is given.
import fc from 'fast-check';
import { describe, test } from 'node:test';
import { targets } from './fuzz/targets.js';

const SEED = 20_260_701;

describe('fuzz (fixed seeds)', () => {
  for (const t of targets()) {
    test(`${t.name}: ${t.quick} cases`, async () => {
      await fc.assert(fc.asyncProperty(t.arbitrary, (input) => t.check(input)), { seed: SEED, numRuns: t.quick });
    });
  }
});
