// The fuzz targets (test/fuzz/) with fixed seeds and a bounded number of cases; `npm run fuzz` runs the
// same properties with random seeds for as long as it is given.
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, test } from 'node:test';
import { PeregrineError } from '../src/errors.js';
import { openModelDir } from '../src/loaders/model-dir.js';
import { assertInside, assertUserError, fsTouched, noFdLeak } from './fuzz/harness.js';
import { targets } from './fuzz/targets.js';
import { fixture } from './helpers/fixtures.js';

const SEED = 20_260_701;

describe('fuzz (fixed seeds)', () => {
  for (const t of targets()) {
    test(`${t.name}: ${t.quick} cases`, async () => {
      await fc.assert(fc.asyncProperty(t.arbitrary, (input) => t.check(input)), { seed: SEED, numRuns: t.quick });
    });
  }
});

describe('the fuzz harness catches what it is there for', () => {
  test('a path outside the directory under test, reached through the loaders\' own imports of node:fs', async () => {
    const { paths } = await fsTouched(async () => openModelDir(fixture('gpt2-tiny')).weights.close());
    assert.ok(paths.some((p) => p.endsWith('config.json')), 'the guard sees what the loader opens');
    assertInside(paths, [fixture('gpt2-tiny')]);
    const outside = await fsTouched(async () => readFileSync('/proc/self/status'));
    assert.throws(() => assertInside(outside.paths, [fixture('gpt2-tiny')]), /outside/);
  });

  test('a file descriptor left open', async () => {
    let fd = -1;
    await assert.rejects(noFdLeak(async () => { fd = openSync(fixture('gpt2-tiny/config.json'), 'r'); }), /file descriptor/);
    closeSync(fd);
  });

  test('an error that is not a PeregrineError, or a message of more than one line', () => {
    assert.throws(() => assertUserError(new TypeError('x is not a function')), /got TypeError/);
    const twoLines = new PeregrineError('bad-config', 'x');
    Object.defineProperty(twoLines, 'message', { value: 'a\rb' });
    assert.throws(() => assertUserError(twoLines), /not one line/);
    assertUserError(new PeregrineError('bad-config', 'fine'));
  });
});
