// Finding libcublasLt: where it is missing, the error says how to get it (the CUDA toolkit, or the
// nvidia-cublas wheel through PEREGRINE_CUDA_LIBS); where a file is there but does not load, it names it.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadCublasLt } from '../src/backends/cuda/libs.js';
import { PeregrineError } from '../src/errors.js';

const tmp = mkdtempSync(join(tmpdir(), 'peregrine-libs-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function failure(dirs: string[]): PeregrineError {
  try {
    loadCublasLt(dirs, []);
  } catch (err) {
    assert.ok(err instanceof PeregrineError, String(err));
    return err;
  }
  return assert.fail('libcublasLt loaded from an empty search');
}

test('a missing libcublasLt names the CUDA toolkit, the nvidia-cublas wheel and PEREGRINE_CUDA_LIBS', () => {
  const err = failure([join(tmp, 'nothing-here')]);
  assert.equal(err.code, 'device');
  assert.doesNotMatch(err.message, /\n/);
  assert.match(err.message, /CUDA toolkit/);
  assert.match(err.message, /pip install nvidia-cublas/);
  assert.match(err.message, /PEREGRINE_CUDA_LIBS/);
});

test('a libcublasLt that does not load is named in the error', () => {
  const dir = join(tmp, 'broken');
  mkdirSync(dir);
  writeFileSync(join(dir, 'libcublasLt.so.12'), 'not a library');
  assert.match(failure([dir]).message, /broken\/libcublasLt\.so\.12/);
});
