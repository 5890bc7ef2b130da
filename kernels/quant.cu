// GEMV over ggml-quantized weights: out[m, j] = act(x[m] . dequant(w[j]) + bias[j]) (+ out[m, j] with res), for
// 1 to 8 rows of x per block row (blockIdx.y takes rows 8y .. 8y + 7, as kernels/gemv.cu does), w [N, K] stored
// as ggml blocks row after row (or the int4 layout of kernels/quant-blocks.cuh, x already in its input order). Reference: src/loaders/quant.ts (dequantizeRow) then src/backends/cpu/linear.ts.
// The blocks are read as they are and dequantized in registers: a lane takes a unit of 32 weights of a row (a
// Q8_0 or Q4_0 block; a sub-block of a K-quant super-block), forms sum(q * x) and sum(x) for each row of x, and
// applies the unit's scale and min once. Units go to lanes in order, so a warp reads consecutive bytes.
// Block layouts (ggml-common.h): Q8_0 32 weights in 34 bytes (f16 d, i8 q[32]); Q4_0 32 in 18 (f16 d, q[16]
// nibbles: weight e < 16 low, e >= 16 high, value (q - 8) d); Q4_K 256 in 144 (f16 d, f16 dmin, 12 bytes of
// 6-bit scales and mins, qs[128]); Q5_K 256 in 176 (d, dmin, scales, qh[32], qs[128]); Q6_K 256 in 210 (ql[128],
// qh[64], i8 scales[16], f16 d).
#include "quant-blocks.cuh"

constexpr int QG_THREADS = 256;  // quant_gemv's block

template <int Q, typename T, int M>
__device__ __forceinline__ void unit_dot(const Unit<Q>& w, const T* x, int K, int u, int rows, float* acc) {
  const T* xu = x + (size_t)u * 32;
  const bool vec = aligned16(x) && K % Vec<T>::N == 0;
#pragma unroll
  for (int m = 0; m < M; m++) {
    if (m >= rows) break;
    const T* xr = xu + (size_t)m * K;
    float xs[32];
    if (vec) {
#pragma unroll
      for (int i = 0; i < 32 / Vec<T>::N; i++) {
        const Vec<T> v = load_vec(xr + i * Vec<T>::N);
#pragma unroll
        for (int e = 0; e < Vec<T>::N; e++) xs[i * Vec<T>::N + e] = to_f(v.v[e]);
      }
    } else {
#pragma unroll
      for (int e = 0; e < 32; e++) xs[e] = to_f(xr[e]);
    }
    float lo = 0.f, hi = 0.f, sx = 0.f;
#pragma unroll
    for (int e = 0; e < 16; e++) lo = fmaf(w.q(e), xs[e], lo);
#pragma unroll
    for (int e = 16; e < 32; e++) hi = fmaf(w.q(e), xs[e], hi);
    if (Q == Q4_K || Q == Q5_K) {
#pragma unroll
      for (int e = 0; e < 32; e++) sx += xs[e];
    }
    // explicit fmas: how the compiler would contract the expression must not depend on M (batch invariance)
    acc[m] = fmaf(-w.min_(), sx, acc[m] + fmaf(w.scale(0), lo, w.scale(1) * hi));
  }
}

template <typename T, typename O, int Q, int M>
__device__ void qgemv(O* out, const T* x, const uint8_t* w, const T* bias, int act, int N, int K, int wpr, int rows, int res) {
  x += (size_t)blockIdx.y * M * K;
  out += (size_t)blockIdx.y * M * N;
  rows = min(rows - (int)blockIdx.y * M, M);
  quant_gemv<Q, Unit32<Q>, M, 1>(out, w, bias, act, N, K, wpr, rows, res != 0,
                                  [&](const Unit32<Q> (&un)[1], int u, float (&acc)[1][M]) { unit_dot<Q, T, M>(un[0], x, K, u, rows, acc[0]); });
}

// Kernels qgemv<M>_<quant>_<dtype>, M in 1 and 8 (2 to 7 rows run in the 8-row kernel; its loops stop at `rows`);
// `res` adds into out (the residual stream). qgemv<M>_<quant>_<dtype>_f32out read 16-bit activations and write f32
// (a quantized LM head writing the logits).
#define QG_ARGS(T, O) O* out, const T* x, const uint8_t* w, const T* bias, int act, int N, int K, int wpr, int rows, int res
#define QG_M(T, S, O, OS, Q, QS, M)                                                                        \
  extern "C" __global__ void __launch_bounds__(QG_THREADS) qgemv##M##_##QS##_##S##OS(QG_ARGS(T, O)) {      \
    qgemv<T, O, Q, M>(out, x, w, bias, act, N, K, wpr, rows, res);                                         \
  }
#define QG_Q(T, S, O, OS, Q, QS) QG_M(T, S, O, OS, Q, QS, 1) QG_M(T, S, O, OS, Q, QS, 8)
#define QG_ALL(T, S, O, OS) QG_Q(T, S, O, OS, Q8_0, q8_0) QG_Q(T, S, O, OS, Q4_0, q4_0) QG_Q(T, S, O, OS, Q4_K, q4_k) \
  QG_Q(T, S, O, OS, Q5_K, q5_k) QG_Q(T, S, O, OS, Q6_K, q6_k) QG_Q(T, S, O, OS, Q4_G32, q4_g32) QG_Q(T, S, O, OS, Q4_G64, q4_g64) \
  QG_Q(T, S, O, OS, Q4_G128, q4_g128) QG_Q(T, S, O, OS, FP8, fp8)
#define QG(T, S) QG_ALL(T, S, T, )
FOR_EACH_DTYPE(QG)
QG_ALL(__half, f16, float, _f32out)
QG_ALL(__nv_bfloat16, bf16, float, _f32out)
