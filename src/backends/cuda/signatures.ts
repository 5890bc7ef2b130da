// Every kernel's parameters, declared once, as driver.ts declares the driver's functions: family (the .cu file of
// kernels/) -> kernel -> argument kinds (p = device pointer or null, i = 32-bit int, f = float, u = 64-bit unsigned).
// A kernel is named by the fixed start of its extern "C" name; a launcher adds the variant (dtype, tiling, row count),
// `attend_decode` + `_f16`. test/kernel-sources.test.ts reads each declaration in kernels/*.cu and checks that this
// table gives it the same kinds, so a launch can never pass arguments the kernel does not take.

/** kernels/attention.cu's T5 position bias (BIAS_PARAMS): bias, bias positions, buckets, max distance, bidirectional */
const BIAS = 'ppiii';
/** kernels/gemv.cu's GEMV_ARGS: out, x, w, bias, act, N, K, warps a weight row, gamma, beta, eps, rows, rms */
const GEMV = 'ppppiiiippfii';

export const KERNEL_ARGS = {
  activation: {
    bias_act: 'ppiiu',
    bias_act_vec: 'ppiii',
    bias_act_f32out: 'ppiiu',
    gated_act: 'ppiiu',
  },
  attention: {
    write_kv: 'ppppppiiii',
    attend_decode: 'pppppppiiifiiiipp',
    attend_decode_bias: 'pppppppiiifiiiipp' + BIAS,
    attend_cross: 'pppppppiiifii',
    attend_prefill: 'ppppppppiiifiii' + BIAS,
    copy_blocks: 'ppiii',
  },
  convert: { convert: 'ppiii' },
  dequant: {
    dequant: 'pppiiii',
    q8_0_from_blocks: 'ppu',
    quantize_weight_q8_0: 'ppu',
    quantize_weight_q4_g: 'ppii',
  },
  embedding: { embed: 'pppppppi', embed_slice: 'pppiii' },
  flash: { flash_prefill: 'ppppppppiifiii' },
  fp8: {
    fp8_epilogue: 'pppppiiii',
    quantize_fp8_tokens: 'pppi',
    quantize_weight_fp8: 'ppii',
  },
  gemv: { gemv: GEMV, norm_gemv: GEMV, res_gemv: GEMV },
  layernorm: {
    layernorm: 'ppppfii',
    layernorm_warp: 'ppppfiii',
    add_bias_residual_layernorm: 'pppppppfi',
    add_bias_residual_layernorm_warp: 'pppppppfii',
  },
  mmvq: {
    mmvq: 'pppppiiiiii',
    quantize_q8: 'pppi',
    quantize_q8_perm: 'ppppii',
    quantize_tokens: 'ppppi',
    w8a8_epilogue: 'pppppiiiii',
    norm_quantize_q8: 'pppppfii',
    gated_quantize_q8: 'pppiii',
  },
  profile: { profile_gate: 'piu' },
  qmma: {
    qmma: 'pppppiiiiii',
    qmma_finish: 'pppiiii',
  },
  quant: { qgemv: 'ppppiiiiii' },
  rotary: { rotary: 'ppppiiiifffippf' },
  rows: {
    gather_rows: 'ppppi',
    gather_cols: 'pppiu',
    mean_pool: 'ppppi',
    scatter_i32: 'ppi',
  },
  sampling: {
    process_logits: 'ppippppi',
    topk_chunks: 'ppiippii',
    topk_merge: 'ppppiiippi',
    sample_rows: 'ppippppppip',
    logprobs_merge: 'ppppiiippi',
    advance: 'ppppi',
  },
} as const satisfies Record<string, Record<string, string>>;

/** A kernels/*.cu file. */
export type KernelFamily = keyof typeof KERNEL_ARGS;
/** A kernel of family F, by the fixed start of its name. */
export type KernelOf<F extends KernelFamily> = keyof (typeof KERNEL_ARGS)[F] & string;
