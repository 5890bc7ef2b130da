// Attention over the paged KV cache; reference: src/backends/cpu/attention.ts. Each layer's cache is
// [blocks, block_size, H]; sequence s keeps position p in block tables[s * max_blocks + p / block_size],
// row p % block_size. A block may be read by several sequences (a shared prefix) and block 0 by padding rows,
// so a kernel writes only the rows of the positions it is given and never takes a block id as one row's own.
//  - write_kv (writeKV): stores each token's k and v (from packed qkv rows [n, 3H]) at its sequence and position.
//  - attend_decode (decodeAttention): masked multi-head attention for one query per row (the decode step),
//    with the row's own k and v written into the cache first.
//  - attend_prefill (attend): flash-attention style for prompts: a block takes up to 32 query rows of one
//    segment (consecutive packed rows of one sequence) for one head and streams key/value tiles through
//    shared memory with an online softmax, so no [seq x seq] score matrix is ever written.
//  - copy_blocks (copyBlocks): copy-on-write of shared blocks across every layer's K and V.
#include "common.cuh"

// The cache row of position p; `table` is the sequence's row of the block table. A row index fits an int:
// 2^31 rows of even 64 fp16 values would be 256 GiB.
__device__ __forceinline__ int cache_row(const int* table, int p, int block_size) {
  return table[p / block_size] * block_size + p % block_size;
}

template <typename T>
__device__ void write_kv(const T* qkv, T* kc, T* vc, const int* tables, const int* slots, const int* positions,
                         int H, int block_size, int max_blocks) {
  constexpr int V = Vec<T>::N;
  const int t = blockIdx.x;
  const T* src = qkv + (size_t)t * 3 * H;
  const size_t dst = (size_t)cache_row(tables + (size_t)slots[t] * max_blocks, positions[t], block_size) * H;
  if (H % V == 0 && aligned16(qkv) && aligned16(kc) && aligned16(vc)) {
    for (int i = threadIdx.x * V; i < H; i += blockDim.x * V) {
      store_vec(kc + dst + i, load_vec(src + H + i));
      store_vec(vc + dst + i, load_vec(src + 2 * H + i));
    }
    return;
  }
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    kc[dst + i] = src[H + i];
    vc[dst + i] = src[2 * H + i];
  }
}

// Masked multi-head attention for the decode step, one block per (head, row): first the row's k and v go
// into the cache at position key_lens - 1 (the KV-cache write is fused here), then q . k for every key
// (a thread per key, 16-byte loads), softmax in shared memory, and the weighted sum of v rows (a few
// threads per key, one 16-byte vector each, many keys in flight). The sequence's block-table row is read
// into shared memory once (one round trip to global memory, not one per key) and turned into the cache row
// of every key up front, so no division by block_size sits between a key and its loads in either pass.
// Keys within a cache block are consecutive rows and a row starts at a multiple of H, so the 16-byte loads
// stay aligned whenever H and D are whole vectors. Dynamic shared memory, in 4-byte words: D (q) +
// max_keys (scores) + max_keys (rows) + max_blocks (block ids) + threads * 8 (partial sums), where
// max_keys = max_blocks * block_size.
constexpr int DECODE_THREADS = 256;

