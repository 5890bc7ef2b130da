// The ggml block formats as the quantized kernels read them (kernels/quant.cu, kernels/mmvq.cu, kernels/dequant.cu):
// one unit of 32 weights of a row at a time (a Q8_0 or Q4_0 block; a sub-block of a K-quant super-block), its raw
// quants loaded before any is used, and its scales: weight e = scale(e / 16) * q(e) - min. word(i) packs weights
// 4i .. 4i + 3 as four signed bytes (for dp4a), and weight e = scale(e / 16) * byte e - word_min().
// Block layouts (ggml-common.h): Q8_0 32 weights in 34 bytes (f16 d, i8 q[32]); Q4_0 32 in 18 (f16 d, q[16]
// nibbles: weight e < 16 low, e >= 16 high, value (q - 8) d); Q4_K 256 in 144 (f16 d, f16 dmin, 12 bytes of
// 6-bit scales and mins, qs[128]); Q5_K 256 in 176 (d, dmin, scales, qh[32], qs[128]); Q6_K 256 in 210 (ql[128],
// qh[64], i8 scales[16], f16 d). Reference: src/loaders/quant.ts (dequantizeRow).
// Q8_0 alone is laid out otherwise on the GPU: its 34-byte blocks allow only 2-byte loads, which held the GEMV to
// 2.1 TB/s on an H100 where 16-byte loads of fp16 weights reach 2.8. A [N, K] Q8_0 weight is stored as its quants,
// [N, K] int8 (rows 32-byte aligned), then its scales, [N, K / 32] f16: the same bytes as the blocks, rearranged
// as they upload (q8_0_from_blocks, kernels/dequant.cu) or written so by the quantizer (quantize_weight_q8_0).
// test/gpu/helpers.ts (q8_0Blocks) undoes it on the host.
// Q4_G32/64/128 are the grouped int4 of AWQ and GPTQ checkpoints in Peregrine's layout (src/loaders/int4.ts): [N, K / 2]
// nibbles (byte e of a unit of 32 holds weights e and e + 16, as Q4_0), then [N, K / g] f16 scales, [N, K / g] u8
// zeros and the [K] input order; weight e = scale * (q(e) - zero). The input order is the caller's: x arrives
// gathered into it (kernels/mmvq.cu quantize_q8_perm, kernels/rows.cu), or the dequantized rows are scattered by it.
#pragma once
#include <cuda_fp8.h>
#include "common.cuh"

// 4 bits of each byte of a 32-bit word
constexpr uint32_t NIBBLES = 0x0F0F0F0Fu;

enum QType { Q8_0 = 0, Q4_0 = 1, Q4_K = 2, Q5_K = 3, Q6_K = 4, Q4_G32 = 5, Q4_G64 = 6, Q4_G128 = 7, W8A8 = 8, FP8 = 9 };

template <int Q> struct QInfo;
// bytes per block, units of 32 weights per block, units per lane whose loads go out together
template <> struct QInfo<Q8_0> { static constexpr int BYTES = 34, UNITS = 1, UNROLL = 4; };
template <> struct QInfo<Q4_0> { static constexpr int BYTES = 18, UNITS = 1, UNROLL = 4; };
template <> struct QInfo<Q4_K> { static constexpr int BYTES = 144, UNITS = 8, UNROLL = 4; };
template <> struct QInfo<Q5_K> { static constexpr int BYTES = 176, UNITS = 8, UNROLL = 2; };
template <> struct QInfo<Q6_K> { static constexpr int BYTES = 210, UNITS = 8, UNROLL = 2; };
// the int4 rows are not blocks of bytes (quant_row places them); a unit is 16 bytes, so more of them go out together
template <int G> struct QInfo4G { static constexpr int BYTES = 16, UNITS = 1, UNROLL = 8, GROUP = G; };
template <> struct QInfo<Q4_G32> : QInfo4G<32> {};
template <> struct QInfo<Q4_G64> : QInfo4G<64> {};
template <> struct QInfo<Q4_G128> : QInfo4G<128> {};
// SmoothQuant's int8 rows (src/loaders/w8a8.ts): [N, K] int8, then a f32 scale per row, then the inputs' multipliers
template <> struct QInfo<W8A8> { static constexpr int BYTES = 32, UNITS = 1, UNROLL = 4; };
// E4M3 rows (src/loaders/fp8.ts): [N, K] bytes, then a f32 scale per row; read by the float GEMV only
template <> struct QInfo<FP8> { static constexpr int BYTES = 32, UNITS = 1, UNROLL = 4; };

