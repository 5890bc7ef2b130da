// Quantized GEMV on integer dot products, as llama.cpp's MMVQ does it, for 16-bit activations: the rows of x are
// first quantized to int8 per 32 values (quantize_q8: d = max|x| / 127, q = round(x / d), and d * sum(q) kept beside
// d), then each lane takes a unit of 32 weights (kernels/quant-blocks.cuh), dots its packed bytes with those of x
// four at a time (dp4a) and applies the unit's scales once:
//   x^ . w_unit = d_x * (scale0 * sum_{e<16} q_w q_x + scale1 * sum_{e>=16} q_w q_x) - word_min * d_x * sum(q_x),
// exactly the dot product of the weights with x^ = d_x q_x, the rows of x rounded to int8.
// About three integer instructions per weight, where kernels/quant.cu's float path spends five and converts every
// weight. Layout and launch as kernels/quant.cu: blockIdx.y takes rows My .. My + M - 1, `wpr` warps share an
// output row. Reference: src/backends/cpu/q8-activations.ts (the same int8 rounding of x), then the dot products
// of src/backends/cpu/linear.ts over src/loaders/quant.ts's dequantized rows.
#include "quant-blocks.cuh"

constexpr int MV_THREADS = 256;
constexpr int MV_WARPS = MV_THREADS / 32;

// One warp per group of 32 values of x (rows * K / 32 groups; K % 32 == 0): xq the int8 values, xd (d, d * sum(q)).
// With `perm` (a weight whose inputs are stored in another order: GPTQ's act-order, kernels/quant-blocks.cuh) value k
// of a row is x[perm[k]] of that row.
template <typename T>
__device__ void quantize_q8(int8_t* xq, float2* xd, const T* x, const int* perm, int K, int groups) {
  const int g = blockIdx.x * MV_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (g >= groups) return;
  const size_t i = (size_t)g * 32 + lane;
  const float v = to_f(perm ? x[i / K * K + __ldg(perm + i % K)] : x[i]);
  const float amax = warp_max(fabsf(v));
  const float d = amax / 127.f, id = d > 0.f ? 1.f / d : 0.f;
  const float q = roundf(v * id);
  const float qsum = warp_sum(q);  // exact: integers below 2^24
  xq[i] = (int8_t)q;
  if (lane == 0) xd[g] = make_float2(d, d * qsum);
}

// SmoothQuant's activations (src/loaders/w8a8.ts quantizeTokens): row r of x times the inputs' multipliers m (1 / s),
// quantized to int8 with one scale per row (a = max |x m| / 127, q = round(x m / a)); xd holds (a, a * sum(q)) for each
// group of 32, as the GEMV reads x's scales per group. One block of 256 threads per row; K % 32 == 0. Past the GEMV's
// rows, cuBLASLt's int8 GEMM multiplies these rows by the weight's into int32 sums (src/backends/cuda/qlinear.ts
// w8a8Matmul), and w8a8_epilogue scales them by a (xd's first pair of the row) and the weight row's scale.
template <typename T>
__device__ void quantize_tokens(int8_t* xq, float2* xd, const T* x, const float* mult, int K) {
  __shared__ float scratch[32];
  const size_t row = (size_t)blockIdx.x * K;
  float amax = 0.f;
  for (int k = threadIdx.x; k < K; k += MV_THREADS) amax = fmaxf(amax, fabsf(to_f(x[row + k]) * __ldg(mult + k)));
  const float a = block_max(amax, scratch) / 127.f, ia = a > 0.f ? 1.f / a : 0.f;
  const int lane = threadIdx.x & 31;
  for (int k0 = threadIdx.x - lane; k0 < K; k0 += MV_THREADS) {  // a warp takes 32 values at a time: one group
    const int k = k0 + lane;
    const float q = roundf(to_f(x[row + k]) * __ldg(mult + k) * ia);
    const float qsum = warp_sum(q);
    xq[row + k] = (int8_t)q;
    if (lane == 0) xd[(row + k0) / 32] = make_float2(a, a * qsum);
  }
}

