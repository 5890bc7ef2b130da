// Batched GEMV for decode steps (1 to 8 rows of x): out[m, j] = act(x'[m] . w[j] + bias[j]) (+ residual),
// w [N, K] row-major. Decode is bandwidth-bound on the weights, so every lane issues all its 16-byte weight
// loads for a row at once (one memory round trip), several warps share a long row, and the block reduces.
// Fused around the dot products, as the transformer block needs them:
//   NORM: x' = LayerNorm(x), or RMSNorm(x) when `rms`, row by row (x is the residual stream; statistics
//         computed while weights load; beta may be null);
//   RES:  out += residual, in place (out is the residual stream).
// Reference: src/backends/cpu/linear.ts and layernorm.ts. OutT is T, or float for logits.
#include "common.cuh"

constexpr int GEMV_THREADS = 256;
constexpr int GEMV_WARPS = GEMV_THREADS / 32;
constexpr int GEMV_LOADS = 8;  // 16-byte weight vectors per lane per round

// M is the row count rounded up to 1, 2, 4 or 8, or 8 for more: blockIdx.y then takes rows 8y.. 8y + 7 of the
// `rows` real ones. Every row is computed the same way whatever M, the row group and the other rows are, so
// a row's result does not depend on the batch it is in (the batch-invariant mode runs every linear here).
template <typename T, typename OutT, int M, bool NORM, bool RES>
__device__ void gemv(OutT* out, const T* x, const T* w, const T* bias, int act, int N, int K, int wpr,
                     const T* gamma, const T* beta, float eps, int rows, int rms) {
  constexpr int V = Vec<T>::N;
  x += (size_t)blockIdx.y * M * K;
  out += (size_t)blockIdx.y * M * N;
  rows = min(rows - (int)blockIdx.y * M, M);
  __shared__ float stats[M][2];
  __shared__ float partial[GEMV_WARPS][M];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int rows_per_block = GEMV_WARPS / wpr;
  const int j = blockIdx.x * rows_per_block + warp / wpr;  // this warp's output row
  const int part = warp % wpr;                              // which slice of the row
  const bool vec = K % V == 0 && aligned16(w) && aligned16(x) && (!NORM || (aligned16(gamma) && (!beta || aligned16(beta))));
  const bool live = j < N;
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; m++) acc[m] = 0.f;
  const T* wr = w + (size_t)j * K;
  const int nv = K / V;
  const int first = part * 32 + lane, stride = wpr * 32;
  // the first round of weight loads goes out before anything else, so that the LayerNorm statistics
  // below are computed while they are in flight; and before pdl_begin() (kernels/common.cuh), so that under
  // programmatic dependent launch they overlap the previous kernel's tail: no kernel of a pass writes weights
  // (they are written while a model loads, and the loader synchronises before any pass)
  Vec<T> wv[GEMV_LOADS];
  if (live && vec) {
#pragma unroll
    for (int u = 0; u < GEMV_LOADS; u++) {
      const int i = first + u * stride;
      if (i < nv) wv[u] = load_vec_nc(wr + (size_t)i * V);
    }
  }
  pdl_begin();

  // LayerNorm statistics of the `rows` rows of x, by the whole block in one pass (shifted by the row's
  // first element, so that the variance does not cancel); RMSNorm's mean square, unshifted
  if (NORM) {
    __shared__ float red[GEMV_WARPS][M][2];
#pragma unroll
    for (int m = 0; m < M; m++) {
      float s1 = 0.f, s2 = 0.f;
      if (m < rows) {
        const T* xr = x + (size_t)m * K;
        const float shift = rms ? 0.f : to_f(xr[0]);
        if (vec) {
          for (int i = threadIdx.x; i < nv; i += GEMV_THREADS) {
            const Vec<T> xv = load_vec(xr + (size_t)i * V);
#pragma unroll
            for (int e = 0; e < V; e++) {
              const float d = to_f(xv.v[e]) - shift;
              s1 += d;
              s2 += d * d;
            }
          }
        } else {
          for (int k = threadIdx.x; k < K; k += GEMV_THREADS) {
            const float d = to_f(xr[k]) - shift;
            s1 += d;
            s2 += d * d;
          }
        }
      }
      s1 = warp_sum(s1);
      s2 = warp_sum(s2);
      if (lane == 0) {
        red[warp][m][0] = s1;
        red[warp][m][1] = s2;
      }
    }
    __syncthreads();
    if (threadIdx.x < rows) {
      const int m = threadIdx.x;
      float a = 0.f, b = 0.f;
      for (int w2 = 0; w2 < GEMV_WARPS; w2++) {
        a += red[w2][m][0];
        b += red[w2][m][1];
      }
      const float mean = a / K;  // of the shifted values
      stats[m][0] = rms ? 0.f : mean + to_f(x[(size_t)m * K]);
      stats[m][1] = rms ? rsqrtf(b / K + eps) : rsqrtf(fmaxf(b / K - mean * mean, 0.f) + eps);
    }
    __syncthreads();
  }
  auto xval = [&](int m, int k, float xv) {
    return NORM ? fmaf((xv - stats[m][0]) * stats[m][1], to_f(gamma[k]), beta ? to_f(beta[k]) : 0.f) : xv;
  };

  if (live && vec) {
    for (int base = first; base < nv; base += stride * GEMV_LOADS) {
      if (base != first) {
#pragma unroll
        for (int u = 0; u < GEMV_LOADS; u++) {
          const int i = base + u * stride;
          if (i < nv) wv[u] = load_vec_nc(wr + (size_t)i * V);
        }
      }
#pragma unroll
      for (int u = 0; u < GEMV_LOADS; u++) {
        const int i = base + u * stride;
        if (i >= nv) break;
#pragma unroll
        for (int m = 0; m < M; m++) {
          if (m >= rows) break;
          const Vec<T> xv = load_vec(x + (size_t)m * K + (size_t)i * V);
          if (NORM) {
            const Vec<T> g = load_vec(gamma + (size_t)i * V);
            Vec<T> b;
            if (beta) b = load_vec(beta + (size_t)i * V);
#pragma unroll
            for (int e = 0; e < V; e++) {
              // an explicit fma: whether the compiler contracts this expression must not depend on M
              const float xn = fmaf((to_f(xv.v[e]) - stats[m][0]) * stats[m][1], to_f(g.v[e]), beta ? to_f(b.v[e]) : 0.f);
              acc[m] += to_f(wv[u].v[e]) * xn;
            }
          } else {
#pragma unroll
            for (int e = 0; e < V; e++) acc[m] += to_f(wv[u].v[e]) * to_f(xv.v[e]);
          }
        }
      }
    }
  } else if (live) {
    for (int k = first; k < K; k += stride) {
      const float wk = to_f(wr[k]);
#pragma unroll
      for (int m = 0; m < M; m++) if (m < rows) acc[m] += wk * xval(m, k, to_f(x[(size_t)m * K + k]));
    }
  }

  gemv_finish<T, OutT, M>(acc, partial, out, bias, act, N, j, live, wpr, rows, RES);
}

