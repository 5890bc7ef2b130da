// out = act(x w^T + bias): our GEMV kernel for 1 row (decode, bandwidth-bound), cuBLASLt beyond (from 2 rows its
// time is flat where the GEMV's grows with the rows: docs/benchmarks.md, "Every kernel family against the roofline")
// (with its bias / GELU epilogues; the other activations run as a separate bias+activation kernel). The
// fused forms put a pre-norm block's LayerNorm or RMSNorm in front of the GEMM and the residual add behind it.
// Batch-invariant mode (c.batchInvariant) runs every row count through the GEMV, 8 rows per block row: a
// row's sums then go in one order whatever else is in the pass, where cuBLASLt's algorithm (and the switch
// to it) depends on the row count. Quantized weights go to qlinear.ts.
import { fail } from '../../errors.js';
import { isQuant, type Activation, type Norm, type Tensor } from '../../ops/backend.js';
import { ACT_CODE, activateAfter, biasActivate, gatedActivation } from './activation.js';
import { EPILOGUE } from './blas.js';
import type { CudaContext } from './context.js';
import { layerNorm } from './layernorm.js';
import { quantGatedLinearResidual, quantLinear, quantNormLinear } from './qlinear.js';
import { ptr, sfx } from './tensor.js';

export const GEMV_MAX_ROWS = 1;

/**
 * Warps per output row of a GEMV (kernels/gemv.cu, quant.cu, mmvq.cu) whose lanes make `loads` loads per weight row
 * (16-byte vectors, or 32-weight units): enough that a lane makes at most 8 per round, and enough blocks to fill the GPU.
 */
export function warpsPerRow(c: CudaContext, N: number, loads: number): number {
  let wpr = 1;
  while (wpr < 8 && Math.ceil(loads / (32 * wpr)) > 8) wpr *= 2;
  while (wpr < 8 && Math.ceil(N / (8 / wpr)) < 2 * c.sms) wpr *= 2;
  return wpr;
}

type Variant = 'gemv' | 'norm_gemv' | 'res_gemv';

function gemv(c: CudaContext, variant: Variant, out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, act: Activation, n: number,
  norm: Norm | null = null): void {
  const [N, K] = w.shape;
  const s = sfx(w.dtype);
  const m = n <= 1 ? 1 : n <= 2 ? 2 : n <= 4 ? 4 : 8;
  const groups = Math.ceil(n / m);
  if (groups > 65535) fail('bad-argument', `batch-invariant linear layers take at most ${65535 * m} rows per pass, got ${n}; lower --prefill-chunk`);
  const tail = variant === 'res_gemv' ? `${m}_${s}` : `${m}_${s}_${out.dtype === w.dtype ? s : 'f32out'}`;
  const vector = w.dtype === 'f32' ? 4 : 8;
  const wpr = warpsPerRow(c, N, K % vector === 0 ? K / vector : K);
  c.kernels.get('gemv', variant, tail).launch(c.stream, Math.ceil(N / (8 / wpr)), groups, 1, 256, 0,
    ptr(out), ptr(x), ptr(w), ptr(bias), ACT_CODE[act], N, K, wpr, ptr(norm?.gamma ?? null), ptr(norm?.beta ?? null), norm?.eps ?? 0, n,
    norm?.kind === 'rms' ? 1 : 0);
}

export function linear(c: CudaContext, out: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, act: Activation, n: number, accumulate = false): void {
  if (n === 0) return;
  if (isQuant(w.dtype)) return quantLinear(c, out, x, w, bias, act, n, accumulate);
  const [N, K] = w.shape;
  if (n <= GEMV_MAX_ROWS || c.batchInvariant) return gemv(c, accumulate ? 'res_gemv' : 'gemv', out, x, w, bias, act, n);
  // cuBLASLt reads an epilogue's bias as the output's type: a 16-bit bias under f32 out (an LM head with
  // final_logits_bias, a classifier head writing f32 logits) is added after the GEMM by a kernel reading it as it is
  if (bias && out.dtype !== w.dtype) {
    if (accumulate) fail('bad-argument', `a linear layer with a ${w.dtype} bias cannot accumulate into ${out.dtype}`);
    c.blas.matmul(ptr(out), out.dtype, ptr(x), ptr(w), 0, EPILOGUE.DEFAULT, n, N, K, w.dtype, false);
    return biasActivate(c, out, bias, act, n, N);
  }
  c.blas.matmul(ptr(out), out.dtype, ptr(x), ptr(w), ptr(bias), epilogueFor(act, bias !== null), n, N, K, w.dtype, accumulate);
  activateAfter(c, out, act, n, N);
}

/** cuBLASLt's epilogue for a bias and an activation: the bias, and GELU where it is the tanh approximation (gelu_new). */
export function epilogueFor(act: Activation, hasBias: boolean): number {
  if (act === 'gelu_tanh') return hasBias ? EPILOGUE.GELU_BIAS : EPILOGUE.GELU;
  return hasBias ? EPILOGUE.BIAS : EPILOGUE.DEFAULT;
}

export function normLinear(c: CudaContext, out: Tensor, x: Tensor, norm: Norm, w: Tensor, bias: Tensor | null,
  act: Activation, n: number, scratch: Tensor): void {
  if (n === 0) return;
  if (isQuant(w.dtype)) return quantNormLinear(c, out, x, norm, w, bias, act, n, scratch);
  if (n <= GEMV_MAX_ROWS || c.batchInvariant) return gemv(c, 'norm_gemv', out, x, w, bias, act, n, norm);
  layerNorm(c, scratch, x, norm.gamma, norm.beta, norm.eps, n, norm.kind === 'rms');
  linear(c, out, scratch, w, bias, act, n);
}

export function linearResidual(c: CudaContext, residual: Tensor, x: Tensor, w: Tensor, bias: Tensor | null, n: number, _scratch: Tensor): void {
  // the GEMV adds into the residual in place; cuBLASLt does it with beta = 1 and C = D = residual
  linear(c, residual, x, w, bias, 'none', n, true);
}

/** residual += gatedActivation(x) w^T + bias; over quantized weights the int8 GEMV gates x as it quantizes it. */
export function gatedLinearResidual(c: CudaContext, residual: Tensor, x: Tensor, act: Activation, w: Tensor, bias: Tensor | null, n: number, gated: Tensor,
  _product: Tensor): void {
  if (n === 0) return;
  if (isQuant(w.dtype) && quantGatedLinearResidual(c, residual, x, act, w, bias, n)) return;
  gatedActivation(c, gated, x, act, n);
  linear(c, residual, gated, w, bias, 'none', n, true);
}
