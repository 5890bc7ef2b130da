// Attention over the KV cache [slots, maxSeq, H]; reference: src/backends/cpu/attention.ts.
//  - write_kv: stores each token's k and v (from packed qkv rows [n, 3H]) at its slot and position.
//  - attend_decode: masked multi-head attention for one query per row (the decode step), with the row's
//    own k and v written into the cache first.
//  - attend_prefill: flash-attention style for prompts: a block takes up to 32 query rows of one segment
//    (consecutive packed rows of one sequence) for one head and streams key/value tiles through shared
//    memory with an online softmax, so no [seq x seq] score matrix is ever written.
#include "common.cuh"

template <typename T>
__device__ void write_kv(const T* qkv, T* kc, T* vc, const int* slots, const int* positions, int H, int max_seq) {
  const int t = blockIdx.x;
  const T* src = qkv + (size_t)t * 3 * H;
  const size_t dst = ((size_t)slots[t] * max_seq + positions[t]) * H;
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    kc[dst + i] = src[H + i];
    vc[dst + i] = src[2 * H + i];
  }
}

// Masked multi-head attention for the decode step, one block per (head, row): first the row's k and v go
// into the cache at position key_lens - 1 (the KV-cache write is fused here), then q . k for every key
// (a thread per key, 16-byte loads), softmax in shared memory, and the weighted sum of v rows (a few
// threads per key, one 16-byte vector each, many keys in flight). Dynamic shared memory:
// D (q) + max_seq (scores) + threads * 8 (partial sums) floats.
constexpr int DECODE_THREADS = 256;

template <typename T>
__device__ void attend_decode(T* out, const T* qkv, T* kc, T* vc, const int* slots, const int* key_lens,
                              int heads, int D, float scale, int max_seq) {
  extern __shared__ float smem[];
  __shared__ float scratch[32];
  constexpr int V = Vec<T>::N;
  float* q = smem;
  float* scores = smem + D;
  const int h = blockIdx.x, t = blockIdx.y;
  const int H = heads * D;
  const int L = key_lens[t];
  const size_t base = (size_t)slots[t] * max_seq * H + (size_t)h * D;
  const T* row = qkv + (size_t)t * 3 * H + h * D;
  for (int i = threadIdx.x; i < D; i += blockDim.x) {
    q[i] = to_f(row[i]) * scale;
    kc[base + (size_t)(L - 1) * H + i] = row[H + i];
    vc[base + (size_t)(L - 1) * H + i] = row[2 * H + i];
  }
  __syncthreads();
  const bool vec = D % V == 0 && H % V == 0 && aligned16(kc) && aligned16(vc);
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < L; j += blockDim.x) {
    const T* k = kc + base + (size_t)j * H;
    float s = 0.f;
    if (vec) {
      for (int i = 0; i < D; i += V) {
        const Vec<T> kv = load_vec(k + i);
#pragma unroll
        for (int e = 0; e < V; e++) s += q[i + e] * to_f(kv.v[e]);
      }
    } else {
      for (int i = 0; i < D; i++) s += q[i] * to_f(k[i]);
    }
    scores[j] = s;
    mx = fmaxf(mx, s);
  }
  mx = block_max(mx, scratch);
  float sum = 0.f;
  for (int j = threadIdx.x; j < L; j += blockDim.x) {
    const float e = __expf(scores[j] - mx);
    scores[j] = e;
    sum += e;
  }
  sum = block_sum(sum, scratch);
  __syncthreads();
  const float inv = 1.f / sum;
  float* partial = scores + max_seq;  // [groups, D]
  const T* vb = vc + base;
  if (vec) {
    // tpk threads per key, each one 16-byte vector of its v row; key groups run in parallel, 4 keys in flight
    const int tpk = D / V, groups = blockDim.x / tpk;
    const int g = threadIdx.x / tpk, c = threadIdx.x % tpk;
    float acc[V];
#pragma unroll
    for (int e = 0; e < V; e++) acc[e] = 0.f;
    if (g < groups) {
      int j = g;
      for (; j + 3 * groups < L; j += 4 * groups) {
        Vec<T> vv[4];
#pragma unroll
        for (int u = 0; u < 4; u++) vv[u] = load_vec(vb + (size_t)(j + u * groups) * H + c * V);
#pragma unroll
        for (int u = 0; u < 4; u++) {
          const float p = scores[j + u * groups];
#pragma unroll
          for (int e = 0; e < V; e++) acc[e] += p * to_f(vv[u].v[e]);
        }
      }
      for (; j < L; j += groups) {
        const Vec<T> vv = load_vec(vb + (size_t)j * H + c * V);
        const float p = scores[j];
#pragma unroll
        for (int e = 0; e < V; e++) acc[e] += p * to_f(vv.v[e]);
      }
#pragma unroll
      for (int e = 0; e < V; e++) partial[g * D + c * V + e] = acc[e];
    }
    __syncthreads();
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
      float a = 0.f;
      for (int gg = 0; gg < groups; gg++) a += partial[gg * D + i];
      out[(size_t)t * H + h * D + i] = from_f<T>(a * inv);
    }
    return;
  }
  // any head size: lanes over dimensions (up to 4 each), warps over keys
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  for (int j = warp; j < L; j += warps) {
    const float p = scores[j];
#pragma unroll
    for (int d = 0; d < 4; d++) {
      const int i = lane + 32 * d;
      if (i < D) acc[d] += p * to_f(vb[(size_t)j * H + i]);
    }
  }