// A gated MLP's down projection input: act(gate) * up of x [rows, 2K] = gate | up, rounded to T as gated_act
// (kernels/activation.cu) stores it, then quantized as quantize_q8 does. One warp per group of 32 values of the [rows, K]
// result.
template <typename T>
__device__ void gated_quantize_q8(int8_t* xq, float2* xd, const T* x, int act, int K, int groups) {
  const int g = blockIdx.x * MV_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (g >= groups) return;
  const size_t i = (size_t)g * 32 + lane, t = i / K, k = i % K;
  const T* r = x + t * 2 * K;
  const float v = to_f(from_f<T>(activate(to_f(r[k]), act) * to_f(r[K + k])));
  const float amax = warp_max(fabsf(v));
  const float d = amax / 127.f, id = d > 0.f ? 1.f / d : 0.f;
  const float q = roundf(v * id);
  const float qsum = warp_sum(q);
  xq[i] = (int8_t)q;
  if (lane == 0) xd[g] = make_float2(d, d * qsum);
}

// A pre-norm layer's input: LayerNorm or RMSNorm of each row (as kernels/layernorm.cu computes it, rounded to T as
// it would be stored), quantized as quantize_q8 does, without the normed row going to memory. One block of 256
// threads per row, 8 consecutive values per thread, so a group of 32 is 4 neighbouring lanes: H % 32 == 0 and
// H <= 8192 (src/backends/cuda/qlinear.ts checks; other rows go through layernorm_<dtype> and quantize_q8).
constexpr int NQ_ITEMS = 4;

template <typename T>
__device__ void norm_quantize_q8(int8_t* xq, float2* xd, const T* x, const T* gamma, const T* beta, float eps, int H, bool rms) {
  static_assert(Vec<T>::N == 8, "16-bit rows only");
  __shared__ float scratch[32];
  const size_t row = (size_t)blockIdx.x * H;
  float vals[NQ_ITEMS][8];
  float s = 0.f;
#pragma unroll
  for (int it = 0; it < NQ_ITEMS; it++) {
    const int i = (it * MV_THREADS + threadIdx.x) * 8;
    if (i < H) {
      const Vec<T> v = load_vec(x + row + i);
#pragma unroll
      for (int j = 0; j < 8; j++) s += (vals[it][j] = to_f(v.v[j]));
    }
  }
  const float mean = rms ? 0.f : block_sum(s, scratch) / H;
  float sq = 0.f;
#pragma unroll
  for (int it = 0; it < NQ_ITEMS; it++) {
    if ((it * MV_THREADS + threadIdx.x) * 8 < H) {
#pragma unroll
      for (int j = 0; j < 8; j++) sq += (vals[it][j] - mean) * (vals[it][j] - mean);
    }
  }
  const float inv = rsqrtf(block_sum(sq, scratch) / H + eps);
#pragma unroll
  for (int it = 0; it < NQ_ITEMS; it++) {
    const int i = (it * MV_THREADS + threadIdx.x) * 8;
    const bool live = i < H;  // the same for the 4 lanes of a group: H % 32 == 0
    float y[8], amax = 0.f;
    if (live) {
      const Vec<T> g = load_vec(gamma + i);
      Vec<T> b;
      if (beta) b = load_vec(beta + i);
#pragma unroll
      for (int j = 0; j < 8; j++) {
        y[j] = to_f(from_f<T>((vals[it][j] - mean) * inv * to_f(g.v[j]) + (beta ? to_f(b.v[j]) : 0.f)));
        amax = fmaxf(amax, fabsf(y[j]));
      }
    }
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
    const float d = amax / 127.f, id = d > 0.f ? 1.f / d : 0.f;
    uint32_t packed[2] = {0u, 0u};
    float qsum = 0.f;
    if (live) {
#pragma unroll
      for (int j = 0; j < 8; j++) {
        const float q = roundf(y[j] * id);
        qsum += q;
        packed[j >> 2] |= ((uint32_t)(int)q & 0xffu) << (8 * (j & 3));
      }
    }
    qsum += __shfl_xor_sync(0xffffffffu, qsum, 1);
    qsum += __shfl_xor_sync(0xffffffffu, qsum, 2);
    if (live) {
      *reinterpret_cast<uint2*>(xq + row + i) = make_uint2(packed[0], packed[1]);
      if ((threadIdx.x & 3) == 0) xd[(row + i) / 32] = make_float2(d, d * qsum);
    }
  }
}

