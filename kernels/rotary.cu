// Rotary position embedding of packed qkv rows [n, (heads + 2 kv_heads) D], in place on the q and k heads;
// reference: src/backends/cpu/rotary.ts. Blocks (row, group of heads), one warp per head: a decode step's one row
// spreads over many SMs instead of one block turning every head in turn. Dimension i < dims / 2
// of a head pairs with i + dims / 2 (rotate-half layout) and turns by position * rate[i], the angle in fp32 as
// torch computes it; cos and sin are scaled by `scale` (YaRN). Dynamic NTK scaling (dyn_original > 0) replaces
// the rates of a row whose sequence reaches lengths[t] > dyn_original keys. With q_norm/k_norm (Qwen3) each
// head is first RMS-normalized over its D values.
#include "common.cuh"

constexpr int ROT_THREADS = 128;

template <typename T>
__device__ void rotary(T* qkv, const int* positions, const int* lengths, const float* inv_freq, int heads, int kv_heads,
                       int D, int dims, float scale, float dyn_base, float dyn_factor, int dyn_original,
                       const T* q_norm, const T* k_norm, float norm_eps) {
  extern __shared__ float rates[];  // [dims / 2]
  const int t = blockIdx.x, half = dims / 2;
  const int L = lengths[t];
  if (dyn_original > 0 && L > dyn_original) {
    const float grow = powf(dyn_factor * (float)L / (float)dyn_original - (dyn_factor - 1.f), (float)dims / (float)(dims - 2));
    const float base = dyn_base * grow;
    for (int i = threadIdx.x; i < half; i += blockDim.x) rates[i] = 1.f / powf(base, (float)(2 * i) / (float)dims);
  } else {
    for (int i = threadIdx.x; i < half; i += blockDim.x) rates[i] = inv_freq[i];
  }
  __syncthreads();
  const float pos = (float)positions[t];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  T* row = qkv + (size_t)t * (heads + 2 * kv_heads) * D;
  for (int h = blockIdx.y * warps + warp; h < heads + kv_heads; h += warps * gridDim.y) {
    T* x = row + (size_t)h * D;
    const T* g = h < heads ? q_norm : k_norm;
    float inv = 1.f;
    if (g) {
      float ss = 0.f;
      for (int i = lane; i < D; i += 32) ss += to_f(x[i]) * to_f(x[i]);
      inv = rsqrtf(warp_sum(ss) / D + norm_eps);
    }
    auto val = [&](int i) { return g ? to_f(x[i]) * inv * to_f(g[i]) : to_f(x[i]); };
    // every lane reads its values before any lane writes (a lane's pairs are its own; the norm read all of x)
    __syncwarp();
    for (int i = lane; i < half; i += 32) {
      float s, c;
      sincosf(pos * rates[i], &s, &c);
      s *= scale;
      c *= scale;
      const float x1 = val(i), x2 = val(half + i);
      x[i] = from_f<T>(x1 * c - x2 * s);
      x[half + i] = from_f<T>(x2 * c + x1 * s);
    }
    if (g) for (int i = dims + lane; i < D; i += 32) x[i] = from_f<T>(val(i));
    __syncwarp();
  }
}

#define ROTARY(T, S)                                                                                       \
  extern "C" __global__ void __launch_bounds__(ROT_THREADS) rotary_##S(                                    \
      T* qkv, const int* positions, const int* lengths, const float* inv_freq, int heads, int kv_heads, int D, \
      int dims, float scale, float dyn_base, float dyn_factor, int dyn_original, const T* q_norm,          \
      const T* k_norm, float norm_eps) {                                                                   \
    pdl_begin();                                                                                           \
    rotary<T>(qkv, positions, lengths, inv_freq, heads, kv_heads, D, dims, scale, dyn_base, dyn_factor,    \
              dyn_original, q_norm, k_norm, norm_eps);                                                     \
  }
FOR_EACH_DTYPE(ROTARY)