template <typename T>
__device__ void attend_decode(T* out, const T* qkv, T* kc, T* vc, const int* tables, const int* slots, const int* key_lens,
                              int heads, int D, float scale, int block_size, int max_blocks) {
  extern __shared__ float smem[];
  __shared__ float scratch[32];
  constexpr int V = Vec<T>::N;
  const int max_keys = max_blocks * block_size;
  float* q = smem;
  float* scores = q + D;
  int* rows = reinterpret_cast<int*>(scores + max_keys);
  int* blocks = rows + max_keys;
  float* partial = reinterpret_cast<float*>(blocks + max_blocks);  // [groups, D]
  const int h = blockIdx.x, t = blockIdx.y;
  const int H = heads * D;
  const int L = key_lens[t];
  const int* table = tables + (size_t)slots[t] * max_blocks;
  for (int b = threadIdx.x; b < (L + block_size - 1) / block_size; b += blockDim.x) blocks[b] = table[b];
  const size_t own = (size_t)cache_row(table, L - 1, block_size) * H + h * D;
  const T* row = qkv + (size_t)t * 3 * H + h * D;
  for (int i = threadIdx.x; i < D; i += blockDim.x) {
    q[i] = to_f(row[i]) * scale;
    kc[own + i] = row[H + i];
    vc[own + i] = row[2 * H + i];
  }
  __syncthreads();  // q, the block ids, and this row's k and v (read back below as key L - 1)
  const bool vec = D % V == 0 && H % V == 0 && aligned16(kc) && aligned16(vc);
  // each thread reads back only the rows it wrote until the barriers of the softmax
  for (int j = threadIdx.x; j < L; j += blockDim.x) rows[j] = blocks[j / block_size] * block_size + j % block_size;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < L; j += blockDim.x) {
    const T* k = kc + (size_t)rows[j] * H + h * D;
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
  const T* vb = vc + (size_t)h * D;
  if (vec) {
    // tpk threads per key, each one 16-byte vector of its v row; key groups run in parallel, 4 keys in flight
    const int tpk = D / V, groups = blockDim.x / tpk;
    const int g = threadIdx.x / tpk, c = threadIdx.x % tpk;
    float acc[V];
#pragma unroll
    for (int e = 0; e < V; e++) acc[e] = 0.f;
    if (g < groups) {
      const T* vcol = vb + c * V;
      int j = g;
      for (; j + 3 * groups < L; j += 4 * groups) {
        Vec<T> vv[4];
#pragma unroll
        for (int u = 0; u < 4; u++) vv[u] = load_vec(vcol + (size_t)rows[j + u * groups] * H);
#pragma unroll
        for (int u = 0; u < 4; u++) {
          const float p = scores[j + u * groups];
#pragma unroll
          for (int e = 0; e < V; e++) acc[e] += p * to_f(vv[u].v[e]);
        }
      }
      for (; j < L; j += groups) {
        const Vec<T> vv = load_vec(vcol + (size_t)rows[j] * H);
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
    const T* v = vb + (size_t)rows[j] * H;
#pragma unroll
    for (int d = 0; d < 4; d++) {
      const int i = lane + 32 * d;
      if (i < D) acc[d] += p * to_f(v[i]);
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
// holding DPT of the head's dimensions. Keys are those j < key_lens[row] of the row's sequence. A key tile
// may straddle cache blocks (any block_size), so the tile is loaded a warp per key, lanes over the head's
// dimensions: the block lookup happens once per key and the loads of a key stay contiguous.
constexpr int PF_ROWS = 32, PF_KEYS = 32;

template <typename T, int DPT>
__device__ void attend_prefill(T* out, const T* qkv, const T* kc, const T* vc, const int* tables, const int* slots,
                               const int* key_lens, const int* segments, int heads, int D, float scale, int block_size,
                               int max_blocks) {
  extern __shared__ float tile[];  // K and V tiles: 2 * PF_KEYS * D floats
  float* ks = tile;
  float* vs = tile + PF_KEYS * D;
  const int seg = blockIdx.y, h = blockIdx.z;
  const int first = segments[seg * 3], count = segments[seg * 3 + 1];
  const int r0 = blockIdx.x * PF_ROWS;
  if (r0 >= count) return;
  const int H = heads * D;
  const int lr = threadIdx.x >> 2, part = threadIdx.x & 3;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int row = first + r0 + lr;
  const bool active = r0 + lr < count;
  const int* table = tables + (size_t)slots[first] * max_blocks;
  const int L = active ? key_lens[row] : 0;
  // the block needs keys up to the longest row of its tile (the last valid one, keys grow with position)
  const int last_row = first + min(count, r0 + PF_ROWS) - 1;
  const int Lmax = key_lens[last_row];
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
    for (int j = warp; j < nk; j += warps) {
      const size_t src = (size_t)cache_row(table, j0 + j, block_size) * H + h * D;
#pragma unroll
      for (int u = 0; u < (4 * DPT + 31) / 32; u++) {  // D <= 4 * DPT
        const int i = lane + 32 * u;
        if (i < D) {
          ks[j * D + i] = to_f(kc[src + i]);
          vs[j * D + i] = to_f(vc[src + i]);
        }
      }
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

// pool: [planes, blocks, block_values] (every layer's K and V); pairs: [count, 2] = (source, destination).
// Grid: (pairs, planes up to 65535, looping over the rest). The pairs run in parallel, which is the
// reference's order as long as no destination is also a source or another pair's destination in the same
// call, as with copy-on-write, whose destinations are freshly taken blocks.
template <typename T>
__device__ void copy_blocks(T* pool, const int* pairs, int planes, int blocks, int block_values) {
  constexpr int V = Vec<T>::N;
  const int src_block = pairs[2 * blockIdx.x], dst_block = pairs[2 * blockIdx.x + 1];
  const bool vec = block_values % V == 0 && aligned16(pool);
  for (int p = blockIdx.y; p < planes; p += gridDim.y) {
    const T* src = pool + ((size_t)p * blocks + src_block) * block_values;
    T* dst = pool + ((size_t)p * blocks + dst_block) * block_values;
    if (vec) {
      for (int i = threadIdx.x * V; i < block_values; i += blockDim.x * V) store_vec(dst + i, load_vec(src + i));
    } else {
      for (int i = threadIdx.x; i < block_values; i += blockDim.x) dst[i] = src[i];
    }
  }
}

#define ATTN(T, S)                                                                                         \
  extern "C" __global__ void write_kv_##S(const T* qkv, T* kc, T* vc, const int* tables, const int* slots,  \
                                          const int* positions, int H, int block_size, int max_blocks) {   \
    write_kv<T>(qkv, kc, vc, tables, slots, positions, H, block_size, max_blocks);                          \
  }                                                                                                        \
  extern "C" __global__ void __launch_bounds__(DECODE_THREADS) attend_decode_##S(                          \
      T* out, const T* qkv, T* kc, T* vc, const int* tables, const int* slots, const int* key_lens, int heads, \
      int D, float scale, int block_size, int max_blocks) {                                                \
    attend_decode<T>(out, qkv, kc, vc, tables, slots, key_lens, heads, D, scale, block_size, max_blocks);   \
  }                                                                                                        \
  extern "C" __global__ void copy_blocks_##S(T* pool, const int* pairs, int planes, int blocks, int block_values) { \
    copy_blocks<T>(pool, pairs, planes, blocks, block_values);                                             \
  }                                                                                                        \
  PREFILL(T, S, 2) PREFILL(T, S, 4) PREFILL(T, S, 8) PREFILL(T, S, 16) PREFILL(T, S, 32)
#define PREFILL(T, S, DPT)                                                                                 \
  extern "C" __global__ void __launch_bounds__(128) attend_prefill##DPT##_##S(                             \
      T* out, const T* qkv, const T* kc, const T* vc, const int* tables, const int* slots, const int* key_lens, \
      const int* segments, int heads, int D, float scale, int block_size, int max_blocks) {                \
    attend_prefill<T, DPT>(out, qkv, kc, vc, tables, slots, key_lens, segments, heads, D, scale, block_size, \
                           max_blocks);                                                                    \
  }
FOR_EACH_DTYPE(ATTN)
