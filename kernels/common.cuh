// Shared device helpers: dtype conversion, 16-byte vectors, warp and block reductions.
// Every kernel family is instantiated for float, __half and __nv_bfloat16 with the suffixes _f32, _f16, _bf16.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

// Programmatic dependent launch (sm_90 and later): the host (src/backends/cuda/kernels.ts) lets a kernel start while its
// predecessor in the stream finishes, so its launch and block scheduling overlap that tail. Every kernel calls
// pdl_begin() first, before any early return: it waits until the predecessor has completed and its writes are visible
// (a block that returned without waiting could let the next kernel's wait pass before this kernel's own predecessor had
// finished), then lets the next kernel be scheduled. The one exception, the float GEMV (kernels/gemv.cu), first issues
// loads of its weights, which no kernel of a pass writes, so that they overlap the predecessor's tail. On older GPUs, and
// for kernels launched without the attribute, the wait returns at once. test/kernel-sources.test.ts checks all this.
__device__ __forceinline__ void pdl_begin() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

#define FOR_EACH_DTYPE(M) M(float, f32) M(__half, f16) M(__nv_bfloat16, bf16)

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// 16 bytes of T: 4 floats or 8 halves, loaded and stored as one uint4.
template <typename T> struct Vec {
  static constexpr int N = 16 / sizeof(T);
  union {
    uint4 raw;
    T v[N];
  };
};

template <typename T> __device__ __forceinline__ Vec<T> load_vec(const T* p) {
  Vec<T> r;
  r.raw = *reinterpret_cast<const uint4*>(p);
  return r;
}

template <typename T> __device__ __forceinline__ Vec<T> load_vec_nc(const T* p) {
  Vec<T> r;
  r.raw = __ldg(reinterpret_cast<const uint4*>(p));
  return r;
}

template <typename T> __device__ __forceinline__ void store_vec(T* p, const Vec<T>& v) {
  *reinterpret_cast<uint4*>(p) = v.raw;
}

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

// A reduction over the block, through the warps; every thread gets the result. `scratch` holds 32 floats;
// blockDim.x % 32 == 0; `identity` fills the lanes past the last warp.
template <float (*WarpOp)(float)>
__device__ __forceinline__ float block_reduce(float x, float identity, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  x = WarpOp(x);
  __syncthreads();
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = lane < warps ? scratch[lane] : identity;
  return WarpOp(x);
}

__device__ __forceinline__ float block_sum(float x, float* scratch) { return block_reduce<warp_sum>(x, 0.f, scratch); }
__device__ __forceinline__ float block_max(float x, float* scratch) { return block_reduce<warp_max>(x, -INFINITY, scratch); }

// Activations, matching src/backends/cpu/activations.ts (codes: ACT_CODE in src/backends/cuda/linear.ts).
// act: 0 none, 1 gelu (erf), 2 gelu_tanh, 3 tanh, 4 relu, 5 silu, 6 quick_gelu. NaN stays NaN in each.
__device__ __forceinline__ float activate(float x, int act) {
  switch (act) {
    case 1: return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
    case 2: return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case 3: return tanhf(x);
    case 4: return x < 0.f ? 0.f : x;
    case 5: return x / (1.f + expf(-x));
    case 6: return x / (1.f + expf(-1.702f * x));
    default: return x;
  }
}

// The end of a GEMM that multiplied quantized operands (FP8: f32 sums, kernels/fp8.cu; W8A8: int32 sums, mmvq.cu):
// out[m, j] = act(acc[m, j] * sx[m * sx_stride] * sw[j] + bias[j]) (+ out[m, j] with res), x's scale per row and the
// weight's per output, for `rows` rows of N; one thread per output, blocks of `blockDim.x`.
template <typename T, typename O, typename A>
__device__ __forceinline__ void scaled_epilogue(O* out, const A* acc, const float* sx, int sx_stride, const float* sw, const T* bias, int act,
                                                int N, int rows, int res) {
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (size_t)rows * N) return;
  const int m = (int)(i / N), j = (int)(i % N);
  float v = activate(fmaf((float)acc[i], sx[(size_t)m * sx_stride] * __ldg(sw + j), bias ? to_f(bias[j]) : 0.f), act);
  if (res) v += to_f(out[i]);
  out[i] = from_f<O>(v);
}

// The end of a GEMV whose `wpr` warps share output column j (kernels/gemv.cu, quant.cu, mmvq.cu): each lane's partial
// sums acc[M] reduced over its warp, then over the column's warps through `partial` (shared, [warps][M]), and lane 0
// of the column's first warp writes act(acc + bias[j]) (+ the old out when `res`) for each of the `rows` rows.
// Every thread of the block must call it (it synchronises when wpr > 1).
template <typename T, typename O, int M>
__device__ __forceinline__ void gemv_finish(float (&acc)[M], float (*partial)[M], O* out, const T* bias, int act, int N, int j, bool live,
                                            int wpr, int rows, bool res) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int m = 0; m < M; m++) acc[m] = warp_sum(acc[m]);
  if (wpr > 1) {
    if (lane == 0) {
#pragma unroll
      for (int m = 0; m < M; m++) partial[warp][m] = acc[m];
    }
    __syncthreads();
    if (warp % wpr != 0) return;
#pragma unroll
    for (int m = 0; m < M; m++) {
      float s = 0.f;
      for (int p = 0; p < wpr; p++) s += partial[warp + p][m];
      acc[m] = s;
    }
  }
  if (!live || lane != 0) return;
  const float b = bias ? to_f(bias[j]) : 0.f;
#pragma unroll
  for (int m = 0; m < M; m++) {
    if (m >= rows) break;
    float v = activate(acc[m] + b, act);
    O* o = out + (size_t)m * N + j;
    if (res) v += to_f(*o);
    *o = from_f<O>(v);
  }
}