#pragma unroll
  for (int d = 0; d < 4; d++) {
    const int i = lane + 32 * d;
    if (i < D) partial[warp * D + i] = acc[d];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < D; i += blockDim.x) {
    float a = 0.f;
    for (int w = 0; w < warps; w++) a += partial[w * D + i];
    out[(size_t)t * H + h * D + i] = from_f<T>(a * inv);
  }
}

// Segments: [count, 3] = (first packed row, number of rows, unused); rows of a segment are consecutive
// positions of one sequence. Grid: (query tiles, segments, heads). 128 threads: 4 per query row, each
// holding DPT of the head's dimensions. Keys are those j < key_lens[row] of the row's slot.
constexpr int PF_ROWS = 32, PF_KEYS = 32;

template <typename T, int DPT>
__device__ void attend_prefill(T* out, const T* qkv, const T* kc, const T* vc, const int* slots, const int* key_lens,
                               const int* segments, int heads, int D, float scale, int max_seq) {
  extern __shared__ float tile[];  // K and V tiles: 2 * PF_KEYS * D floats
  float* ks = tile;
  float* vs = tile + PF_KEYS * D;
  const int seg = blockIdx.y, h = blockIdx.z;
  const int first = segments[seg * 3], count = segments[seg * 3 + 1];
  const int r0 = blockIdx.x * PF_ROWS;
  if (r0 >= count) return;
  const int H = heads * D;
  const int lr = threadIdx.x >> 2, part = threadIdx.x & 3;
  const int row = first + r0 + lr;
  const bool active = r0 + lr < count;
  const int slot = slots[first];
  const int L = active ? key_lens[row] : 0;
  // the block needs keys up to the longest row of its tile (the last valid one, keys grow with position)
  const int last_row = first + min(count, r0 + PF_ROWS) - 1;
  const int Lmax = key_lens[last_row];
  const size_t base = (size_t)slot * max_seq * H + (size_t)h * D;
  const int d0 = part * DPT;
  float q[DPT], acc[DPT];
#pragma unroll
  for (int i = 0; i < DPT; i++) {
    q[i] = active && d0 + i < D ? to_f(qkv[(size_t)row * 3 * H + h * D + d0 + i]) * scale : 0.f;
    acc[i] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int j0 = 0; j0 < Lmax; j0 += PF_KEYS) {
    const int nk = min(PF_KEYS, Lmax - j0);
    __syncthreads();
    for (int e = threadIdx.x; e < nk * D; e += blockDim.x) {
      const int j = e / D, i = e - j * D;
      const size_t src = base + (size_t)(j0 + j) * H + i;
      ks[j * D + i] = to_f(kc[src]);
      vs[j * D + i] = to_f(vc[src]);
    }
    __syncthreads();
    for (int j = 0; j < nk; j++) {
      float s = 0.f;
#pragma unroll
      for (int i = 0; i < DPT; i++) if (d0 + i < D) s += q[i] * ks[j * D + d0 + i];
      s += __shfl_xor_sync(0xffffffffu, s, 1);
      s += __shfl_xor_sync(0xffffffffu, s, 2);
      if (j0 + j >= L) continue;  // masked: beyond this row's keys
      const float mn = fmaxf(m, s);
      const float c = __expf(m - mn), p = __expf(s - mn);
      l = l * c + p;
#pragma unroll
      for (int i = 0; i < DPT; i++) if (d0 + i < D) acc[i] = acc[i] * c + p * vs[j * D + d0 + i];
      m = mn;
    }
  }
  if (!active) return;
  const float inv = 1.f / l;
#pragma unroll
  for (int i = 0; i < DPT; i++) if (d0 + i < D) out[(size_t)row * H + h * D + d0 + i] = from_f<T>(acc[i] * inv);
}

#define ATTN(T, S)                                                                                         \
  extern "C" __global__ void write_kv_##S(const T* qkv, T* kc, T* vc, const int* slots, const int* positions, \
                                          int H, int max_seq) {                                            \
    write_kv<T>(qkv, kc, vc, slots, positions, H, max_seq);                                                \
  }                                                                                                        \
  extern "C" __global__ void __launch_bounds__(DECODE_THREADS) attend_decode_##S(                          \
      T* out, const T* qkv, T* kc, T* vc, const int* slots, const int* key_lens, int heads, int D, float scale, \
      int max_seq) {                                                                                       \
    attend_decode<T>(out, qkv, kc, vc, slots, key_lens, heads, D, scale, max_seq);                         \
  }                                                                                                        \
  PREFILL(T, S, 2) PREFILL(T, S, 4) PREFILL(T, S, 8) PREFILL(T, S, 16) PREFILL(T, S, 32)
#define PREFILL(T, S, DPT)                                                                                 \
  extern "C" __global__ void __launch_bounds__(128) attend_prefill##DPT##_##S(                             \
      T* out, const T* qkv, const T* kc, const T* vc, const int* slots, const int* key_lens, const int* segments, \
      int heads, int D, float scale, int max_seq) {                                                        \
    attend_prefill<T, DPT>(out, qkv, kc, vc, slots, key_lens, segments, heads, D, scale, max_seq);         \
  }
FOR_EACH_DTYPE(ATTN)