// Two bytes at a 2-byte aligned address as 16 bits, and four bytes at a 2-byte aligned address as 32 bits.
__device__ __forceinline__ uint32_t ld16(const uint8_t* p) { return __ldg(reinterpret_cast<const uint16_t*>(p)); }
__device__ __forceinline__ uint32_t ld32_2(const uint8_t* p) { return ld16(p) | (ld16(p + 2) << 16); }
__device__ __forceinline__ float f16_bits(uint32_t h) { return __half2float(__ushort_as_half((unsigned short)(h & 0xffff))); }
// byte e (compile-time after unrolling) of a little-endian array of 32-bit words
__device__ __forceinline__ int byte_of(const uint32_t* w, int e) { return (w[e >> 2] >> (8 * (e & 3))) & 0xff; }

// Where row j of a [N, K] weight lies: its blocks (q), or for Q8_0 its quants (q) and its scales (s), for the int4
// types also its zeros (z).
struct QRow {
  const uint8_t* q;
  const uint8_t* s;
  const uint8_t* z;
};
template <int Q> __device__ __forceinline__ QRow quant_row(const uint8_t* w, int j, int N, int K) {
  return {w + (size_t)j * (K / (32 * QInfo<Q>::UNITS)) * QInfo<Q>::BYTES, nullptr, nullptr};
}
template <> __device__ __forceinline__ QRow quant_row<Q8_0>(const uint8_t* w, int j, int N, int K) {
  return {w + (size_t)j * K, w + (size_t)N * K + (size_t)j * (K / 32) * 2, nullptr};
}
template <int G> __device__ __forceinline__ QRow int4_row(const uint8_t* w, int j, int N, int K) {
  const size_t scales = (size_t)N * K / 2, groups = (size_t)N * (K / G);
  return {w + (size_t)j * (K / 2), w + scales + (size_t)j * (K / G) * 2, w + scales + 2 * groups + (size_t)j * (K / G)};
}
template <> __device__ __forceinline__ QRow quant_row<Q4_G32>(const uint8_t* w, int j, int N, int K) { return int4_row<32>(w, j, N, K); }
template <> __device__ __forceinline__ QRow quant_row<Q4_G64>(const uint8_t* w, int j, int N, int K) { return int4_row<64>(w, j, N, K); }
template <> __device__ __forceinline__ QRow quant_row<Q4_G128>(const uint8_t* w, int j, int N, int K) { return int4_row<128>(w, j, N, K); }
template <> __device__ __forceinline__ QRow quant_row<W8A8>(const uint8_t* w, int j, int N, int K) {
  return {w + (size_t)j * K, w + ((size_t)N * K + 15) / 16 * 16 + 4 * (size_t)j, nullptr};
}
template <> __device__ __forceinline__ QRow quant_row<FP8>(const uint8_t* w, int j, int N, int K) { return quant_row<W8A8>(w, j, N, K); }

// One unit's raw quants (loaded before any is used) and its scales: weight e = scale(e / 16) * q(e) - min.
template <int Q> struct Unit;

template <> struct Unit<Q8_0> {
  static constexpr bool SIGNED_WORDS = true;  // word()'s bytes
  uint32_t qs[8];
  float d;
  __device__ __forceinline__ void load(const QRow& row, int u) {
    const uint4* p = reinterpret_cast<const uint4*>(row.q + (size_t)u * 32);  // the GPU layout: 32-byte aligned
    const uint4 a = __ldg(p), b = __ldg(p + 1);
    qs[0] = a.x; qs[1] = a.y; qs[2] = a.z; qs[3] = a.w; qs[4] = b.x; qs[5] = b.y; qs[6] = b.z; qs[7] = b.w;
    d = f16_bits(ld16(row.s + 2 * (size_t)u));
  }
  __device__ __forceinline__ float q(int e) const { return (float)(int8_t)byte_of(qs, e); }
  __device__ __forceinline__ float scale(int) const { return d; }
  __device__ __forceinline__ float min_() const { return 0.f; }
  __device__ __forceinline__ int word(int i) const { return (int)qs[i]; }
  __device__ __forceinline__ float word_min() const { return 0.f; }
};