// Adds x^ . w for 32 weights of each of R weight rows (packed words wq[r], scale s0[r] for the first 16 and s1[r]
// for the last, offset off[r]) of unit u of each row of x into acc[r]: x's 32 bytes and scales are loaded once for
// the R rows.
template <int M, int R>
__device__ __forceinline__ void dot_q8(const int (&wq)[R][8], const float (&s0)[R], const float (&s1)[R], const float (&off)[R], const int8_t* xq,
                                       const float2* xd, int K, int u, int rows, float (&acc)[R][M]) {
#pragma unroll
  for (int m = 0; m < M; m++) {
    if (m >= rows) break;
    const uint4* p = reinterpret_cast<const uint4*>(xq + (size_t)m * K + (size_t)u * 32);
    const uint4 a = __ldg(p), b = __ldg(p + 1);
    const float2 ds = __ldg(xd + (size_t)m * (K / 32) + u);
#pragma unroll
    for (int r = 0; r < R; r++) {
      int lo = __dp4a(wq[r][0], (int)a.x, 0);
      lo = __dp4a(wq[r][1], (int)a.y, lo);
      lo = __dp4a(wq[r][2], (int)a.z, lo);
      lo = __dp4a(wq[r][3], (int)a.w, lo);
      int hi = __dp4a(wq[r][4], (int)b.x, 0);
      hi = __dp4a(wq[r][5], (int)b.y, hi);
      hi = __dp4a(wq[r][6], (int)b.z, hi);
      hi = __dp4a(wq[r][7], (int)b.w, hi);
      // explicit fmas: how the compiler would contract the expression must not depend on M or R (batch invariance)
      const float dot = fmaf(s0[r], (float)lo, s1[r] * (float)hi);
      acc[r][m] = fmaf(-off[r], ds.y, fmaf(ds.x, dot, acc[r][m]));
    }
  }
}

// A lane's unit in the integer GEMV: 32 weights (Unit<Q>) for Q8_0, Q4_0, Q6_K, the int4 types and W8A8; R rows'
// units dotted with the same 32 values of x.
template <int Q> struct MvUnit {
  static constexpr int WEIGHTS = 32, UNROLL = QInfo<Q>::UNROLL;
  Unit<Q> un;
  __device__ __forceinline__ void load(const QRow& row, int u) { un.load(row, u); }
  template <int M, int R>
  __device__ static __forceinline__ void dot(const MvUnit (&us)[R], const int8_t* xq, const float2* xd, int K, int u, int rows, float (&acc)[R][M]) {
    int wq[R][8];
    float s0[R], s1[R], off[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
      for (int i = 0; i < 8; i++) wq[r][i] = us[r].un.word(i);
      s0[r] = us[r].un.scale(0);
      s1[r] = us[r].un.scale(1);
      off[r] = us[r].un.word_min();
    }
    dot_q8<M, R>(wq, s0, s1, off, xq, xd, K, u, rows, acc);
  }
};

