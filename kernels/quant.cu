// GEMV over ggml-quantized weights: out[m, j] = act(x[m] . dequant(w[j]) + bias[j]) (+ out[m, j] with res), for
// 1 to 8 rows of x per block row (blockIdx.y takes rows 8y .. 8y + 7, as kernels/gemv.cu does), w [N, K] stored
// as ggml blocks row after row. Reference: src/loaders/quant.ts (dequantizeRow) then src/backends/cpu/linear.ts.
// The blocks are read as they are and dequantized in registers: a lane takes a unit of 32 weights of a row (a
// Q8_0 or Q4_0 block; a sub-block of a K-quant super-block), forms sum(q * x) and sum(x) for each row of x, and
// applies the unit's scale and min once. Units go to lanes in order, so a warp reads consecutive bytes.
// Block layouts (ggml-common.h): Q8_0 32 weights in 34 bytes (f16 d, i8 q[32]); Q4_0 32 in 18 (f16 d, q[16]
// nibbles: weight e < 16 low, e >= 16 high, value (q - 8) d); Q4_K 256 in 144 (f16 d, f16 dmin, 12 bytes of
// 6-bit scales and mins, qs[128]); Q5_K 256 in 176 (d, dmin, scales, qh[32], qs[128]); Q6_K 256 in 210 (ql[128],
// qh[64], i8 scales[16], f16 d).
#include "common.cuh"

constexpr int QG_THREADS = 256;
constexpr int QG_WARPS = QG_THREADS / 32;

enum QType { Q8_0 = 0, Q4_0 = 1, Q4_K = 2, Q5_K = 3, Q6_K = 4 };

template <int Q> struct QInfo;
// bytes per block, units of 32 weights per block, units per lane whose loads go out together
template <> struct QInfo<Q8_0> { static constexpr int BYTES = 34, UNITS = 1, UNROLL = 4; };
template <> struct QInfo<Q4_0> { static constexpr int BYTES = 18, UNITS = 1, UNROLL = 4; };
template <> struct QInfo<Q4_K> { static constexpr int BYTES = 144, UNITS = 8, UNROLL = 4; };
template <> struct QInfo<Q5_K> { static constexpr int BYTES = 176, UNITS = 8, UNROLL = 2; };
template <> struct QInfo<Q6_K> { static constexpr int BYTES = 210, UNITS = 8, UNROLL = 2; };

// Two bytes at a 2-byte aligned address as 16 bits, and four bytes at a 2-byte aligned address as 32 bits.
__device__ __forceinline__ uint32_t ld16(const uint8_t* p) { return __ldg(reinterpret_cast<const uint16_t*>(p)); }
__device__ __forceinline__ uint32_t ld32_2(const uint8_t* p) { return ld16(p) | (ld16(p + 2) << 16); }
__device__ __forceinline__ float f16_bits(uint32_t h) { return __half2float(__ushort_as_half((unsigned short)(h & 0xffff))); }
// byte e (compile-time after unrolling) of a little-endian array of 32-bit words
__device__ __forceinline__ int byte_of(const uint32_t* w, int e) { return (w[e >> 2] >> (8 * (e & 3))) & 0xff; }

// One unit's raw quants (loaded before any is used) and its scales: weight e = scale(e / 16) * q(e) - min.
template <int Q> struct Unit;

template <> struct Unit<Q8_0> {
  uint32_t qs[8];
  float d;
  __device__ __forceinline__ void load(const uint8_t* row, int u) {
    const uint8_t* b = row + (size_t)u * 34;  // 2-byte aligned
    d = f16_bits(ld16(b));
#pragma unroll
    for (int i = 0; i < 8; i++) qs[i] = ld32_2(b + 2 + 4 * i);
  }
  __device__ __forceinline__ float q(int e) const { return (float)(int8_t)byte_of(qs, e); }
  __device__ __forceinline__ float scale(int) const { return d; }
  __device__ __forceinline__ float min_() const { return 0.f; }
};

