// Attention over the paged KV cache; reference: src/backends/cpu/attention.ts. Each layer's cache is
// [blocks, block_size, W = kv_heads * D]; sequence s keeps position p in block tables[s * max_blocks + p / block_size],
// row p % block_size. A block may be read by several sequences (a shared prefix) and block 0 by padding rows,
// so a kernel writes only the rows of the positions it is given and never takes a block id as one row's own.
// Packed qkv rows are [n, (heads + 2 kv_heads) D] = q | k | v; query head h reads KV head h / (heads / kv_heads)
// (grouped-query attention). With window > 0 a query at key count L sees keys L - window .. L - 1 only.
//  - write_kv (writeKV): stores each token's k and v (the last 2W values of its qkv row) at its sequence and position.
//  - attend_decode (decodeAttention): masked multi-head attention for one query per row (the decode step),
//    with the row's own k and v written into the cache first.
//  - attend_prefill (attend): flash-attention style for prompts on CUDA cores: a block takes up to 32 query rows of
//    one segment (consecutive packed rows of one sequence) for one head and streams key/value tiles through
//    shared memory with an online softmax, so no [seq x seq] score matrix is ever written. f16/bf16 prompts of
//    the head sizes kernels/flash.cu builds go to its tensor-core kernel instead; this one keeps f32, other
//    head sizes and T5's position bias.
//  - attend_cross (crossAttention): an encoder-decoder's cross-attention, the decode kernel without the cache write
//    or a mask: a query row [heads * D] over keys 0 .. lengths[slot] - 1 of its slot's read-only memory cache.
//  - copy_blocks (copyBlocks): copy-on-write of shared blocks across every layer's K and V.
// The decode and prompt kernels add T5's relative position bias to the scores when `bias` (its table
// [buckets, heads]) is given: key j of a query at position bias_pos[row] gets bias[bucket(j - pos), head].
#include "common.cuh"
#include "paged.cuh"

// T5's bucket of a key at `distance` = key position - query position: relativeBucket of
// src/backends/cpu/attention.ts (Hugging Face's T5Attention._relative_position_bucket), whose logarithmic buckets
// round to float32 after each double-precision step, as Math.fround does there; mirrored step by step.
__device__ __forceinline__ int relative_bucket(int distance, int buckets, int max_distance, bool bidirectional) {
  int bucket = 0, n = buckets, d;
  if (bidirectional) {
    n /= 2;
    if (distance > 0) bucket += n;
    d = abs(distance);
  } else {
    d = -min(distance, 0);
  }
  const int exact = n / 2;
  if (d < exact) return bucket + d;
  // keys at max_distance or beyond take the last bucket: the logarithms below give it to every one of them (the
  // quotient of two float32 logs is then >= 1 less an ulp, and trunc(x * (n - exact)) >= n - exact - 1 either way),
  // so the far keys skip two double-precision logs
  if (d >= max_distance && max_distance > exact) return bucket + n - 1;
  const float ratio = (float)log((double)(float)((double)d / (double)exact));
  const float span = (float)log((double)max_distance / (double)exact);
  const float scaled = (float)((double)ratio / (double)span);
  const int large = (int)(float)((double)scaled * (double)(n - exact));
  return bucket + min(exact + large, n - 1);
}

// The relative position bias of the decode and prompt kernels; table == nullptr: none.
template <typename T>
struct PositionBias {
  const T* table;  // [buckets, heads]
  const int* positions;  // [rows]: each query row's position
  int buckets, max_distance, bidirectional;
  __device__ __forceinline__ float at(int key, int pos, int heads, int h) const {
    return to_f(table[(size_t)relative_bucket(key - pos, buckets, max_distance, bidirectional != 0) * heads + h]);
  }
};

