// LayerNorm (or RMSNorm) in one kernel per row, and the fused add-bias + residual + LayerNorm of the transformer block;
// reference: src/backends/cpu/layernorm.ts. One warp per row for rows up to 2048 halves (1024 floats), else one block
// per row; a thread keeps its elements in registers (16-byte vectors when the row allows), so a row is read once and
// written once.
#include "common.cuh"

constexpr int LN_THREADS = 256;
constexpr int LN_ITEMS = 4;  // vectors per thread held in registers: rows up to 256 * 4 * 8 = 8192 halves

constexpr int LNW_ITEMS = 8, LNW_ROWS = 4;  // the warp form: rows up to 32 * 8 * 8 = 2048 halves, 4 rows a block

// The row `row` (its offset) held in registers as 16-byte vectors, RT threads on it (a warp, or the whole block of
// LN_THREADS), ITEMS vectors each; t = the thread's index among the RT. The caller checks the width and alignment.
template <typename T, int RT, int ITEMS>
__device__ __forceinline__ void add_ln_vec(T* sum, T* norm, const T* x, const T* bias, const T* residual, const T* gamma,
                                           const T* beta, float eps, int H, bool rms, size_t row, int t, float* scratch) {
  constexpr int V = Vec<T>::N;
  auto reduce = [&](float v) {
    if constexpr (RT == 32) return warp_sum(v);
    else return block_sum(v, scratch);
  };
  float vals[ITEMS][V];
  float s = 0.f;
#pragma unroll
  for (int it = 0; it < ITEMS; it++) {
    const int i = (it * RT + t) * V;
    if (i < H) {
      Vec<T> r = load_vec(residual + row + i);
      Vec<T> xv, bv;
      if (x) xv = load_vec(x + row + i);
      if (x && bias) bv = load_vec(bias + i);
#pragma unroll
      for (int j = 0; j < V; j++) {
        float v = to_f(r.v[j]);
        if (x) v += to_f(xv.v[j]) + (bias ? to_f(bv.v[j]) : 0.f);
        vals[it][j] = v;
        s += v;
        r.v[j] = from_f<T>(v);
      }
      if (x && sum != norm) store_vec(sum + row + i, r);  // an aliased sum is overwritten by the norm below
    }
  }
  const float mean = rms ? 0.f : reduce(s) / H;
  float q = 0.f;
#pragma unroll
  for (int it = 0; it < ITEMS; it++) {
    if ((it * RT + t) * V < H) {
#pragma unroll
      for (int j = 0; j < V; j++) q += (vals[it][j] - mean) * (vals[it][j] - mean);
    }
  }
  const float inv = rsqrtf(reduce(q) / H + eps);
#pragma unroll
  for (int it = 0; it < ITEMS; it++) {
    const int i = (it * RT + t) * V;
    if (i < H) {
      Vec<T> g = load_vec(gamma + i), b, o;
      if (beta) b = load_vec(beta + i);
#pragma unroll
      for (int j = 0; j < V; j++) o.v[j] = from_f<T>((vals[it][j] - mean) * inv * to_f(g.v[j]) + (beta ? to_f(b.v[j]) : 0.f));
      store_vec(norm + row + i, o);
    }
  }
}