template <> struct Unit<Q4_0> {
  uint32_t qs[4];
  float d;
  __device__ __forceinline__ void load(const uint8_t* row, int u) {
    const uint8_t* b = row + (size_t)u * 18;
    d = f16_bits(ld16(b));
#pragma unroll
    for (int i = 0; i < 4; i++) qs[i] = ld32_2(b + 2 + 4 * i);
  }
  __device__ __forceinline__ float q(int e) const {
    const int v = byte_of(qs, e & 15);
    return (float)((e < 16 ? v & 15 : v >> 4) - 8);
  }
  __device__ __forceinline__ float scale(int) const { return d; }
  __device__ __forceinline__ float min_() const { return 0.f; }
};

// d * scale and dmin * min of sub-block s of a Q4_K/Q5_K super-block at b (6-bit values packed in 12 bytes at b + 4,
// get_scale_min_k4); the byte loads hit the cache line the quants came from
__device__ __forceinline__ void k4_scales(const uint8_t* b, int s, float& scale, float& min) {
  const uint8_t* q = b + 4;
  int sc, m;
  if (s < 4) {
    sc = __ldg(q + s) & 63;
    m = __ldg(q + s + 4) & 63;
  } else {
    const int hi = __ldg(q + s + 4);
    sc = (hi & 0xF) | ((__ldg(q + s - 4) >> 6) << 4);
    m = (hi >> 4) | ((__ldg(q + s) >> 6) << 4);
  }
  const uint32_t dm = __ldg(reinterpret_cast<const uint32_t*>(b));
  scale = f16_bits(dm) * sc;
  min = f16_bits(dm >> 16) * m;
}

template <> struct Unit<Q4_K> {
  uint32_t qs[8];  // the 32 bytes holding this sub-block's nibbles (and its neighbour's)
  float sc, mn;
  int shift;
  __device__ __forceinline__ void load(const uint8_t* row, int u) {
    const int s = u & 7;
    const uint8_t* b = row + (size_t)(u >> 3) * 144;  // 16-byte aligned
    const uint4* p = reinterpret_cast<const uint4*>(b + 16 + 32 * (s >> 1));
    const uint4 a = __ldg(p), c = __ldg(p + 1);
    qs[0] = a.x; qs[1] = a.y; qs[2] = a.z; qs[3] = a.w; qs[4] = c.x; qs[5] = c.y; qs[6] = c.z; qs[7] = c.w;
    shift = 4 * (s & 1);
    k4_scales(b, s, sc, mn);
  }
  __device__ __forceinline__ float q(int e) const { return (float)((byte_of(qs, e) >> shift) & 15); }
  __device__ __forceinline__ float scale(int) const { return sc; }
  __device__ __forceinline__ float min_() const { return mn; }
};

template <> struct Unit<Q5_K> {
  uint32_t qs[8], qh[8];
  float sc, mn;
  int s;
  __device__ __forceinline__ void load(const uint8_t* row, int u) {
    s = u & 7;
    const uint8_t* b = row + (size_t)(u >> 3) * 176;  // 16-byte aligned
    const uint4* ph = reinterpret_cast<const uint4*>(b + 16);
    const uint4* pl = reinterpret_cast<const uint4*>(b + 48 + 32 * (s >> 1));
    const uint4 h0 = __ldg(ph), h1 = __ldg(ph + 1), l0 = __ldg(pl), l1 = __ldg(pl + 1);
    qh[0] = h0.x; qh[1] = h0.y; qh[2] = h0.z; qh[3] = h0.w; qh[4] = h1.x; qh[5] = h1.y; qh[6] = h1.z; qh[7] = h1.w;
    qs[0] = l0.x; qs[1] = l0.y; qs[2] = l0.z; qs[3] = l0.w; qs[4] = l1.x; qs[5] = l1.y; qs[6] = l1.z; qs[7] = l1.w;
    k4_scales(b, s, sc, mn);
  }
  __device__ __forceinline__ float q(int e) const {
    return (float)(((byte_of(qs, e) >> (4 * (s & 1))) & 15) | (((byte_of(qh, e) >> s) & 1) << 4));
  }
  __device__ __forceinline__ float scale(int) const { return sc; }
  __device__ __forceinline__ float min_() const { return mn; }
};