// Q4_K and Q5_K: a pair of sub-blocks (64 weights) per lane, the two that share 32 bytes of nibbles (low: the even
// sub-block, high: the odd), the super-block's header (d, dmin and the 12 bytes of 6-bit scales and mins) in one
// 16-byte load: three or five loads per 64 weights where two units of 32 take about twelve.
template <int Q> struct KPair {
  static constexpr bool FIVE = Q == Q5_K;
  static constexpr int WEIGHTS = 64, UNROLL = 2;
  uint32_t hdr[4], qs[8], qh[8];
  int p;  // the pair within its super-block: sub-blocks 2p and 2p + 1
  __device__ __forceinline__ void load(const QRow& row, int i) {
    const uint8_t* b = row.q + (size_t)(i >> 2) * QInfo<Q>::BYTES;  // 16-byte aligned (144 and 176 bytes)
    p = i & 3;
    const uint4 h = __ldg(reinterpret_cast<const uint4*>(b));
    hdr[0] = h.x; hdr[1] = h.y; hdr[2] = h.z; hdr[3] = h.w;
    const uint4* pq = reinterpret_cast<const uint4*>(b + (FIVE ? 48 : 16) + 32 * p);
    const uint4 q0 = __ldg(pq), q1 = __ldg(pq + 1);
    qs[0] = q0.x; qs[1] = q0.y; qs[2] = q0.z; qs[3] = q0.w; qs[4] = q1.x; qs[5] = q1.y; qs[6] = q1.z; qs[7] = q1.w;
    if (FIVE) {
      const uint4* ph = reinterpret_cast<const uint4*>(b + 16);
      const uint4 h0 = __ldg(ph), h1 = __ldg(ph + 1);
      qh[0] = h0.x; qh[1] = h0.y; qh[2] = h0.z; qh[3] = h0.w; qh[4] = h1.x; qh[5] = h1.y; qh[6] = h1.z; qh[7] = h1.w;
    }
  }
  // byte k of the 12 bytes of scales and mins (selects, not an index: a runtime index would put hdr in local memory)
  __device__ __forceinline__ int sbyte(int k) const {
    const uint32_t w = k < 4 ? hdr[1] : k < 8 ? hdr[2] : hdr[3];
    return (w >> (8 * (k & 3))) & 0xff;
  }
  // one row at a time (R == 1): a pair's registers leave no room for more
  template <int M, int R, typename U>
  __device__ static __forceinline__ void dot(const U (&us)[R], const int8_t* xq, const float2* xd, int K, int i, int rows, float (&acc)[R][M]) {
    static_assert(R == 1, "K-quant pairs take one row per warp");
    us[0].template dot1<M>(xq, xd, K, i, rows, acc);
  }
  template <int M>
  __device__ __forceinline__ void dot1(const int8_t* xq, const float2* xd, int K, int i, int rows, float (&acc)[1][M]) const {
    const float d = f16_bits(hdr[0]), dmin = f16_bits(hdr[0] >> 16);
#pragma unroll
    for (int half = 0; half < 2; half++) {
      const int s = 2 * p + half;  // get_scale_min_k4
      int sc, m;
      if (s < 4) {
        sc = sbyte(s) & 63;
        m = sbyte(s + 4) & 63;
      } else {
        sc = (sbyte(s + 4) & 0xF) | ((sbyte(s - 4) >> 6) << 4);
        m = (sbyte(s + 4) >> 4) | ((sbyte(s) >> 6) << 4);
      }
      int wq[8];
#pragma unroll
      for (int k = 0; k < 8; k++) {
        wq[k] = (int)((qs[k] >> (4 * half)) & NIBBLES);
        if (FIVE) wq[k] |= (int)(((qh[k] >> s) & 0x01010101u) << 4);
      }
      const int(&wq1)[1][8] = reinterpret_cast<const int(&)[1][8]>(wq);
      const float scale[1] = {d * sc}, off[1] = {dmin * m};
      dot_q8<M, 1>(wq1, scale, scale, off, xq, xd, K, 2 * i + half, rows, acc);
    }
  }
};
template <> struct MvUnit<Q4_K> : KPair<Q4_K> {};
template <> struct MvUnit<Q5_K> : KPair<Q5_K> {};

template <typename T, typename O, int Q, int M, int R>
__device__ void mmvq(O* out, const int8_t* xq, const float2* xd, const uint8_t* w, const T* bias, int act, int N, int K, int wpr, int rows,
                     int res) {
  xq += (size_t)blockIdx.y * M * K;
  xd += (size_t)blockIdx.y * M * (K / 32);
  out += (size_t)blockIdx.y * M * N;
  rows = min(rows - (int)blockIdx.y * M, M);
  quant_gemv<Q, MvUnit<Q>, M, R>(out, w, bias, act, N, K, wpr, rows, res != 0, [&](const MvUnit<Q> (&un)[R], int u, float (&acc)[R][M]) {
    MvUnit<Q>::template dot<M, R>(un, xq, xd, K, u, rows, acc);
  });
}

// quantize_q8_<dtype>, quantize_q8_perm_<dtype>, norm_quantize_q8_<dtype>, gated_quantize_q8_<dtype>; mmvq<M>_<quant>_<dtype>[_f32out][_r4] for M in 1, 2, 4, 8 (fewer rows run in the next M up: the
// loops stop at `rows`); `res` adds into out; _f32out writes f32 (a quantized LM head writing the logits).
#define MV_QUANTIZE(T, S) \
  extern "C" __global__ void __launch_bounds__(MV_THREADS) quantize_q8_##S(int8_t* xq, float2* xd, const T* x, int groups) {                 \
    pdl_begin();                                                                                                                             \
    quantize_q8<T>(xq, xd, x, nullptr, 1, groups);                                                                                           \
  }
#define MV_QUANTIZE_PERM(T, S)                                                                                          \
  extern "C" __global__ void __launch_bounds__(MV_THREADS)                                                              \
      quantize_q8_perm_##S(int8_t* xq, float2* xd, const T* x, const int* perm, int K, int groups) {               \
    pdl_begin();                                                                                                   \
    quantize_q8<T>(xq, xd, x, perm, K, groups);                                                                    \
  }
