// Rules every kernel in kernels/*.cu keeps, checked on the sources (no GPU needed): the host launches kernels built for
// sm_90 with programmatic dependent launch (src/backends/cuda/kernels.ts), which is only safe when a kernel waits for
// its predecessor before touching memory, so each kernel's body begins with pdl_begin() (kernels/common.cuh), except
// the GEMVs' (float and quantized), whose bodies load weights first (no kernel of a pass writes them) and then call it.
// And each kernel's parameters are the argument kinds src/backends/cuda/signatures.ts declares for it, so the host's
// launches (which write arguments by those kinds) match what the kernels read.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { KERNEL_ARGS } from '../src/backends/cuda/signatures.js';
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

/** The argument kind of a C parameter declaration (signatures.ts): pointer, 64-bit unsigned, float or 32-bit int. */
function kindOf(param: string): string {
  if (param.includes('*')) return 'p';
  const type = param.replace(/\w+$/, '');
  if (/\b(unsigned long long|long long|size_t|uint64_t)\b/.test(type)) return 'u';
  if (/\bfloat\b/.test(type)) return 'f';
  if (/\b(int|unsigned)\b/.test(type)) return 'i';
  throw new Error(`no argument kind for the parameter "${param}"`);
}

/**
 * [the fixed start of the kernel's name, its argument kinds] for each extern "C" kernel of a source: parameter lists
 * with their function-like macros (GEMV_ARGS(T, OutT)) expanded, and a name that is a parameter of the macro declaring
 * it (flash.cu's NAME) taken from that macro's uses.
 */
function kernelSignatures(source: string): [string, string][] {
  const text = source.replace(/\\\n/g, ' ');
  const macros = new Map<string, { params: string[]; body: string; at: number }>();
  for (const m of text.matchAll(/#define\s+(\w+)\(([^)]*)\)[ \t]*(.*)/g)) macros.set(m[1], { params: m[2].split(',').map((p) => p.trim()), body: m[3], at: m.index });
  const fixedStart = (name: string) => name.split('##')[0].trim().replace(/_+$/, '');
  const out: [string, string][] = [];
  for (const m of text.matchAll(/extern "C" __global__ void\s+(?:__launch_bounds__\([^)]*\)\s*)?(\w+(?:\s*##\s*\w+)*)\s*\(([^{]*)\)\s*\{/g)) {
    let params = m[2];
    for (const [name, def] of macros) params = params.replace(new RegExp(`\\b${name}\\([^)]*\\)`, 'g'), def.body);
    const kinds = params.split(',').map((p) => p.trim()).filter((p) => p).map(kindOf).join('');
    // the macro this declaration sits in: the last #define before it
    const inside = [...macros].filter(([, d]) => d.at < m.index!).sort((a, b) => b[1].at - a[1].at)[0];
    const at = inside ? inside[1].params.indexOf(m[1]) : -1;
    if (at < 0) {
      out.push([fixedStart(m[1]), kinds]);
      continue;
    }
    for (const use of text.matchAll(new RegExp(`\\b${inside[0]}\\(([^()]*)\\)`, 'g'))) {
      if (/#define\s+$/.test(text.slice(Math.max(0, use.index! - 16), use.index))) continue; // the macro's own #define
      out.push([fixedStart(use[1].split(',')[at]), kinds]);
    }
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

  test('every kernel takes the arguments signatures.ts declares for it, and every declared kernel exists', () => {
    const table = KERNEL_ARGS as Record<string, Record<string, string>>;
    const seen = new Set<string>();
    for (const f of files) {
      const family = f.replace(/\.cu$/, '');
      const found = kernelSignatures(readFileSync(join(DIR, f), 'utf8'));
      if (found.length === 0) continue;
      assert.ok(table[family], `kernels/${f} has kernels but signatures.ts has no family ${family}`);
      for (const [kernel, kinds] of found) {
        assert.equal(table[family][kernel], kinds, `kernels/${f}: ${kernel} takes "${kinds}", signatures.ts declares "${table[family][kernel]}"`);
        seen.add(`${family}/${kernel}`);
      }
    }
    for (const [family, kernels] of Object.entries(table)) {
      for (const kernel of Object.keys(kernels)) assert.ok(seen.has(`${family}/${kernel}`), `signatures.ts declares ${family}/${kernel}, which kernels/${family}.cu does not define`);
    }
    assert.ok(seen.size >= 45, `found only ${seen.size} kernels`);
  });

  test('the signature reader expands parameter macros, reads a name passed to a macro, and tells the kinds apart', () => {
    const src = [
      '#define ARGS(T) const T* x, int n, float eps, unsigned long long total',
      '#define K(T, S) \\',
      '  extern "C" __global__ void __launch_bounds__(256, 2) scale_##S(T* out, ARGS(T)) { \\',
      '    pdl_begin(); \\',
      '  }',
      '#define NAMED(T, NAME) extern "C" __global__ void NAME(T* out, unsigned flag) { pdl_begin(); }',
      'NAMED(float, tile##8##_f32) NAMED(__half, tile##8##_f16)',
      'extern "C" __global__ void plain(int* a, size_t b) {',
      '  pdl_begin();',
      '}',
    ].join('\n');
    assert.deepEqual(kernelSignatures(src), [['scale', 'ppifu'], ['tile', 'pi'], ['tile', 'pi'], ['plain', 'pu']]);
    assert.throws(() => kernelSignatures('extern "C" __global__ void f(float2 v) {}'), /no argument kind for the parameter "float2 v"/);
  });

  test('the check finds a kernel that does not begin so', () => {
    const bad = 'extern "C" __global__ void __launch_bounds__(256) f_##S(int* x) { \\\n  if (x) return; \\\n  pdl_begin(); \\\n}\n';
    const good = 'extern "C" __global__ void g(int* x) {\n  pdl_begin();\n}\n';
    assert.deepEqual(kernelBodies(bad + good).map(([n, b]) => [n, b.startsWith('pdl_begin();')]), [['f_##S', false], ['g', true]]);
  });
});