template <> struct Unit<Q6_K> {
  uint32_t ql[8], qh[8];  // 32 bytes each (blocks are 210 bytes: 2-byte aligned)
  float s0, s1;
  int lo_shift, hi_shift;
  __device__ __forceinline__ void load(const uint8_t* row, int u) {
    const int v = u & 7, h = v >> 2, k = v & 3;
    const uint8_t* b = row + (size_t)(u >> 3) * 210;
    const uint8_t* pl = b + 64 * h + 32 * (k & 1);
    const uint8_t* ph = b + 128 + 32 * h;
#pragma unroll
    for (int i = 0; i < 8; i++) {
      ql[i] = ld32_2(pl + 4 * i);
      qh[i] = ld32_2(ph + 4 * i);
    }
    const uint32_t sc = ld16(b + 192 + 2 * v);
    const float d = f16_bits(ld16(b + 208));
    s0 = d * (float)(int8_t)(sc & 0xff);
    s1 = d * (float)(int8_t)(sc >> 8);
    lo_shift = 4 * (k >> 1);
    hi_shift = 2 * k;
  }
  __device__ __forceinline__ float q(int e) const {
    return (float)((((byte_of(ql, e) >> lo_shift) & 15) | (((byte_of(qh, e) >> hi_shift) & 3) << 4)) - 32);
  }
  // two scales per unit: weights 0-15 and 16-31
  __device__ __forceinline__ float scale(int half) const { return half ? s1 : s0; }
  __device__ __forceinline__ float min_() const { return 0.f; }
};

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
    acc[m] += w.scale(0) * lo + w.scale(1) * hi - w.min_() * sx;
  }
}

template <typename T, typename O, int Q, int M>
__device__ void qgemv(O* out, const T* x, const uint8_t* w, const T* bias, int act, int N, int K, int wpr, int rows, int res) {
  constexpr int UNROLL = QInfo<Q>::UNROLL;
  x += (size_t)blockIdx.y * M * K;
  out += (size_t)blockIdx.y * M * N;
  rows = min(rows - (int)blockIdx.y * M, M);
  __shared__ float partial[QG_WARPS][M];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int j = blockIdx.x * (QG_WARPS / wpr) + warp / wpr, part = warp % wpr;
  const bool live = j < N;
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; m++) acc[m] = 0.f;
  const int units = K / 32;
  const uint8_t* row = w + (size_t)j * (K / (32 * QInfo<Q>::UNITS)) * QInfo<Q>::BYTES;
  if (live) {
    const int stride = wpr * 32;
    for (int base = part * 32 + lane; base < units; base += stride * UNROLL) {
      Unit<Q> un[UNROLL];
#pragma unroll
      for (int i = 0; i < UNROLL; i++) if (base + i * stride < units) un[i].load(row, base + i * stride);
#pragma unroll
      for (int i = 0; i < UNROLL; i++) if (base + i * stride < units) unit_dot<Q, T, M>(un[i], x, K, base + i * stride, rows, acc);
    }
  }
#pragma unroll
  for (int m = 0; m < M; m++) acc[m] = warp_sum(acc[m]);
  if (wpr > 1) {
    if (lane == 0) {
#pragma unroll
      for (int m = 0; m < M; m++) partial[warp][m] = acc[m];
    }
    __syncthreads();
    if (part != 0) return;
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
  QG_Q(T, S, O, OS, Q5_K, q5_k) QG_Q(T, S, O, OS, Q6_K, q6_k)
#define QG(T, S) QG_ALL(T, S, T, )
FOR_EACH_DTYPE(QG)
QG_ALL(__half, f16, float, _f32out)
QG_ALL(__nv_bfloat16, bf16, float, _f32out)
