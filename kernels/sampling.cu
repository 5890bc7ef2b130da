// Sampling on the GPU, so that only token ids cross to the host: one block per row of fp32 logits.
// The definition (and the reference) is src/backends/cpu/sampling.ts; the random numbers are those of
// src/engine/rng.ts. Top-k and top-p thresholds are found by radix selection over the float bits
// (4 passes of 8 bits with shared-memory histograms), never by sorting the vocabulary.
#include "common.cuh"

constexpr int SAMPLE_THREADS = 1024;

__device__ __forceinline__ uint32_t hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

__device__ __forceinline__ float uniform(uint32_t seed, uint32_t stream, uint32_t counter) {
  const uint32_t h = hash32(hash32(hash32(seed) ^ stream) + counter);
  return (float)(h >> 8) / 16777216.f;
}

// Floats as unsigned keys that sort like the floats.
__device__ __forceinline__ uint32_t key_of(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// The largest key K such that weight(keys >= K) >= target, where weight is a count (use_mass = false) or
// the value's probability. value(i) gives the key and weight of element i (weight 0 to exclude it).
template <typename F>
__device__ uint32_t radix_select(int V, float target, F value, float* hist) {
  uint32_t prefix = 0, mask = 0;
  float above = 0.f;  // weight of elements whose key is above the prefix range
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0.f;
    __syncthreads();
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
      float w;
      const uint32_t k = value(i, w);
      if (w > 0.f && (k & mask) == prefix) atomicAdd(&hist[(k >> shift) & 255], w);
    }
    __syncthreads();
    // scan the digits from the top (one thread: 256 steps)
    __shared__ uint32_t digit;
    __shared__ float new_above;
    if (threadIdx.x == 0) {
      float acc = above;
      int d = 255;
      for (; d > 0; d--) {
        if (acc + hist[d] >= target) break;
        acc += hist[d];
      }
      digit = d;
      new_above = acc;
    }
    __syncthreads();
    prefix |= digit << shift;
    mask |= 255u << shift;
    above = new_above;
    __syncthreads();
  }
  return prefix;
}

// params: [rows, 4] int32 = topK, seed, temperature (float bits), topP (float bits).
extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS)
    sample_rows(int* ids, const float* logits, const int* params, const int* streams, const int* counters, int V) {
  __shared__ float scratch[32];
  __shared__ float hist[256];
  __shared__ float wsum[32];
  __shared__ int chosen;
  const int row = blockIdx.x;
  const float* l = logits + (size_t)row * V;
  const int top_k = params[row * 4];
  const uint32_t seed = (uint32_t)params[row * 4 + 1];
  const float temperature = __int_as_float(params[row * 4 + 2]);
  const float top_p = __int_as_float(params[row * 4 + 3]);

  // max and argmax (lowest index among ties)
  float mx = -INFINITY;
  int arg = 0x7fffffff;
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    if (l[i] > mx) { mx = l[i]; arg = i; }
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float om = __shfl_xor_sync(0xffffffffu, mx, o);
    const int oa = __shfl_xor_sync(0xffffffffu, arg, o);
    if (om > mx || (om == mx && oa < arg)) { mx = om; arg = oa; }
  }
  __shared__ float wmax[32];
  __shared__ int warg[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) { wmax[warp] = mx; warg[warp] = arg; }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < (int)(blockDim.x >> 5); w++) {
      if (wmax[w] > wmax[0] || (wmax[w] == wmax[0] && warg[w] < warg[0])) { wmax[0] = wmax[w]; warg[0] = warg[w]; }
    }
  }
  __syncthreads();
  mx = wmax[0];
  if (temperature == 0.f) {
    if (threadIdx.x == 0) ids[row] = warg[0];
    return;
  }
  const float inv_t = 1.f / temperature;

  // top-k: the k-th largest logit, as a key
  uint32_t kth = 0;
  if (top_k > 0 && top_k < V) {
    kth = radix_select(V, (float)top_k, [&](int i, float& w) { w = 1.f; return key_of(l[i]); }, hist);
  }
  auto prob = [&](int i) { return key_of(l[i]) >= kth ? __expf((l[i] - mx) * inv_t) : 0.f; };
  float total = 0.f;
  for (int i = threadIdx.x; i < V; i += blockDim.x) total += prob(i);
  total = block_sum(total, scratch);
  // top-p: the largest probability threshold whose kept mass reaches top_p of the total
  float threshold = 0.f;
  if (top_p < 1.f) {
    const uint32_t t = radix_select(V, top_p * total, [&](int i, float& w) { w = prob(i); return __float_as_uint(w); }, hist);
    threshold = __uint_as_float(t);
    total = 0.f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) { const float p = prob(i); total += p >= threshold ? p : 0.f; }
    total = block_sum(total, scratch);
  }
  // walk the kept tokens in id order: each thread owns a contiguous chunk
  const int chunk = (V + blockDim.x - 1) / blockDim.x;
  const int lo = threadIdx.x * chunk, hi = min(V, lo + chunk);
  float mine = 0.f;
  int last_kept = -1;
  for (int i = lo; i < hi; i++) {
    const float p = prob(i);
    if (p > 0.f && p >= threshold) { mine += p; last_kept = i; }
  }
  // exclusive prefix sum of `mine` over the block
  float incl = mine;
  for (int o = 1; o < 32; o <<= 1) {
    const float y = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += y;
  }
  if (lane == 31) wsum[warp] = incl;
  if (threadIdx.x == 0) chosen = -1;
  __syncthreads();
  float before = incl - mine;
  for (int w = 0; w < warp; w++) before += wsum[w];
  const float r = uniform(seed, (uint32_t)streams[row], (uint32_t)counters[row]) * total;
  if (mine > 0.f && r >= before && r < before + mine) {
    float acc = before;
    int pick = last_kept;
    for (int i = lo; i < hi; i++) {
      const float p = prob(i);
      if (p > 0.f && p >= threshold) {
        acc += p;
        if (r < acc) { pick = i; break; }
      }
    }
    chosen = pick;
  }
  __syncthreads();
  if (chosen < 0) {
    // rounding put r at or past the end: take the last kept token
    __shared__ int last_all;
    if (threadIdx.x == 0) last_all = -1;
    __syncthreads();
    if (last_kept >= 0) atomicMax(&last_all, last_kept);
    __syncthreads();
    if (threadIdx.x == 0) ids[row] = last_all;
    return;
  }
  if (threadIdx.x == 0) ids[row] = chosen;
}

extern "C" __global__ void advance(int* positions, int* key_lens, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    const int p = positions[i] + 1;
    positions[i] = p;
    key_lens[i] = p + 1;
  }
}