// Kernels: gemv<M>_<dtype>_<out>, and the fused norm_gemv<M>_... / res_gemv<M>_... variants, M in 1, 2, 4, 8.
#define GEMV_ARGS(T, OutT) OutT* out, const T* x, const T* w, const T* bias, int act, int N, int K, int wpr, \
                           const T* gamma, const T* beta, float eps, int rows, int rms
#define GEMV_PASS out, x, w, bias, act, N, K, wpr, gamma, beta, eps, rows, rms
#define GEMV_M(T, S, OutT, OS, M)                                                                          \
  extern "C" __global__ void __launch_bounds__(GEMV_THREADS, 3) gemv##M##_##S##_##OS(GEMV_ARGS(T, OutT)) { \
    gemv<T, OutT, M, false, false>(GEMV_PASS);                                                             \
  }                                                                                                        \
  extern "C" __global__ void __launch_bounds__(GEMV_THREADS, 3) norm_gemv##M##_##S##_##OS(GEMV_ARGS(T, OutT)) { \
    gemv<T, OutT, M, true, false>(GEMV_PASS);                                                              \
  }
#define RES_M(T, S, M)                                                                                     \
  extern "C" __global__ void __launch_bounds__(GEMV_THREADS, 3) res_gemv##M##_##S(GEMV_ARGS(T, T)) {       \
    gemv<T, T, M, false, true>(GEMV_PASS);                                                                 \
  }
#define FOR_M(X, ...) X(__VA_ARGS__, 1) X(__VA_ARGS__, 2) X(__VA_ARGS__, 4) X(__VA_ARGS__, 8)
#define GEMV(T, S) FOR_M(GEMV_M, T, S, T, S) FOR_M(GEMV_M, T, S, float, f32out) FOR_M(RES_M, T, S)
FOR_EACH_DTYPE(GEMV)
