// Dequantizing rows j0 .. j0 + rows - 1 of a ggml-quantized weight [N, K] into a dense [rows, K] buffer of the
// compute dtype, for the quantized layers of a pass of more rows than the GEMV serves (a prompt, a large batch):
// src/backends/cuda/qlinear.ts dequantizes the weight a chunk of rows at a time into a buffer small enough to stay in
// L2 and hands it to cuBLASLt. One thread per unit of 32 weights (kernels/quant-blocks.cuh), written as 16-byte
// vectors. Reference: src/loaders/quant.ts (dequantizeRow), src/loaders/int4.ts (dequantizeInt4Row): an int4 weight
// whose inputs are stored in another order (`perm`, GPTQ's act-order) has each value written to its input's column.
#include "quant-blocks.cuh"

template <typename T, int Q>
__device__ void dequant(T* out, const uint8_t* w, const int* perm, int N, int K, int j0, int rows) {
  const int per_row = K / 32;
  const size_t u = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (u >= (size_t)rows * per_row) return;
  const int r = (int)(u / per_row), k = (int)(u % per_row);
  Unit<Q> un;
  un.load(quant_row<Q>(w, j0 + r, N, K), k);
  const float mn = un.min_();
  T* o = out + (size_t)r * K + (size_t)k * 32;
  if (perm) {
    const int* p = perm + (size_t)k * 32;
#pragma unroll
    for (int e = 0; e < 32; e++) out[(size_t)r * K + __ldg(p + e)] = from_f<T>(un.scale(e >> 4) * un.q(e) - mn);
    return;
  }
  constexpr int V = Vec<T>::N;
#pragma unroll
  for (int i = 0; i < 32 / V; i++) {
    Vec<T> v;
#pragma unroll
    for (int e = 0; e < V; e++) v.v[e] = from_f<T>(un.scale((i * V + e) >> 4) * un.q(i * V + e) - mn);
    store_vec(o + i * V, v);
  }
}

// dequant_<quant>_<dtype>
#define DQ(T, S, Q, QS) \
  extern "C" __global__ void __launch_bounds__(256)                                                              \
      dequant_##QS##_##S(T* out, const uint8_t* w, const int* perm, int N, int K, int j0, int rows) {           \
    pdl_begin();                                                                                                \
    dequant<T, Q>(out, w, perm, N, K, j0, rows);                                                                \
  }
#define DQ_ALL(T, S) DQ(T, S, Q8_0, q8_0) DQ(T, S, Q4_0, q4_0) DQ(T, S, Q4_K, q4_k) DQ(T, S, Q5_K, q5_k) DQ(T, S, Q6_K, q6_k) \
  DQ(T, S, Q4_G32, q4_g32) DQ(T, S, Q4_G64, q4_g64) DQ(T, S, Q4_G128, q4_g128)
FOR_EACH_DTYPE(DQ_ALL)

// Q8_0 blocks as a GGUF file holds them (34 bytes each, f16 d then 32 int8 quants) into the GPU's layout
// (kernels/quant-blocks.cuh): the quants of block b at 32 b, its d at 32 n + 2 b. One thread per block.
extern "C" __global__ void __launch_bounds__(256) q8_0_from_blocks(uint8_t* out, const uint8_t* blocks, unsigned long long n) {
  pdl_begin();
  const size_t b = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= n) return;
  const uint8_t* in = blocks + b * 34;  // 2-byte aligned
  uint32_t q[8];
#pragma unroll
  for (int i = 0; i < 8; i++) q[i] = ld32_2(in + 2 + 4 * i);
  uint4* o = reinterpret_cast<uint4*>(out + b * 32);
  o[0] = make_uint4(q[0], q[1], q[2], q[3]);
  o[1] = make_uint4(q[4], q[5], q[6], q[7]);
  *reinterpret_cast<unsigned short*>(out + n * 32 + b * 2) = (unsigned short)ld16(in);
}

