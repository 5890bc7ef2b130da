// Elementwise activations: bias + activation after a cuBLASLt GEMM whose epilogue could not apply them (per element,
// over 16-byte vectors, and into f32 logits with a 16-bit bias), and gated activations (SwiGLU).
// Reference: src/backends/cpu/activations.ts; launchers: src/backends/cuda/activation.ts.
#include "common.cuh"

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

#define ACTIVATION(T, S)                                                                                   \
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
  }
FOR_EACH_DTYPE(ACTIVATION)