template <typename T>
__device__ void write_kv(const T* qkv, T* kc, T* vc, const int* tables, const int* slots, const int* positions,
                         int row_width, int W, int block_size, int max_blocks) {
  constexpr int V = Vec<T>::N;
  const int t = blockIdx.x;
  const T* src = qkv + (size_t)t * row_width + row_width - 2 * W;
  const size_t dst = (size_t)cache_row(tables + (size_t)slots[t] * max_blocks, positions[t], block_size) * W;
  if (W % V == 0 && row_width % V == 0 && aligned16(qkv) && aligned16(kc) && aligned16(vc)) {
    for (int i = threadIdx.x * V; i < W; i += blockDim.x * V) {
      store_vec(kc + dst + i, load_vec(src + i));
      store_vec(vc + dst + i, load_vec(src + W + i));
    }
    return;
  }
  for (int i = threadIdx.x; i < W; i += blockDim.x) {
    kc[dst + i] = src[i];
    vc[dst + i] = src[W + i];
  }
}

// Masked multi-head attention for the decode step, one block of DECODE_WARPS warps per (row, G query heads of one KV
// head): with grouped-query attention the G heads of a block share each key and value it loads, so a KV head's cache
// is read once per row by ceil(group / G) blocks instead of once per query head. Block x = kvh * chunks + c takes query
// heads kvh * group + c * G and the nq - 1 after it (nq < G in the last chunk of a group that G does not divide; the
// missing heads run on zeros and are not written). First the row's k and v go into the cache at position
// key_lens - 1 (the KV-cache write is fused here; the blocks of a KV head all write the same bytes, each before it
// reads them back) while the sequence's block-table row is read into shared memory once. Then each warp splits into
// lane groups of lpk lanes, one key per group at a time: a lane holds one 16-byte vector's worth of the head's
// dimensions of each q, k, v and output (D / lpk of them), so a key costs each lane one k load, one v load and a few
// shuffles. Keys are dealt to (warp, group) in rounds of DECODE_UNROLL keys per group whose k and v loads all go out
// before any is used; the softmax is online per group and head, merged across the groups of a warp by shuffles and
// across warps in shared memory, always in the same order. Dynamic shared memory: max_blocks ints (block ids), then
// DECODE_WARPS * G * (D + 2) floats (each warp's running max, sum and output per head for the merge).
// Split over the keys (flash-decoding), for grids of few blocks: blockIdx.z = split s of `splits`. A row with `count`
// keys uses active = min(splits, ceil(count / SPLIT_MIN_KEYS)) of them, split s taking the s-th of `active` equal runs
// of keys; each writes its softmax state (output, max, sum) per head to partials, and the last of a block's splits to
// finish (a counter per (row, first head), reset by it) merges them (merge_splits) and writes the output. The result
// depends on the row's keys, G and `splits` only, so the host passes 1 in batch-invariant mode.
constexpr int DECODE_WARPS = 4, DECODE_UNROLL = 4, SPLIT_MIN_KEYS = 64, MAX_SPLITS = 32;

// Where the splits of a decode-style kernel keep their states: partials [rows, heads, splits, D + 2] floats, counters
// [rows * heads] ints (zero between launches); splits = 1 (no split) needs neither. splits <= MAX_SPLITS.
struct DecodeSplit {
  int splits;
  float* partials;
  int* counters;
};

// the `n` (<= N) dimensions of a lane at p: one 16-byte load when `vec` (then n is 0 or N), else element by element
template <typename T>
__device__ __forceinline__ Vec<T> load_dims(const T* p, int n, bool vec) {
  Vec<T> x;
  if (vec && n > 0) return load_vec(p);
#pragma unroll
  for (int e = 0; e < Vec<T>::N; e++) x.v[e] = e < n ? p[e] : from_f<T>(0.f);
  return x;
}

// (m, l, acc) := the softmax state of two disjoint key sets merged
template <int N>
__device__ __forceinline__ void merge_softmax(float& m, float& l, float* acc, float m2, float l2, const float* acc2) {
  const float mx = fmaxf(m, m2);
  const float f1 = m == -INFINITY ? 0.f : __expf(m - mx), f2 = m2 == -INFINITY ? 0.f : __expf(m2 - mx);
  l = l * f1 + l2 * f2;
#pragma unroll
  for (int e = 0; e < N; e++) acc[e] = acc[e] * f1 + acc2[e] * f2;
  m = mx;
}

