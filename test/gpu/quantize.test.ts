// Models quantized at load (--quantize int8: the blocks' linear layers as Q8_0; int4: as grouped int4; fp8: E4M3) on the GPU, their
// weights staying quantized there, against the CPU backend running the same quantization (which dequantizes a row at a time): fp32
// within 1e-3 with identical greedy tokens, fp16 and bf16 within 3e-2 (passes of up to 8 rows round the activations
// to int8 per 32 values for the integer GEMV, as test/gpu/gguf.test.ts explains).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { CudaBackend } from '../../src/backends/cuda/backend.js';
import { ptr } from '../../src/backends/cuda/tensor.js';
import { smoothQuant } from '../../src/engine/smoothquant.js';
import { loadGenerator } from '../../src/index.js';
import { f32ToBf16Bits, f32ToF16Bits, type StorageDType } from '../../src/loaders/dtypes.js';
import { quantizeTarget, quantizeWeight } from '../../src/loaders/quantize.js';
import { seededRandom } from '../../src/ops/rng.js';
import { assertClose } from '../helpers/close.js';
import { fixture, reference } from '../helpers/fixtures.js';
import { allLogits } from '../helpers/logits.js';
import { noGpu, q8_0Blocks } from './helpers.js';

const skip = noGpu();
const TOL = { f32: 1e-3, f16: 3e-2, bf16: 3e-2 } as const;
/** E4M3 activations (3 mantissa bits) against the CPU's unrounded ones */
const FP8_TOL = 0.1;

interface Ref { prompts: { ids: number[] }[]; greedy: { ids: number[] }[] }

/** `values` as stored bytes of `dtype`. */
function stored(values: Float32Array, dtype: StorageDType): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(values.slice().buffer);
  const bits = Uint16Array.from(values, (v) => (dtype === 'F16' ? f32ToF16Bits(v) : f32ToBf16Bits(v)));
  return new Uint8Array(bits.buffer);
}

describe('quantizing weights on the GPU as they load', { skip: skip ?? false }, () => {
  test('Q8_0 blocks from a file are rearranged into the GPU layout as they upload, every byte kept', () => {
    const b = new CudaBackend('f16');
    try {
      const rand = seededRandom(5);
      // K = 1600 (GPT-2 1.5B's width): rows that are not whole 256-weight super-blocks
      for (const [rows, cols] of [[3, 32], [17, 1600]]) {
        const blocks = Uint8Array.from({ length: (rows * cols * 34) / 32 }, () => Math.floor(rand() * 256));
        const t = b.weight({ bytes: blocks, dtype: 'Q8_0' }, [rows, cols], false, true);
        assert.equal(t.dtype, 'q8_0');
        const device = new Uint8Array(blocks.length);
        b.ctx.driver.call('cuMemcpyDtoH', device, ptr(t), device.length);
        assert.notDeepEqual(device, blocks, 'the GPU holds Q8_0 in its own layout');
        assert.deepEqual(q8_0Blocks(device), blocks);
      }
    } finally {
      b.dispose();
    }
  });


  test('Q8_0 blocks, grouped int4 and FP8 bit for bit as the host quantizer (the reference) makes them: the gguf fixture, random F32/F16/BF16 weights, stored transposed', () => {
    const b = new CudaBackend('f16');
    try {
      const fixtureRows = reference<{ rows: number; cols: number; values: number[] }>('quant', 'quantize.json');
      const rand = seededRandom(11), rows = 96, cols = 256;
      const cases = [
        { what: 'fixture', values: Float32Array.from(fixtureRows.values), shape: [fixtureRows.rows, fixtureRows.cols], dtype: 'F32' as const, transpose: false },
        ...(['F32', 'F16', 'BF16'] as const).flatMap((dtype) => [false, true].map((transpose) => ({
          what: `${dtype}${transpose ? ' transposed' : ''}`, dtype, transpose, shape: [rows, cols],
          values: Float32Array.from({ length: rows * cols }, (_, i) => (rand() - 0.5) * (i % 97 === 0 ? 40 : 0.1)),
        }))),
      ];
      for (const c of cases) for (const asked of ['Q8_0', 'Q4_G32', 'Q4_G64', 'Q4_G128', 'FP8'] as const) {
        // int4 in groups the rows hold (the fixture's rows are 64 wide), as a load picks them
        const type = quantizeTarget(c.shape, asked, c.what);
        const src = { bytes: stored(c.values, c.dtype), dtype: c.dtype };
        const want = quantizeWeight(src, c.shape, c.transpose, type).bytes;
        const t = b.quantizedWeight(src, c.shape, c.transpose, type);
        assert.equal(t.dtype, type.toLowerCase());
        const device = new Uint8Array(want.length);
        b.ctx.driver.call('cuMemcpyDtoH', device, ptr(t), device.length);
        const got = type === 'Q8_0' ? q8_0Blocks(device) : device;
        const diff = got.findIndex((v, i) => v !== want[i]);
        assert.equal(diff, -1, `${c.what} as ${type}: byte ${diff} is ${got[diff]}, the host quantizer's ${want[diff]}`);
      }
    } finally {
      b.dispose();
    }
  });
});