#define MV_QUANTIZE_TOKENS(T, S)                                                                                        \
  extern "C" __global__ void __launch_bounds__(MV_THREADS)                                                              \
      quantize_tokens_##S(int8_t* xq, float2* xd, const T* x, const float* mult, int K) {                               \
    pdl_begin();                                                                                                        \
    quantize_tokens<T>(xq, xd, x, mult, K);                                                                             \
  }                                                                                                                     \
  extern "C" __global__ void __launch_bounds__(MV_THREADS) w8a8_epilogue_##S(T* out, const int* acc, const float2* xd,  \
      const float* sw, const T* bias, int act, int N, int groups, int rows, int res) {                                  \
    pdl_begin();                                                                                                        \
    scaled_epilogue<T, T, int>(out, acc, reinterpret_cast<const float*>(xd), 2 * groups, sw, bias, act, N, rows, res);  \
  }
#define MV_NORM_QUANTIZE(T, S)                                                                                              \
  extern "C" __global__ void __launch_bounds__(MV_THREADS)                                                                  \
      norm_quantize_q8_##S(int8_t* xq, float2* xd, const T* x, const T* gamma, const T* beta, float eps, int H, int rms) {  \
    pdl_begin();                                                                                                            \
    norm_quantize_q8<T>(xq, xd, x, gamma, beta, eps, H, rms != 0);                                                          \
  }
#define MV_GATED_QUANTIZE(T, S)                                                                                            \
  extern "C" __global__ void __launch_bounds__(MV_THREADS)                                                                 \
      gated_quantize_q8_##S(int8_t* xq, float2* xd, const T* x, int act, int K, int groups) {                              \
    pdl_begin();                                                                                                           \
    gated_quantize_q8<T>(xq, xd, x, act, K, groups);                                                                       \
  }
#define MV_ARGS(T, O) O* out, const int8_t* xq, const float2* xd, const uint8_t* w, const T* bias, int act, int N, int K, int wpr, int rows, int res
#define MV_MR(T, S, O, OS, Q, QS, M, R, RS)                                                                \
  extern "C" __global__ void __launch_bounds__(MV_THREADS) mmvq##M##_##QS##_##S##OS##RS(MV_ARGS(T, O)) {  \
    mmvq<T, O, Q, M, R>(out, xq, xd, w, bias, act, N, K, wpr, rows, res);                                 \
  }
#define MV_QR(T, S, O, OS, Q, QS, R, RS) MV_MR(T, S, O, OS, Q, QS, 1, R, RS) MV_MR(T, S, O, OS, Q, QS, 2, R, RS) \
  MV_MR(T, S, O, OS, Q, QS, 4, R, RS) MV_MR(T, S, O, OS, Q, QS, 8, R, RS)
#define MV_Q(T, S, O, OS, Q, QS) MV_QR(T, S, O, OS, Q, QS, 1, )
// the int4 types also with 4 weight rows per warp (_r4), for large layers (src/backends/cuda/qlinear.ts mmvqRows)
#define MV_Q4(T, S, O, OS, Q, QS) MV_QR(T, S, O, OS, Q, QS, 1, ) MV_QR(T, S, O, OS, Q, QS, 4, _r4)
#define MV_ALL(T, S, O, OS) MV_Q(T, S, O, OS, Q8_0, q8_0) MV_Q(T, S, O, OS, Q4_0, q4_0) MV_Q(T, S, O, OS, Q4_K, q4_k) \
  MV_Q(T, S, O, OS, Q5_K, q5_k) MV_Q(T, S, O, OS, Q6_K, q6_k) MV_Q4(T, S, O, OS, Q4_G32, q4_g32) MV_Q4(T, S, O, OS, Q4_G64, q4_g64) \
  MV_Q4(T, S, O, OS, Q4_G128, q4_g128) MV_Q(T, S, O, OS, W8A8, w8a8)
MV_QUANTIZE(__half, f16)
MV_QUANTIZE(__nv_bfloat16, bf16)
MV_QUANTIZE_PERM(__half, f16)
MV_QUANTIZE_PERM(__nv_bfloat16, bf16)
MV_QUANTIZE_TOKENS(float, f32)
MV_QUANTIZE_TOKENS(__half, f16)
MV_QUANTIZE_TOKENS(__nv_bfloat16, bf16)
MV_Q(float, f32, float, , W8A8, w8a8)
MV_NORM_QUANTIZE(__half, f16)
MV_NORM_QUANTIZE(__nv_bfloat16, bf16)
MV_GATED_QUANTIZE(__half, f16)
MV_GATED_QUANTIZE(__nv_bfloat16, bf16)
MV_ALL(__half, f16, __half, )
MV_ALL(__nv_bfloat16, bf16, __nv_bfloat16, )
MV_ALL(__half, f16, float, _f32out)
MV_ALL(__nv_bfloat16, bf16, float, _f32out)