// The output of heads h0 .. h0 + nq - 1 of row t from the `active` split states of each (partials [.., D + 2]): a warp
// per head finds the largest max, each split's factor exp(m_p - max) and the total sum's inverse; then every thread
// takes (head, dimension) pairs, summing the splits' outputs in split order. All loads bypass L1 (other blocks wrote
// them).
template <typename T, int G>
__device__ void merge_splits(T* out, const float* partials, int t, int h0, int nq, int heads, int D, int splits, int active) {
  __shared__ float factors[G][MAX_SPLITS + 1];  // [head][split], then 1 / the head's sum
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int g = warp; g < nq; g += DECODE_WARPS) {
    const float* st = partials + (size_t)(t * heads + h0 + g) * splits * (D + 2);
    float mx = -INFINITY, sum = 0.f;
    for (int p = lane; p < active; p += 32) mx = fmaxf(mx, __ldcg(st + (size_t)p * (D + 2) + D));
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    for (int p = lane; p < active; p += 32) {
      const float mp = __ldcg(st + (size_t)p * (D + 2) + D);
      const float f = mp == -INFINITY ? 0.f : __expf(mp - mx);
      factors[g][p] = f;
      sum += f * __ldcg(st + (size_t)p * (D + 2) + D + 1);
    }
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) factors[g][MAX_SPLITS] = sum == 0.f ? 0.f : 1.f / sum;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < nq * D; i += DECODE_WARPS * 32) {
    const int g = i / D, d = i - g * D;
    const float* st = partials + (size_t)(t * heads + h0 + g) * splits * (D + 2) + d;
    float acc = 0.f;
    for (int p = 0; p < active; p++) acc += factors[g][p] * __ldcg(st + (size_t)p * (D + 2));
    out[((size_t)t * heads + h0 + g) * D + d] = from_f<T>(acc * factors[g][MAX_SPLITS]);
  }
}

// KIND: DECODE (attend_decode), DECODE_BIAS (attend_decode_bias: with T5's bias, a kernel of its own so that the
// plain one keeps its registers) or CROSS (attend_cross): `qkv` is then q alone, [n, heads * D]; the keys are
// lengths[slots[t]] (`key_lens` per slot) of the slot's memory cache, all of them (no window, no bias), and nothing
// is written. A row without keys (a padding slot's empty memory) gets zeros, as the reference's empty sum does.
enum DecodeKind { DECODE, DECODE_BIAS, CROSS };