// The other way, once per weight as a model loads (LoadOptions.quantize): an f32 [rows, K] matrix into Q8_0 blocks in
// the GPU's layout, one thread per block of 32 (d = max|x| / 127 as f16, q = round(x / d) computed with the f32 d,
// halves away from zero; ggml's quantize_row_q8_0_ref). Reference: src/loaders/quantize.ts (quantizeQ8_0), which it
// matches bit for bit once rearranged (q8_0Blocks in test/gpu/helpers.ts).
extern "C" __global__ void __launch_bounds__(256) quantize_weight_q8_0(uint8_t* out, const float* x, unsigned long long blocks) {
  pdl_begin();
  const size_t b = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= blocks) return;
  const float4* v = reinterpret_cast<const float4*>(x + b * 32);
  float w[32];
#pragma unroll
  for (int i = 0; i < 8; i++) {
    const float4 f = v[i];
    w[4 * i] = f.x; w[4 * i + 1] = f.y; w[4 * i + 2] = f.z; w[4 * i + 3] = f.w;
  }
  float amax = 0.f;
#pragma unroll
  for (int e = 0; e < 32; e++) amax = fmaxf(amax, fabsf(w[e]));
  const float d = amax / 127.f, id = d != 0.f ? 1.f / d : 0.f;
  uint32_t q[8] = {0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u};
#pragma unroll
  for (int e = 0; e < 32; e++) q[e >> 2] |= ((uint32_t)(int)roundf(w[e] * id) & 0xffu) << (8 * (e & 3));
  uint4* o = reinterpret_cast<uint4*>(out + b * 32);
  o[0] = make_uint4(q[0], q[1], q[2], q[3]);
  o[1] = make_uint4(q[4], q[5], q[6], q[7]);
  *reinterpret_cast<unsigned short*>(out + blocks * 32 + b * 2) = __half_as_ushort(__float2half_rn(d));
}

// Grouped int4 (LoadOptions.quantize int4) in the layout of kernels/quant-blocks.cuh, one thread per group of G inputs
// of a row: lo = min(0, min x), hi = max(0, max x), s = (hi - lo) / 15 as f16, z = round(-lo / s),
// q = clamp(round(x / s) + z, 0, 15) (x / s as x * (1 / s), halves away from zero); threads below K also write the
// input order (the identity). Reference: src/loaders/quantize.ts (quantizeInt4), bit for bit.
template <int G>
__device__ void quantize_int4(uint8_t* out, const float* x, int N, int K) {
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x, groups = (size_t)N * (K / G);
  const size_t scales = (size_t)N * K / 2, zeros = scales + 2 * groups, perm = (zeros + groups + 15) / 16 * 16;
  if (i < (size_t)K) reinterpret_cast<int*>(out + perm)[i] = (int)i;
  if (i >= groups) return;
  const size_t j = i / (K / G), t = i % (K / G);
  const float* v = x + j * K + t * G;
  float lo = 0.f, hi = 0.f;
  for (int e = 0; e < G; e++) {
    lo = fminf(lo, v[e]);
    hi = fmaxf(hi, v[e]);
  }
  const __half h = __float2half_rn((hi - lo) / 15.f);
  const float s = __half2float(h), is = s != 0.f ? 1.f / s : 0.f;
  const int z = s != 0.f ? min(max((int)roundf(-lo * is), 0), 15) : 0;
  uint8_t* row = out + j * (K / 2) + t * (G / 2);
#pragma unroll
  for (int u = 0; u < G / 32; u++) {
    uint32_t w[4] = {0u, 0u, 0u, 0u};
#pragma unroll
    for (int e = 0; e < 32; e++) {
      const float r = roundf(v[32 * u + e] * is);
      const int q = min(max((r == r ? (int)r : 0) + z, 0), 15);
      w[(e & 15) >> 2] |= (uint32_t)q << (8 * (e & 3) + ((e & 16) >> 2));
    }
    reinterpret_cast<uint4*>(row)[u] = make_uint4(w[0], w[1], w[2], w[3]);
  }
  reinterpret_cast<__half*>(out + scales)[i] = h;
  out[zeros + i] = (uint8_t)z;
}

#define QI(G) \
  extern "C" __global__ void __launch_bounds__(256) quantize_weight_q4_g##G(uint8_t* out, const float* x, int N, int K) { \
    pdl_begin();                                                                                                        \
    quantize_int4<G>(out, x, N, K);                                                                                     \
  }
QI(32)
QI(64)
QI(128)
