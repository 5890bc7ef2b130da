// Row movements: gathering rows (and columns, into a quantized weight's input order), scattered table entries, and
// mean pooling. Reference: src/backends/cpu/rows.ts; launchers: src/backends/cuda/rows.ts.
#include "common.cuh"

template <typename T>
__device__ void gather_rows(T* out, const T* x, const int* src_rows, const int* dst_rows, int W) {
  const int i = blockIdx.x;
  const T* s = x + (size_t)src_rows[i] * W;
  T* d = out + (size_t)dst_rows[i] * W;
  for (int j = threadIdx.x; j < W; j += blockDim.x) d[j] = s[j];
}

template <typename T>
__device__ void mean_pool(T* out, const T* x, const int* starts, const int* lengths, int W) {
  const int s = blockIdx.x;
  const int r0 = starts[s], n = lengths[s];
  for (int j = threadIdx.x; j < W; j += blockDim.x) {
    float acc = 0.f;
    for (int r = r0; r < r0 + n; r++) acc += to_f(x[(size_t)r * W + j]);
    out[(size_t)s * W + j] = from_f<T>(acc / n);
  }
}

// out[t, k] = x[t, perm[k]]: rows of x in a quantized weight's input order (kernels/quant-blocks.cuh, the float GEMV).
template <typename T>
__device__ void gather_cols(T* out, const T* x, const int* perm, int K, size_t total) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    out[i] = x[(i / K) * K + __ldg(perm + i % K)];
  }
}

// dst[pairs[2i]] = pairs[2i + 1] for i < n, one thread each (Backend.scatterInt; src/backends/cpu/backend.ts).
extern "C" __global__ void scatter_i32(int* dst, const int2* pairs, int n) {
  pdl_begin();
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    const int2 p = pairs[i];
    dst[p.x] = p.y;
  }
}

#define ROWS(T, S)                                                                                         \
  extern "C" __global__ void gather_rows_##S(T* out, const T* x, const int* src_rows, const int* dst_rows, int W) { \
    pdl_begin();                                                                                           \
    gather_rows<T>(out, x, src_rows, dst_rows, W);                                                         \
  }                                                                                                        \
  extern "C" __global__ void mean_pool_##S(T* out, const T* x, const int* starts, const int* lengths, int W) { \
    pdl_begin();                                                                                           \
    mean_pool<T>(out, x, starts, lengths, W);                                                              \
  }                                                                                                        \
  extern "C" __global__ void gather_cols_##S(T* out, const T* x, const int* perm, int K, unsigned long long total) { \
    pdl_begin();                                                                                           \
    gather_cols<T>(out, x, perm, K, total);                                                                \
  }
FOR_EACH_DTYPE(ROWS)