template <typename T, int KIND, int G>
__device__ void attend_decode(T* out, const T* qkv, T* kc, T* vc, const int* tables, const int* slots, const int* key_lens,
                              int heads, int kv_heads, int D, float scale, int window, int block_size, int max_blocks,
                              PositionBias<T> bias, DecodeSplit split) {
  constexpr int V = Vec<T>::N;
  constexpr int THREADS = DECODE_WARPS * 32;
  constexpr bool CROSS = KIND == DecodeKind::CROSS, biased = KIND == DecodeKind::DECODE_BIAS;
  static_assert(!biased || G == 1, "the position bias is per query head: one a block");
  extern __shared__ int blocks[];
  float* merged = reinterpret_cast<float*>(blocks + max_blocks);  // [DECODE_WARPS, G, D + 2]
  const int group = heads / kv_heads, chunks = (group + G - 1) / G;
  const int kvh = blockIdx.x / chunks, h0 = kvh * group + (blockIdx.x % chunks) * G, nq = min(G, (kvh + 1) * group - h0);
  const int t = blockIdx.y;
  const int W = kv_heads * D, row_width = CROSS ? heads * D : heads * D + 2 * W;
  const int L = CROSS ? key_lens[slots[t]] : key_lens[t];
  const int first = !CROSS && window > 0 ? max(0, L - window) : 0, count = L - first;
  const int splits = min(split.splits, MAX_SPLITS);
  const int active = splits > 1 ? min(splits, max(1, (count + SPLIT_MIN_KEYS - 1) / SPLIT_MIN_KEYS)) : 1;
  const int s = blockIdx.z;
  if (s >= active) return;
  // this split's keys: sfirst .. send - 1
  const int chunk = (count + active - 1) / active;
  const int sfirst = first + min(count, s * chunk), send = first + min(count, (s + 1) * chunk), scount = send - sfirst;
  const int* table = tables + (size_t)slots[t] * max_blocks;
  for (int b = sfirst / block_size + threadIdx.x; b < (send + block_size - 1) / block_size; b += THREADS) blocks[b] = table[b];
  const T* row = qkv + (size_t)t * row_width;
  if (!CROSS && s == active - 1) {  // the split that reads key L - 1
    const size_t own = (size_t)cache_row(table, L - 1, block_size) * W + kvh * D;
    const T* own_k = row + heads * D + kvh * D;
    for (int i = threadIdx.x; i < D; i += THREADS) {
      kc[own + i] = own_k[i];
      vc[own + i] = own_k[W + i];
    }
  }
  const int pos = biased ? bias.positions[t] : 0;
  row += h0 * D;  // the block's first head's q
  const bool vec = D % V == 0 && aligned16(qkv) && aligned16(kc) && aligned16(vc);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int lpk = 1;  // lanes per key: a power of two, so that groups are shuffle-aligned
  while (lpk * V < D) lpk <<= 1;
  const int groups = 32 / lpk, grp = lane / lpk, d0 = (lane % lpk) * V;
  const int nd = max(0, min(V, D - d0));  // this lane's dimensions
  float q[G][V], acc[G][V], m[G], l[G];
#pragma unroll
  for (int g = 0; g < G; g++) {
    const Vec<T> qv = load_dims(row + g * D + d0, g < nq ? nd : 0, vec);
#pragma unroll
    for (int e = 0; e < V; e++) {
      q[g][e] = to_f(qv.v[e]) * scale;
      acc[g][e] = 0.f;
    }
    m[g] = -INFINITY;
    l[g] = 0.f;
  }
  __syncthreads();  // the block ids, and this row's k and v (read back below as key L - 1)
  const int stride = DECODE_WARPS * groups;  // keys per unroll step of a round
  const size_t col = (size_t)kvh * D + d0;
  // key of (round base, step u, group): sfirst + base + u * stride + grp; `base` is the same for a whole warp
  for (int base = warp * groups; base < scount; base += stride * DECODE_UNROLL) {
    Vec<T> kv[DECODE_UNROLL], vv[DECODE_UNROLL];
#pragma unroll
    for (int u = 0; u < DECODE_UNROLL; u++) {
      const int j = sfirst + base + u * stride + grp;
      if (j < send) {
        const size_t r = (size_t)(blocks[block_of(j, block_size)] * block_size + row_in_block(j, block_size)) * W + col;
        kv[u] = load_dims(kc + r, nd, vec);
        vv[u] = load_dims(vc + r, nd, vec);
      }
    }
    // the round's scores, then one rescale of each head's running state for all of them
    float sc[DECODE_UNROLL][G];
#pragma unroll
    for (int u = 0; u < DECODE_UNROLL; u++) {
      const bool valid = base + u * stride + grp < scount;
      float k[V];
#pragma unroll
      for (int e = 0; e < V; e++) k[e] = valid ? to_f(kv[u].v[e]) : 0.f;
#pragma unroll
      for (int g = 0; g < G; g++) {
        sc[u][g] = 0.f;
#pragma unroll
        for (int e = 0; e < V; e++) sc[u][g] += q[g][e] * k[e];
      }
    }
    for (int o = 1; o < lpk; o <<= 1) {
#pragma unroll
      for (int u = 0; u < DECODE_UNROLL; u++) {
#pragma unroll
        for (int g = 0; g < G; g++) sc[u][g] += __shfl_xor_sync(0xffffffffu, sc[u][g], o);
      }
    }
    if constexpr (biased) {
#pragma unroll
      for (int u = 0; u < DECODE_UNROLL; u++) {
        const int j = sfirst + base + u * stride + grp;
        if (j < send) sc[u][0] += bias.at(j, pos, heads, h0);
      }
    }
#pragma unroll
    for (int g = 0; g < G; g++) {
      float mx = m[g];
#pragma unroll
      for (int u = 0; u < DECODE_UNROLL; u++) if (base + u * stride + grp < scount) mx = fmaxf(mx, sc[u][g]);
      if (mx != -INFINITY) {  // the group had a key this round
        const float c = __expf(m[g] - mx);
        l[g] *= c;
#pragma unroll
        for (int e = 0; e < V; e++) acc[g][e] *= c;
#pragma unroll
        for (int u = 0; u < DECODE_UNROLL; u++) {
          if (base + u * stride + grp >= scount) break;
          const float p = __expf(sc[u][g] - mx);
          l[g] += p;
#pragma unroll
          for (int e = 0; e < V; e++) acc[g][e] += p * to_f(vv[u].v[e]);
        }
        m[g] = mx;
      }
    }
  }
  // merge the groups of the warp (a shuffle tree), then the warps (in warp order, by warp 0)
  for (int o = lpk; o < 32; o <<= 1) {
#pragma unroll
    for (int g = 0; g < G; g++) {
      float acc2[V];
#pragma unroll
      for (int e = 0; e < V; e++) acc2[e] = __shfl_xor_sync(0xffffffffu, acc[g][e], o);
      const float m2 = __shfl_xor_sync(0xffffffffu, m[g], o), l2 = __shfl_xor_sync(0xffffffffu, l[g], o);
      merge_softmax<V>(m[g], l[g], acc[g], m2, l2, acc2);
    }
  }
  if (warp != 0 && grp == 0) {
#pragma unroll
    for (int g = 0; g < G; g++) {
      float* mine = merged + (warp * G + g) * (D + 2);
      if (lane == 0) {
        mine[D] = m[g];
        mine[D + 1] = l[g];
      }
#pragma unroll
      for (int e = 0; e < V; e++) if (e < nd) mine[d0 + e] = acc[g][e];
    }
  }
  __syncthreads();
  if (warp == 0 && grp == 0) {
#pragma unroll
    for (int g = 0; g < G; g++) {
      for (int w = 1; w < DECODE_WARPS; w++) {
        const float* other = merged + (w * G + g) * (D + 2);
        float acc2[V];
#pragma unroll
        for (int e = 0; e < V; e++) acc2[e] = e < nd ? other[d0 + e] : 0.f;
        merge_softmax<V>(m[g], l[g], acc[g], other[D], other[D + 1], acc2);
      }
      if (g >= nq) continue;
      if (active == 1) {
        const float inv = l[g] == 0.f ? 0.f : 1.f / l[g];  // l == 0: no keys (cross-attention of a padding row)
        T* o = out + ((size_t)t * heads + h0 + g) * D + d0;
#pragma unroll
        for (int e = 0; e < V; e++) if (e < nd) o[e] = from_f<T>(acc[g][e] * inv);
      } else {  // this split's state, for the merge
        float* part = split.partials + ((size_t)(t * heads + h0 + g) * splits + s) * (D + 2);
#pragma unroll
        for (int e = 0; e < V; e++) if (e < nd) part[d0 + e] = acc[g][e];
        if (lane == 0) {
          part[D] = m[g];
          part[D + 1] = l[g];
        }
      }
    }
  }
  if (active == 1) return;
  // the last of the block's splits to finish merges them all
  __shared__ int last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(split.counters + t * heads + h0, 1) + 1 == active;
  __syncthreads();
  if (!last) return;
  __threadfence();
  merge_splits<T, G>(out, split.partials, t, h0, nq, heads, D, splits, active);
  if (threadIdx.x == 0) split.counters[t * heads + h0] = 0;
}