// sum = x + bias + residual (when x is given), norm = LayerNorm(sum), or RMSNorm(sum) when `rms` (the mean is
// then 0). beta may be null. sum may alias residual, norm may alias sum. One block per row.
template <typename T>
__device__ void add_ln(T* sum, T* norm, const T* x, const T* bias, const T* residual, const T* gamma,
                       const T* beta, float eps, int H, bool rms) {
  __shared__ float scratch[32];
  constexpr int V = Vec<T>::N;
  const size_t row = (size_t)blockIdx.x * H;
  const bool vec = H % V == 0 && H <= LN_THREADS * LN_ITEMS * V && aligned16(residual) && aligned16(sum) &&
                   aligned16(norm) && (!x || aligned16(x));
  if (vec) return add_ln_vec<T, LN_THREADS, LN_ITEMS>(sum, norm, x, bias, residual, gamma, beta, eps, H, rms, row, threadIdx.x, scratch);
  // any width: three passes over the row (the second and third hit L1)
  float s = 0.f;
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    float v = to_f(residual[row + i]);
    if (x) {
      v += to_f(x[row + i]) + (bias ? to_f(bias[i]) : 0.f);
      sum[row + i] = from_f<T>(v);
    }
    s += v;
  }
  // the sum as stored (rounded to T) is what the norm reads, as the CPU reference does in fp32
  __syncthreads();
  const T* src = x ? sum : residual;
  s = 0.f;
  for (int i = threadIdx.x; i < H; i += blockDim.x) s += to_f(src[row + i]);
  const float mean = rms ? 0.f : block_sum(s, scratch) / H;
  float q = 0.f;
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    const float d = to_f(src[row + i]) - mean;
    q += d * d;
  }
  const float inv = rsqrtf(block_sum(q, scratch) / H + eps);
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    norm[row + i] = from_f<T>((to_f(src[row + i]) - mean) * inv * to_f(gamma[i]) + (beta ? to_f(beta[i]) : 0.f));
  }
}

// The same for rows of at most 32 * LNW_ITEMS vectors, one warp a row and LNW_ROWS rows a block: the reductions are
// warp shuffles, without the block's barriers (BERT's 768 or 1024 wide rows leave most of a 256-thread block idle).
// The caller (src/backends/cuda/layernorm.ts) checks the width and that every tensor is 16-byte aligned.
template <typename T>
__device__ void add_ln_warp(T* sum, T* norm, const T* x, const T* bias, const T* residual, const T* gamma,
                            const T* beta, float eps, int H, int n, bool rms) {
  const int r = blockIdx.x * LNW_ROWS + (threadIdx.x >> 5);
  if (r >= n) return;
  add_ln_vec<T, 32, LNW_ITEMS>(sum, norm, x, bias, residual, gamma, beta, eps, H, rms, (size_t)r * H, threadIdx.x & 31, nullptr);
}

#define LN(T, S)                                                                                           \
  extern "C" __global__ void __launch_bounds__(LN_THREADS)                                                 \
      layernorm_##S(T* out, const T* x, const T* gamma, const T* beta, float eps, int H, int rms) {        \
    pdl_begin();                                                                                           \
    add_ln<T>(out, out, nullptr, nullptr, x, gamma, beta, eps, H, rms != 0);                               \
  }                                                                                                        \
  extern "C" __global__ void __launch_bounds__(LN_THREADS)                                                 \
      add_bias_residual_layernorm_##S(T* sum, T* norm, const T* x, const T* bias, const T* residual,       \
                                      const T* gamma, const T* beta, float eps, int H) {                   \
    pdl_begin();                                                                                           \
    add_ln<T>(sum, norm, x, bias, residual, gamma, beta, eps, H, false);                                   \
  }                                                                                                        \
  extern "C" __global__ void __launch_bounds__(32 * LNW_ROWS)                                              \
      layernorm_warp_##S(T* out, const T* x, const T* gamma, const T* beta, float eps, int H, int rms, int n) { \
    pdl_begin();                                                                                           \
    add_ln_warp<T>(out, out, nullptr, nullptr, x, gamma, beta, eps, H, n, rms != 0);                       \
  }                                                                                                        \
  extern "C" __global__ void __launch_bounds__(32 * LNW_ROWS)                                              \
      add_bias_residual_layernorm_warp_##S(T* sum, T* norm, const T* x, const T* bias, const T* residual,  \
                                           const T* gamma, const T* beta, float eps, int H, int n) {       \
    pdl_begin();                                                                                           \
    add_ln_warp<T>(sum, norm, x, bias, residual, gamma, beta, eps, H, n, false);                           \
  }
FOR_EACH_DTYPE(LN)
