// Row movements and elementwise work: gathering rows (and columns, into a quantized weight's input order), scattered table entries, mean pooling, bias + activation after a cuBLASLt
// GEMM, gated activations (SwiGLU), and converting checkpoint weights (F32/F16/BF16, optionally transposed) to the compute dtype.
// References: src/backends/cpu/rows.ts and activations.ts.
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

// x += bias per column, then the activation; the bias may be of another dtype than x (a 16-bit bias over f32 logits).
template <typename T, typename B>
__device__ void bias_act(T* x, const B* bias, int act, int N, size_t total) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    float v = to_f(x[i]);
    if (bias) v += to_f(bias[i % N]);
    x[i] = from_f<T>(activate(v, act));
  }
}

// The same over 16-byte vectors of x (and of a bias of x's dtype, when given), for rows whose width N is a whole number
// of vectors, 16-byte aligned x and bias, total < 2^32. Its caller, activateAfter in src/backends/cuda/linear.ts,
// checks x and passes no bias (cuBLASLt's epilogue added it).
template <typename T>
__device__ void bias_act_vec(T* x, const T* bias, int act, unsigned row_vecs, unsigned vecs) {
  constexpr int V = Vec<T>::N;
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < vecs; i += gridDim.x * blockDim.x) {
    Vec<T> a = load_vec(x + (size_t)i * V), b;
    if (bias) b = load_vec(bias + (size_t)(i % row_vecs) * V);
#pragma unroll
    for (int j = 0; j < V; j++) a.v[j] = from_f<T>(activate(to_f(a.v[j]) + (bias ? to_f(b.v[j]) : 0.f), act));
    store_vec(x + (size_t)i * V, a);
  }
}

// out[t, i] = act(x[t, i]) * x[t, F + i], x [n, 2F] = gate | up (SwiGLU); reference: gatedActivation in activations.ts.
template <typename T>
__device__ void gated_act(T* out, const T* x, int act, int F, size_t total) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const size_t t = i / F, j = i % F;
    const T* r = x + t * 2 * F;
    out[i] = from_f<T>(activate(to_f(r[j]), act) * to_f(r[F + j]));
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

// dst[r, c] = src[r, c], or src[c, r] when transposed (src is [cols, rows] then); any dtype to any dtype.
template <typename S, typename T>
__device__ void convert(T* dst, const S* src, int rows, int cols, int transpose) {
  const size_t total = (size_t)rows * cols;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const size_t r = i / cols, c = i % cols;
    dst[i] = from_f<T>(to_f(transpose ? src[c * rows + r] : src[i]));
  }
}

// Holds the stream until the host has written `value` (or more) into `flag`, pinned host memory, or `timeout_ns` have
// passed: the profiler (CudaBackend.op) queues an op's events and launches behind it and then writes the flag, so the
// events time the GPU's work alone rather than the host's launching. The timeout only bounds a gate the host failed to
// open (an op that synchronised the stream inside); one thread.
extern "C" __global__ void profile_gate(const volatile unsigned* flag, unsigned value, unsigned long long timeout_ns) {
  pdl_begin();
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    if (*flag >= value) return;
    __nanosleep(200);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < timeout_ns);
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
  extern "C" __global__ void bias_act_##S(T* x, const T* bias, int act, int N, unsigned long long total) { \
    pdl_begin();                                                                                           \
    bias_act<T, T>(x, bias, act, N, total);                                                                \
  }                                                                                                        \
  extern "C" __global__ void bias_act_vec_##S(T* x, const T* bias, int act, unsigned row_vecs, unsigned vecs) { \
    pdl_begin();                                                                                           \
    bias_act_vec<T>(x, bias, act, row_vecs, vecs);                                                         \
  }                                                                                                        \
  extern "C" __global__ void bias_act_f32out_##S(float* x, const T* bias, int act, int N, unsigned long long total) { \
    pdl_begin();                                                                                           \
    bias_act<float, T>(x, bias, act, N, total);                                                            \
  }                                                                                                        \
  extern "C" __global__ void gated_act_##S(T* out, const T* x, int act, int F, unsigned long long total) { \
    pdl_begin();                                                                                           \
    gated_act<T>(out, x, act, F, total);                                                                   \
  }                                                                                                        \
  extern "C" __global__ void gather_cols_##S(T* out, const T* x, const int* perm, int K, unsigned long long total) { \
    pdl_begin();                                                                                           \
    gather_cols<T>(out, x, perm, K, total);                                                                \
  }                                                                                                        \
  CONVERT(float, f32, T, S) CONVERT(__half, f16, T, S) CONVERT(__nv_bfloat16, bf16, T, S)
#define CONVERT(SRC, SS, T, S)                                                                             \
  extern "C" __global__ void convert_##SS##_to_##S(T* dst, const SRC* src, int rows, int cols, int transpose) { \
    pdl_begin();                                                                                           \
    convert<SRC, T>(dst, src, rows, cols, transpose);                                                      \
  }
FOR_EACH_DTYPE(ROWS)