// Segments: [count, 3] = (first packed row, number of rows, unused); rows of a segment are consecutive
// positions of one sequence. Grid: (query tiles, segments, heads). 128 threads: 4 per query row, each
// holding DPT of the head's dimensions. Keys are those j < key_lens[row] of the row's sequence. A key tile
// may straddle cache blocks (any block_size), so the tile is loaded a warp per key, lanes over the head's
// dimensions: the block lookup happens once per key and the loads of a key stay contiguous.
constexpr int PF_ROWS = 32, PF_KEYS = 32;

template <typename T, int DPT>
__device__ void attend_prefill(T* out, const T* qkv, const T* kc, const T* vc, const int* tables, const int* slots,
                               const int* key_lens, const int* segments, int heads, int kv_heads, int D, float scale,
                               int window, int block_size, int max_blocks, PositionBias<T> bias) {
  extern __shared__ float tile[];  // K and V tiles: 2 * PF_KEYS * D floats
  float* ks = tile;
  float* vs = tile + PF_KEYS * D;
  const int seg = blockIdx.y, h = blockIdx.z;
  const int first = segments[seg * 3], count = segments[seg * 3 + 1];
  const int r0 = blockIdx.x * PF_ROWS;
  if (r0 >= count) return;
  const int H = heads * D, W = kv_heads * D, row_width = H + 2 * W, kvh = h / (heads / kv_heads);
  const int lr = threadIdx.x >> 2, part = threadIdx.x & 3;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int row = first + r0 + lr;
  const bool active = r0 + lr < count;
  const int* table = tables + (size_t)slots[first] * max_blocks;
  const int L = active ? key_lens[row] : 0;
  const int lo = window > 0 ? L - window : 0;  // this row's first key
  const int pos = active && bias.table ? bias.positions[row] : 0;
  // the block needs keys up to the longest row of its tile (the last valid one, keys grow with position), and
  // from the first key of its first row: tiles before it are masked for every row (skipping them changes nothing)
  const int last_row = first + min(count, r0 + PF_ROWS) - 1;
  const int Lmax = key_lens[last_row];
  const int start = window > 0 ? max(0, key_lens[first + r0] - window) / PF_KEYS * PF_KEYS : 0;
  const int d0 = part * DPT;
  float q[DPT], acc[DPT];
#pragma unroll
  for (int i = 0; i < DPT; i++) {
    q[i] = active && d0 + i < D ? to_f(qkv[(size_t)row * row_width + h * D + d0 + i]) * scale : 0.f;
    acc[i] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int j0 = start; j0 < Lmax; j0 += PF_KEYS) {
    const int nk = min(PF_KEYS, Lmax - j0);
    __syncthreads();
    for (int j = warp; j < nk; j += warps) {
      const size_t src = (size_t)cache_row(table, j0 + j, block_size) * W + kvh * D;
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
      if (j0 + j >= L || j0 + j < lo) continue;  // masked: beyond this row's keys, or before its window
      if (bias.table) s += bias.at(j0 + j, pos, heads, h);
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

// the bias arguments of the decode and prompt kernels
#define BIAS_PARAMS(T) const T *bias, const int *bias_pos, int buckets, int max_distance, int bidirectional
#define BIAS_ARG(T) PositionBias<T>{bias, bias_pos, buckets, max_distance, bidirectional}
#define ATTN(T, S)                                                                                         \
  extern "C" __global__ void write_kv_##S(const T* qkv, T* kc, T* vc, const int* tables, const int* slots,  \
                                          const int* positions, int row_width, int W, int block_size,      \
                                          int max_blocks) {                                                 \
    pdl_begin();                                                                                            \
    write_kv<T>(qkv, kc, vc, tables, slots, positions, row_width, W, block_size, max_blocks);               \
  }                                                                                                        \
  DECODE(T, S, 1, 6) DECODE(T, S, 2, 4) DECODE(T, S, 4, 3)                                               \
  extern "C" __global__ void __launch_bounds__(DECODE_WARPS * 32) attend_decode_bias_##S(                  \
      T* out, const T* qkv, T* kc, T* vc, const int* tables, const int* slots, const int* key_lens, int heads, \
      int kv_heads, int D, float scale, int window, int block_size, int max_blocks, int splits,           \
      float* partials, int* counters, BIAS_PARAMS(T)) {                                                    \
    pdl_begin();                                                                                           \
    attend_decode<T, DECODE_BIAS, 1>(out, qkv, kc, vc, tables, slots, key_lens, heads, kv_heads, D, scale, \
                                     window, block_size, max_blocks, BIAS_ARG(T),                          \
                                     DecodeSplit{splits, partials, counters});                             \
  }                                                                                                        \
  extern "C" __global__ void __launch_bounds__(DECODE_WARPS * 32, 6) attend_cross_##S(                    \
      T* out, const T* q, const T* kc, const T* vc, const int* tables, const int* slots, const int* lengths, \
      int heads, int kv_heads, int D, float scale, int block_size, int max_blocks) {                       \
    pdl_begin();                                                                                           \
    attend_decode<T, CROSS, 1>(out, q, const_cast<T*>(kc), const_cast<T*>(vc), tables, slots, lengths, heads, \
                               kv_heads, D, scale, 0, block_size, max_blocks,                              \
                               PositionBias<T>{nullptr, nullptr, 0, 0, 0}, DecodeSplit{1, nullptr, nullptr}); \
  }                                                                                                        \
  extern "C" __global__ void copy_blocks_##S(T* pool, const int* pairs, int planes, int blocks, int block_values) { \
    pdl_begin();                                                                                           \
    copy_blocks<T>(pool, pairs, planes, blocks, block_values);                                             \
  }                                                                                                        \
  PREFILL(T, S, 2) PREFILL(T, S, 4) PREFILL(T, S, 8) PREFILL(T, S, 16) PREFILL(T, S, 32)
