// FP8 (E4M3) linear layers of more rows than the GEMV takes (src/backends/cuda/qlinear.ts fp8Matmul): x quantized to
// E4M3 per token (quantize_fp8_tokens), the product of the E4M3 weights and x by cuBLASLt's FP8 GEMM into f32
// (src/backends/cuda/blas.ts matmul in 'e4m3'), then fp8_epilogue applies x's and the weight's scales (common.cuh scaled_epilogue), the bias, the
// activation and the residual. Also the weights' quantizer (quantize_weight_fp8). Layout and reference:
// src/loaders/fp8.ts (quantizeFp8Rows, bit for bit; dequantizeFp8Row).
#include <cuda_fp8.h>
#include "common.cuh"

constexpr int F8_THREADS = 256;
constexpr float E4M3_MAX = 448.f;

// One block per row of `K` values of x: s = max |x| / 448 (NaN passed over by fmaxf), q = e4m3(x * (1 / s)) rounded
// to nearest even and saturated. Row r's bytes at q + r * K, its scale at s[r].
template <typename T>
__device__ void quantize_fp8_row(uint8_t* q, float* s, const T* x, int K) {
  __shared__ float scratch[32];
  const size_t row = (size_t)blockIdx.x;
  const T* xr = x + row * K;
  float amax = 0.f;
  for (int k = threadIdx.x; k < K; k += F8_THREADS) amax = fmaxf(amax, fabsf(to_f(xr[k])));
  const float d = block_max(amax, scratch) / E4M3_MAX, id = d > 0.f ? 1.f / d : 0.f;
  for (int k = threadIdx.x; k < K; k += F8_THREADS) q[row * K + k] = __nv_cvt_float_to_fp8(to_f(xr[k]) * id, __NV_SATFINITE, __NV_E4M3);
  if (threadIdx.x == 0) s[row] = d;
}

// A float weight [N, K] into the FP8 layout: its bytes, then the row scales at a 16-byte boundary.
extern "C" __global__ void __launch_bounds__(F8_THREADS) quantize_weight_fp8(uint8_t* out, const float* w, int N, int K) {
  pdl_begin();
  quantize_fp8_row<float>(out, reinterpret_cast<float*>(out + ((size_t)N * K + 15) / 16 * 16), w, K);
}

#define F8(T, S)                                                                                                        \
  extern "C" __global__ void __launch_bounds__(F8_THREADS) quantize_fp8_tokens_##S(uint8_t* q, float* s, const T* x, int K) { \
    pdl_begin();                                                                                                        \
    quantize_fp8_row<T>(q, s, x, K);                                                                                    \
  }                                                                                                                     \
  extern "C" __global__ void __launch_bounds__(F8_THREADS)                                                              \
      fp8_epilogue_##S(T* out, const float* acc, const float* sx, const float* sw, const T* bias, int act, int N, int rows, int res) { \
    pdl_begin();                                                                                                        \
    scaled_epilogue<T, T, float>(out, acc, sx, 1, sw, bias, act, N, rows, res);                                                      \
  }
#define F8_OUT32(T, S)                                                                                                  \
  extern "C" __global__ void __launch_bounds__(F8_THREADS)                                                              \
      fp8_epilogue_##S##_f32out(float* out, const float* acc, const float* sx, const float* sw, const T* bias, int act, int N, int rows, int res) { \
    pdl_begin();                                                                                                        \
    scaled_epilogue<T, float, float>(out, acc, sx, 1, sw, bias, act, N, rows, res);                                                  \
  }
FOR_EACH_DTYPE(F8)
F8_OUT32(__half, f16)
F8_OUT32(__nv_bfloat16, bf16)
