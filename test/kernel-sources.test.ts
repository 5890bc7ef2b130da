// Rules every kernel in kernels/*.cu keeps, checked on the sources (no GPU needed): the host launches kernels built for
// sm_90 with programmatic dependent launch (src/backends/cuda/kernels.ts), which is only safe when a kernel waits for
// its predecessor before touching memory, so each kernel's body begins with pdl_begin() (kernels/common.cuh), except
// the GEMVs' (float and quantized), whose bodies load weights first (no kernel of a pass writes them) and then call it.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ROOT } from './helpers/fixtures.js';

const DIR = join(ROOT, 'kernels');
/** kernel bodies that may begin by calling these device functions, which call pdl_begin() after loading weights only */
const WEIGHTS_FIRST: Record<string, string> = { 'gemv<': 'gemv.cu', 'qgemv<': 'quant.cu', 'mmvq<': 'mmvq.cu' };

/** [kernel name, the text its body begins with] for each `__global__` in a source (macro line breaks removed). */
function kernelBodies(source: string): [string, string][] {
  const text = source.replace(/\\\n/g, ' ');
  const out: [string, string][] = [];
  for (const m of text.matchAll(/__global__/g)) {
    const open = text.indexOf('{', m.index);
    const head = text.slice(m.index, open);
    const name = /(\w+(?:##\w+)*)\s*\(/.exec(head.replace(/__launch_bounds__\s*\([^)]*\)/, ''))?.[1] ?? head;
    out.push([name, text.slice(open + 1, open + 200).trimStart()]);
  }
  return out;
}

describe('kernel sources', () => {
  const files = readdirSync(DIR).filter((f) => f.endsWith('.cu'));

  test('every kernel begins with pdl_begin(), before any early return', () => {
    let kernels = 0;
    for (const f of files) {
      for (const [name, body] of kernelBodies(readFileSync(join(DIR, f), 'utf8'))) {
        kernels++;
        const ok = body.startsWith('pdl_begin();') || Object.entries(WEIGHTS_FIRST).some(([call, file]) => file === f && body.startsWith(call));
        assert.ok(ok, `kernels/${f}: ${name} begins with "${body.slice(0, 40)}..." instead of pdl_begin();`);
      }
    }
    assert.ok(kernels >= 40, `found only ${kernels} kernels`);
  });

  test('the GEMV that loads weights first then calls pdl_begin() once, before any early return or other read', () => {
    const src = readFileSync(join(DIR, 'gemv.cu'), 'utf8');
    const body = src.slice(src.indexOf('__device__ void gemv('), src.indexOf('gemv_finish<'));
    const before = body.slice(0, body.indexOf('pdl_begin();'));
    assert.equal(body.split('pdl_begin();').length, 2);
    assert.doesNotMatch(before, /return|\bx\[|load_vec\(x|gamma\[|bias\[/);
    assert.match(before, /load_vec_nc\(wr \+/);
  });

  test('the quantized GEMVs\' body (quant_gemv) loads only weights before pdl_begin(), and qgemv and mmvq only offset pointers before it', () => {
    const blocks = readFileSync(join(DIR, 'quant-blocks.cuh'), 'utf8');
    const body = blocks.slice(blocks.indexOf('__device__ __forceinline__ void quant_gemv('), blocks.indexOf('gemv_finish<T, O, M>'));
    assert.equal(body.split('pdl_begin();').length, 2);
    const before = body.slice(0, body.indexOf('pdl_begin();'));
    assert.doesNotMatch(before, /return|dot\(|\bx\w*\[|bias\[/);
    assert.match(before, /load\(first\)/);
    for (const [file, fn] of [['quant.cu', '__device__ void qgemv('], ['mmvq.cu', '__device__ void mmvq(']]) {
      const src = readFileSync(join(DIR, file), 'utf8');
      const head = src.slice(src.indexOf(fn), src.indexOf('quant_gemv<', src.indexOf(fn)));
      assert.doesNotMatch(head.slice(head.indexOf('{')), /return|\[|\*\w/, `${file}: ${fn} reads nothing before quant_gemv`);
    }
  });

  test('the check finds a kernel that does not begin so', () => {
    const bad = 'extern "C" __global__ void __launch_bounds__(256) f_##S(int* x) { \\\n  if (x) return; \\\n  pdl_begin(); \\\n}\n';
    const good = 'extern "C" __global__ void g(int* x) {\n  pdl_begin();\n}\n';
    assert.deepEqual(kernelBodies(bad + good).map(([n, b]) => [n, b.startsWith('pdl_begin();')]), [['f_##S', false], ['g', true]]);
  });
});