// the plain decode kernel for G query heads a block (attend_decode1 for every head on its own), MIN blocks an SM
#define DECODE(T, S, G, MIN)                                                                               \
  extern "C" __global__ void __launch_bounds__(DECODE_WARPS * 32, MIN) attend_decode##G##_##S(             \
      T* out, const T* qkv, T* kc, T* vc, const int* tables, const int* slots, const int* key_lens, int heads, \
      int kv_heads, int D, float scale, int window, int block_size, int max_blocks, int splits,           \
      float* partials, int* counters) {                                                                    \
    pdl_begin();                                                                                           \
    attend_decode<T, DECODE, G>(out, qkv, kc, vc, tables, slots, key_lens, heads, kv_heads, D, scale, window, \
                                block_size, max_blocks, PositionBias<T>{nullptr, nullptr, 0, 0, 0},       \
                                DecodeSplit{splits, partials, counters});                                  \
  }
#define PREFILL(T, S, DPT)                                                                                 \
  extern "C" __global__ void __launch_bounds__(128) attend_prefill##DPT##_##S(                             \
      T* out, const T* qkv, const T* kc, const T* vc, const int* tables, const int* slots, const int* key_lens, \
      const int* segments, int heads, int kv_heads, int D, float scale, int window, int block_size,        \
      int max_blocks, BIAS_PARAMS(T)) {                                                                     \
    pdl_begin();                                                                                            \
    attend_prefill<T, DPT>(out, qkv, kc, vc, tables, slots, key_lens, segments, heads, kv_heads, D, scale,  \
                           window, block_size, max_blocks, BIAS_ARG(T));                                   \
  }
FOR_EACH_DTYPE(ATTN)