/**
 * The model at `dir` loaded with `quantize` on the GPU in each dtype against the CPU's logits (TOL) and, in fp32, its
 * greedy tokens for 12 sequences (past the GEMV's 8 rows); `kept` says which weights must stay quantized (8: four
 * matrices of each of two layers). fp8 rounds the activations of passes of more than one row to E4M3 on the GPU (the
 * CPU keeps them), so its prompts land within FP8_TOL and its tokens are not compared (test/gpu/quant.test.ts checks
 * that path layer by layer against the same rounding on the CPU).
 */
async function matchesCpu(dir: string, ref: Ref, quantize: 'int8' | 'int4' | 'fp8' | undefined, kept: (dtype: string) => boolean): Promise<void> {
  const cpu = await loadGenerator(dir, { device: 'cpu', quantize });
  const want: Float32Array[] = [];
  for (const p of ref.prompts) want.push(await allLogits(cpu, p.ids));
  const many = Array.from({ length: 12 }, (_, i) => ref.greedy[i % ref.greedy.length].ids);
  const tokens = await cpu.generateIds(many, { maxNewTokens: 16, stopAtEos: false });
  cpu.dispose();
  for (const dtype of ['f32', 'f16', 'bf16'] as const) {
    const gpu = await loadGenerator(dir, { device: 'cuda', dtype, quantize });
    try {
      assert.equal(gpu.model.weights().filter((t) => kept(t.dtype)).length, 8, 'four matrices of each of two layers stay quantized on the GPU');
      for (let i = 0; i < ref.prompts.length; i++) {
        const tol = quantize === 'fp8' && ref.prompts[i].ids.length > 1 ? FP8_TOL : TOL[dtype];
        assertClose(await allLogits(gpu, ref.prompts[i].ids), want[i], tol, `${dtype}, prompt ${i}`);
      }
      if (dtype === 'f32' && quantize !== 'fp8') {
        const got = await gpu.generateIds(many, { maxNewTokens: 16, stopAtEos: false });
        got.forEach((r, i) => assert.deepEqual(r.ids, tokens[i].ids, `sequence ${i}`));
      }
    } finally {
      gpu.dispose();
    }
  }
}

for (const name of ['llama-tiny', 'gpt2-wide']) for (const quantize of ['int8', 'int4', 'fp8'] as const) {
  describe(`${name} quantized at load (${quantize}) on the GPU`, { skip: skip ?? false }, () => {
    test('logits as the CPU computes them, in fp32, fp16 and bf16; greedy tokens identical in fp32 (not fp8); a batch of 12 through the GEMM', async () => {
      const kept = { int8: (d: string) => d === 'q8_0', int4: (d: string) => d.startsWith('q4_g'), fp8: (d: string) => d === 'fp8' }[quantize];
      await matchesCpu(fixture(name), reference<Ref>(name), quantize, kept);
    });
  });
}

describe('a SmoothQuant W8A8 checkpoint (peregrine quantize) on the GPU', { skip: skip ?? false }, () => {
  test('logits as the CPU computes them (activations quantized per token on both), in fp32, fp16 and bf16; a batch of 12', async () => {
    const out = mkdtempSync(join(tmpdir(), 'peregrine-sq-gpu-'));
    try {
      await smoothQuant(fixture('llama-tiny'), readFileSync(fixture('perplexity/text.txt'), 'utf8'), join(out, 'm'));
      await matchesCpu(join(out, 'm'), reference<Ref>('llama-tiny'), undefined, (d) => d === 'w8a8');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