template <> struct Unit<Q4_0> {
  static constexpr bool SIGNED_WORDS = false;  // word()'s bytes
  uint32_t qs[4];
  float d;
  __device__ __forceinline__ void load(const QRow& row, int u) {
    const uint8_t* b = row.q + (size_t)u * 18;
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
  // the nibbles unsigned: weight = d * word - 8 d
  __device__ __forceinline__ int word(int i) const { return (int)(i < 4 ? qs[i] & NIBBLES : (qs[i - 4] >> 4) & NIBBLES); }
  __device__ __forceinline__ float word_min() const { return 8.f * d; }
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
  static constexpr bool SIGNED_WORDS = false;  // word()'s bytes
  uint32_t qs[8];  // the 32 bytes holding this sub-block's nibbles (and its neighbour's)
  float sc, mn;
  int shift;
  __device__ __forceinline__ void load(const QRow& row, int u) {
    const int s = u & 7;
    const uint8_t* b = row.q + (size_t)(u >> 3) * 144;  // 16-byte aligned
    const uint4* p = reinterpret_cast<const uint4*>(b + 16 + 32 * (s >> 1));
    const uint4 a = __ldg(p), c = __ldg(p + 1);
    qs[0] = a.x; qs[1] = a.y; qs[2] = a.z; qs[3] = a.w; qs[4] = c.x; qs[5] = c.y; qs[6] = c.z; qs[7] = c.w;
    shift = 4 * (s & 1);
    k4_scales(b, s, sc, mn);
  }
  __device__ __forceinline__ float q(int e) const { return (float)((byte_of(qs, e) >> shift) & 15); }
  __device__ __forceinline__ float scale(int) const { return sc; }
  __device__ __forceinline__ float min_() const { return mn; }
  __device__ __forceinline__ int word(int i) const { return (int)((qs[i] >> shift) & NIBBLES); }
  __device__ __forceinline__ float word_min() const { return mn; }
};

template <> struct Unit<Q5_K> {
  static constexpr bool SIGNED_WORDS = false;  // word()'s bytes
  uint32_t qs[8], qh[8];
  float sc, mn;
  int s;
  __device__ __forceinline__ void load(const QRow& row, int u) {
    s = u & 7;
    const uint8_t* b = row.q + (size_t)(u >> 3) * 176;  // 16-byte aligned
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
  __device__ __forceinline__ int word(int i) const { return (int)(((qs[i] >> (4 * (s & 1))) & NIBBLES) | (((qh[i] >> s) & 0x01010101u) << 4)); }
  __device__ __forceinline__ float word_min() const { return mn; }
};

template <> struct Unit<Q6_K> {
  static constexpr bool SIGNED_WORDS = true;  // word()'s bytes
  uint32_t ql[8], qh[8];  // 32 bytes each (blocks are 210 bytes: 2-byte aligned)
  float s0, s1;
  int lo_shift, hi_shift;
  __device__ __forceinline__ void load(const QRow& row, int u) {
    const int v = u & 7, h = v >> 2, k = v & 3;
    const uint8_t* b = row.q + (size_t)(u >> 3) * 210;
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
  // q - 32 per byte (wrapping subtraction, so each byte is the signed value)
  __device__ __forceinline__ int word(int i) const {
    return (int)__vsub4(((ql[i] >> lo_shift) & NIBBLES) | (((qh[i] >> hi_shift) & 0x03030303u) << 4), 0x20202020u);
  }
  __device__ __forceinline__ float word_min() const { return 0.f; }
};

// Grouped int4: unit u's 16 bytes of nibbles in one load, its group's scale d and zero z; weight e = d (q - z), so
// the float path reads q(e) - z with no min, the integer path the raw nibbles with word_min = d z.
template <int G> struct Unit4G {
  static constexpr bool SIGNED_WORDS = false;  // word()'s bytes
  uint32_t qs[4];
  float d;
  int z;
  __device__ __forceinline__ void load(const QRow& row, int u) {
    const uint4 a = __ldg(reinterpret_cast<const uint4*>(row.q + (size_t)u * 16));  // rows of K / 2 bytes, K % 32 == 0
    qs[0] = a.x; qs[1] = a.y; qs[2] = a.z; qs[3] = a.w;
    const int t = u / (G / 32);
    d = f16_bits(ld16(row.s + 2 * (size_t)t));
    z = __ldg(row.z + t);
  }
  __device__ __forceinline__ float q(int e) const {
    const int v = byte_of(qs, e & 15);
    return (float)((e < 16 ? v & 15 : v >> 4) - z);
  }
  __device__ __forceinline__ float scale(int) const { return d; }
  __device__ __forceinline__ float min_() const { return 0.f; }
  __device__ __forceinline__ int word(int i) const { return (int)(i < 4 ? qs[i] & NIBBLES : (qs[i - 4] >> 4) & NIBBLES); }
  __device__ __forceinline__ float word_min() const { return d * (float)z; }
};
template <> struct Unit<Q4_G32> : Unit4G<32> {};
template <> struct Unit<Q4_G64> : Unit4G<64> {};
template <> struct Unit<Q4_G128> : Unit4G<128> {};

// 32 one-byte weights of a row (K % 32 == 0, so 32-byte aligned) and the row's f32 scale: W8A8's and FP8's units.
struct RowBytes32 {
  uint32_t qs[8];
  float d;
  __device__ __forceinline__ void load(const QRow& row, int u) {
    const uint4* p = reinterpret_cast<const uint4*>(row.q + (size_t)u * 32);
    const uint4 a = __ldg(p), b = __ldg(p + 1);
    qs[0] = a.x; qs[1] = a.y; qs[2] = a.z; qs[3] = a.w; qs[4] = b.x; qs[5] = b.y; qs[6] = b.z; qs[7] = b.w;
    d = __ldg(reinterpret_cast<const float*>(row.s));
  }
  __device__ __forceinline__ float scale(int) const { return d; }
  __device__ __forceinline__ float min_() const { return 0.f; }
};

// W8A8: int8 weights; x arrives quantized per token (kernels/mmvq.cu quantize_tokens), so only the integer GEMV
// reads these.
template <> struct Unit<W8A8> : RowBytes32 {
  __device__ __forceinline__ float q(int e) const { return (float)(int8_t)byte_of(qs, e); }
  __device__ __forceinline__ int word(int i) const { return (int)qs[i]; }
  __device__ __forceinline__ float word_min() const { return 0.f; }
};

// FP8: E4M3 weights; the float GEMV converts each to float (cvt.f16x2.e4m3x2 on sm_89 and later).
template <> struct Unit<FP8> : RowBytes32 {
  __device__ __forceinline__ float q(int e) const {
    return __half2float(__half(__nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)byte_of(qs, e), __NV_E4M3)));
  }
};

// A lane's unit as the float GEMV takes it: 32 weights (Unit<Q>), UNROLL of them per round.
template <int Q> struct Unit32 : Unit<Q> {
  static constexpr int WEIGHTS = 32, UNROLL = QInfo<Q>::UNROLL;
};

// The body of a quantized GEMV of 256 threads (kernels/quant.cu, mmvq.cu), out and rows already offset to the
// block's group of M rows: each warp takes R consecutive output columns j0 .. j0 + R - 1 (R > 1 lets the rows of x
// a lane loads serve R weight rows: a 4-bit row of 4096 inputs is only 2 KiB, too short to keep a warp's loads in
// flight), `wpr` warps share them; lane `lane` of part p takes units p * 32 + lane, + wpr * 32, ... of each weight
// row (units of U::WEIGHTS weights, loaded by U::load(row, index)) in rounds of U::UNROLL / R whose loads all go out
// before any is used; dot(units[R], index, acc) adds the units' products into acc[R][M]; gemv_finish reduces and
// writes each column. Rows past N are read as row N - 1 and not written.
template <int Q, typename U, int M, int R, typename T, typename O, typename Dot>
__device__ __forceinline__ void quant_gemv(O* out, const uint8_t* w, const T* bias, int act, int N, int K, int wpr, int rows, bool res, Dot dot) {
  constexpr int UNROLL = U::UNROLL / R > 0 ? U::UNROLL / R : 1, WARPS = 256 / 32;
  __shared__ float partial[R][WARPS][M];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int j0 = (blockIdx.x * (WARPS / wpr) + warp / wpr) * R, part = warp % wpr;
  float acc[R][M];
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int m = 0; m < M; m++) acc[r][m] = 0.f;
  const int units = K / U::WEIGHTS, stride = wpr * 32;
  QRow row[R];
#pragma unroll
  for (int r = 0; r < R; r++) row[r] = quant_row<Q>(w, min(j0 + r, N - 1), N, K);
  U un[UNROLL][R];
  auto load = [&](int base) {
#pragma unroll
    for (int i = 0; i < UNROLL; i++)
      if (base + i * stride < units)
#pragma unroll
        for (int r = 0; r < R; r++) un[i][r].load(row[r], base + i * stride);
  };
  const int first = part * 32 + lane;
  // the first round of weight loads goes out before pdl_begin() (kernels/common.cuh), so that under programmatic
  // dependent launch it overlaps the previous kernel's tail: no kernel of a pass writes weights (those written on the
  // device while a model loads are followed by a stream synchronisation); x, written by the kernel before, is read after
  if (j0 < N && first < units) load(first);
  pdl_begin();
  if (j0 < N) {
    for (int base = first; base < units; base += stride * UNROLL) {
      if (base != first) load(base);
#pragma unroll
      for (int i = 0; i < UNROLL; i++) if (base + i * stride < units) dot(un[i], base + i * stride, acc);
    }
  }
#pragma unroll
  for (int r = 0; r < R; r++) gemv_finish<T, O, M>(acc[r], partial[r], out, bias, act, N, j0 + r, j0 + r < N, wpr, rows, res);
}
