// Logits to tokens on the GPU, per request, so that only token ids (and asked-for log-probs) cross to the
// host. The definition, and the reference every kernel here is tested against, is
// src/backends/cpu/sampling.ts (test/gpu/sampling.test.ts); the request rows are laid out as in
// src/ops/requests.ts; the random numbers are those of src/ops/rng.ts. Launchers:
// src/backends/cuda/sampling.ts.
//
// Every kernel reads what to do for a row from the device tables only (no host decision per row), so a
// decode step is one fixed sequence of launches that a CUDA graph captures. Selections never sort the
// vocabulary: exact top-k by a two-stage selection over (value, id) packed into one 64-bit key, and
// thresholds by radix selection over float bits with shared-memory histograms.
#include "common.cuh"

// ---- src/ops/requests.ts ----
enum Req : int {
  R_MODE = 0,
  R_TEMPERATURE = 1,
  R_TOP_K = 2,
  R_TOP_P = 3,
  R_MIN_P = 4,
  R_TOP_P_DECAY = 5,
  R_TOP_P_MIN = 6,
  R_SEED = 7,
  R_STREAM = 8,
  R_REPETITION = 9,
  R_PRESENCE = 10,
  R_FREQUENCY = 11,
  R_PROMPT_LEN = 12,
  R_MIN_NEW = 13,
  R_EOS_COUNT = 14,
  R_RESET_COUNT = 15,
  R_BAD_INTS = 16,
  R_LOGPROBS = 17,
  R_CANDIDATES = 18,
  R_PROCESS = 19,
  R_NO_REPEAT_NGRAM = 20,
  R_FORCED_BOS = 21,
  R_FORCED_EOS = 22,
  R_MAX_NEW = 23,
  R_LIST = 24,
};
constexpr int MODE_NONE = 0, MODE_SAMPLE = 1, MODE_BEAM = 2;
constexpr int LIST_CAPACITY = 488;
constexpr int REQUEST_STRIDE = R_LIST + LIST_CAPACITY;
constexpr int MAX_CANDIDATES = 64;
constexpr int MAX_TOP_LOGPROBS = 20;
constexpr int MAX_CHUNKS = 32;
constexpr int CANDIDATE_SCRATCH = 2 * MAX_CHUNKS * MAX_CANDIDATES + MAX_CHUNKS;
constexpr int LOGPROB_STRIDE = 1 + 2 * MAX_TOP_LOGPROBS;

__device__ __forceinline__ const int* request_of(const int* requests, int slot) {
  return requests + (size_t)slot * REQUEST_STRIDE;
}
__device__ __forceinline__ float req_f(const int* q, int field) { return __int_as_float(q[field]); }

// candidatesOf in src/ops/requests.ts (clamped: a row never finds more than MAX_CANDIDATES).
__device__ __forceinline__ int candidates_of(const int* q) {
  const int mode = q[R_MODE];
  if (mode == MODE_BEAM) return max(0, min(q[R_CANDIDATES], MAX_CANDIDATES));
  if (mode != MODE_SAMPLE) return 0;
  if (req_f(q, R_TEMPERATURE) == 0.f) return 1;
  const int k = q[R_TOP_K];
  return k >= 1 && k <= MAX_CANDIDATES ? k : 0;
}

// ---- random numbers: src/ops/rng.ts ----
__device__ __forceinline__ uint32_t hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

// The 24 random bits of uniform(seed, stream, counter); divided by 2^24 it is the uniform, exactly.
__device__ __forceinline__ uint32_t uniform_bits(uint32_t seed, uint32_t stream, uint32_t counter) {
  return hash32(hash32(hash32(seed) ^ stream) + counter) >> 8;
}

// ---- ordering keys ----
// Floats as unsigned keys that sort like the floats.
__device__ __forceinline__ uint32_t key_of(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float value_of(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}
// (value, id) as one key: larger is better, equal values rank the lower id first, as the reference's
// ties do. -0 counts as +0 (they tie in the reference). Every element's key is distinct and nonzero, so 0
// marks "no element" and no selection ever has to break a tie.
__device__ __forceinline__ uint64_t pack(float v, int id) {
  return ((uint64_t)key_of(v == 0.f ? 0.f : v) << 32) | (uint32_t)~id;
}
__device__ __forceinline__ uint64_t pack_key(uint32_t key, int id) { return ((uint64_t)key << 32) | (uint32_t)~id; }
__device__ __forceinline__ int id_of(uint64_t p) { return (int)~(uint32_t)p; }
__device__ __forceinline__ uint32_t key_part(uint64_t p) { return (uint32_t)(p >> 32); }

__device__ __forceinline__ uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }

template <int T>
__device__ __forceinline__ uint64_t block_max_u64(uint64_t x, uint64_t* sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = max_u64(x, __shfl_xor_sync(0xffffffffu, x, o));
  __syncthreads();
  if (lane == 0) sh[warp] = x;
  __syncthreads();
  x = lane < T / 32 ? sh[lane] : 0;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = max_u64(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

// N sums over the block in one round of synchronisation; every thread gets them.
template <int N>
__device__ __forceinline__ void block_sums(float (&v)[N], float (*sh)[32]) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
  for (int j = 0; j < N; j++) v[j] = warp_sum(v[j]);
  __syncthreads();
  if (lane == 0) {
#pragma unroll
    for (int j = 0; j < N; j++) sh[j][warp] = v[j];
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < N; j++) v[j] = warp_sum(lane < warps ? sh[j][lane] : 0.f);
}

// ---- radix selection by count over packed keys ----
// One warp over a 256-bin digit histogram, larger digits first: lane l loads bins 255 - 8l down to
// 248 - 8l into c (so lower lanes hold the larger digits) and their sum into s, and gets back the inclusive
// prefix of the lanes' sums (what lanes 0..l hold together). Count and mass selection share it.
template <typename V>
__device__ __forceinline__ V warp_digit_scan(const V* hist, int lane, V (&c)[8], V& s) {
  s = 0;
#pragma unroll
  for (int j = 0; j < 8; j++) {
    c[j] = hist[255 - 8 * lane - j];
    s += c[j];
  }
  V incl = s;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const V y = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += y;
  }
  return incl;
}

struct CountPick {
  int digit, above, inbucket;
};

// The need-th largest of the packed keys get(i), i < N (0: no element; need <= the elements present),
// found 8 bits at a time from the top. It stops as soon as the bucket holds exactly the keys still needed,
// so the selection is {P : (P & mask) >= prefix}: exactly `need` keys. Logits share their top bits, so the
// histogram increments are aggregated per warp (__match_any_sync) rather than serialised on one counter.
template <int T, typename Get>
__device__ void radix_select_count(int N, int need, Get get, int* hist, CountPick* pick, uint64_t& prefix_out, uint64_t& mask_out) {
  uint64_t prefix = 0, mask = 0;
  int above = 0;
  const int lane = threadIdx.x & 31;
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += T) hist[b] = 0;
    __syncthreads();
    for (int i0 = 0; i0 < N; i0 += T) {  // uniform trip count: every lane reaches the warp vote
      const int i = i0 + threadIdx.x;
      uint32_t bin = 256;
      if (i < N) {
        const uint64_t p = get(i);
        if (p != 0 && (p & mask) == prefix) bin = (uint32_t)(p >> shift) & 255u;
      }
      const unsigned peers = __match_any_sync(0xffffffffu, bin);
      if (bin < 256 && lane == __ffs(peers) - 1) atomicAdd(&hist[bin], __popc(peers));
    }
    __syncthreads();
    if (threadIdx.x < 32) {
      // lane l holds digits 255 - 8l down to 248 - 8l: lower lanes hold the larger digits
      int c[8], s;
      const int incl = warp_digit_scan(hist, lane, c, s);
      int acc = above + incl - s;
      if (acc < need && need <= acc + s) {
        int found = 0, at = acc;
        bool done = false;
#pragma unroll
        for (int j = 0; j < 8; j++) {
          if (!done) {
            if (acc + c[j] >= need) {
              found = j;
              at = acc;
              done = true;
            } else {
              acc += c[j];
            }
          }
        }
        pick->digit = 255 - 8 * lane - found;
        pick->above = at;
        pick->inbucket = hist[255 - 8 * lane - found];
      }
    }
    __syncthreads();
    prefix |= (uint64_t)pick->digit << shift;
    mask |= 255ull << shift;
    above = pick->above;
    const bool done = pick->inbucket == need - above;
    __syncthreads();  // pick and hist are rewritten by the next pass (or by the caller)
    if (done) break;
  }
  prefix_out = prefix;
  mask_out = mask;
}

// ---- exact top-k of a block's elements ----
constexpr int TOPK_THREADS = 256;
// Candidates the filter may keep in shared memory; more go to radix selection.
constexpr int TOPK_CAP = 256;

struct TopkShared {
  uint64_t best[TOPK_THREADS];
  uint64_t cand[TOPK_CAP];
  uint64_t red[32];
  int hist[256];
  CountPick pick;
  uint64_t tau;
  int count;
};

// put(rank, key) for the k best packed keys get(i), i < N (0: no element; 1 <= k <= MAX_CANDIDATES and k
// <= the elements present), each rank once. The top k are at least the k-th best of the per-thread bests
// (those are k distinct elements), so a filter against it leaves, for any ordinary row, a few more than k
// candidates, which are ranked among themselves; if more than `cap` pass (a row built against the filter)
// radix selection picks exactly k instead. cap = 0 forces the radix path (tests).
template <typename Get, typename Put>
__device__ void block_topk(int N, int k, int cap, Get get, Put put, TopkShared& s) {
  constexpr int T = TOPK_THREADS;
  const int tid = threadIdx.x;
  if (k == 1 && cap > 0) {
    uint64_t b = 0;
    for (int i = tid; i < N; i += T) b = max_u64(b, get(i));
    b = block_max_u64<T>(b, s.red);
    if (tid == 0) put(0, b);
    return;
  }
  uint64_t b = 0;
  for (int i = tid; i < N; i += T) b = max_u64(b, get(i));
  s.best[tid] = b;
  if (tid == 0) {
    s.tau = 0;
    s.count = 0;
  }
  __syncthreads();
  if (b != 0) {
    int rank = 0;
    for (int j = 0; j < T; j++) rank += s.best[j] > b;
    if (rank == k - 1) s.tau = b;  // fewer than k nonempty threads: tau stays 0 and everything passes
  }
  __syncthreads();
  const uint64_t tau = s.tau;
  const int room = min(cap, TOPK_CAP);
  for (int i = tid; i < N; i += T) {
    const uint64_t p = get(i);
    if (p != 0 && p >= tau) {
      const int at = atomicAdd(&s.count, 1);
      if (at < room) s.cand[at] = p;
    }
  }
  __syncthreads();
  int C = s.count;
  if (C > room) {
    uint64_t prefix, mask;
    radix_select_count<T>(N, k, get, s.hist, &s.pick, prefix, mask);  // every thread read count before its syncs
    if (tid == 0) s.count = 0;
    __syncthreads();
    for (int i = tid; i < N; i += T) {
      const uint64_t p = get(i);
      if (p != 0 && (p & mask) >= prefix) s.cand[atomicAdd(&s.count, 1)] = p;  // exactly k <= TOPK_CAP
    }
    __syncthreads();
    C = s.count;
  }
  for (int c = tid; c < C; c += T) {
    const uint64_t p = s.cand[c];
    int rank = 0;
    for (int j = 0; j < C; j++) rank += s.cand[j] > p;
    if (rank < k) put(rank, p);
  }
}

// Scratch row of the candidates (CANDIDATE_SCRATCH int32): chunk c's list at keys [c * 64, c * 64 + k)
// and ids [2048 + c * 64, ...), best first, then at [4096 + c] whether the chunk holds a NaN or +Infinity
// (selectCandidates' status). In the logprobs pass (k <= 20) keys 62 and 63 of a chunk hold its max and
// sum of exp(x - max), as f32 bits.
constexpr int SCRATCH_IDS = MAX_CHUNKS * MAX_CANDIDATES;
constexpr int SCRATCH_FLAGS = 2 * MAX_CHUNKS * MAX_CANDIDATES;
constexpr int LSE_MAX = MAX_CANDIDATES - 2, LSE_SUM = MAX_CANDIDATES - 1;

// The k a row selects: what 0 = selectCandidates (candidatesOf), 1 = logprobs (the request's K, -1: none).
__device__ __forceinline__ int row_k(const int* q, int what) {
  if (what == 0) return candidates_of(q);
  if (q[R_MODE] == MODE_NONE || q[R_LOGPROBS] < 0) return -1;
  return min(q[R_LOGPROBS], MAX_TOP_LOGPROBS);
}

// Stage 1 of selectCandidates and of logprobs' top-K (topK in src/backends/cpu/sampling.ts): grid (rows,
// chunks); each block writes the exact top-k of its chunk of the row to scratch, and in the logprobs pass
// the chunk's share of the log-sum-exp. In the selectCandidates pass every row but a padding row also
// notes whether its chunk holds a NaN or +Infinity (rowStatus); otherwise rows whose k is 0 do nothing.
extern "C" __global__ void __launch_bounds__(TOPK_THREADS)
    topk_chunks(int* scratch, const float* x, int V, int cs, const int* slots, const int* requests, int what, int cap) {
      pdl_begin();
  __shared__ TopkShared s;
  __shared__ float red[32];
  const int row = blockIdx.x, c = blockIdx.y;
  const int* q = request_of(requests, slots[row]);
  const int k = row_k(q, what);
  const int lo = c * cs, len = min(cs, V - lo);
  const float* xs = x + (size_t)row * V + lo;
  if (what == 0 && q[R_MODE] != MODE_NONE) {
    // !(v < inf): NaN or +Infinity. The row is in cache for the selection that follows.
    bool bad = false;
    for (int i = threadIdx.x; i < len; i += TOPK_THREADS) bad |= !(xs[i] < INFINITY);
    bad = __syncthreads_or(bad);
    if (threadIdx.x == 0) scratch[(size_t)row * CANDIDATE_SCRATCH + SCRATCH_FLAGS + c] = bad ? 1 : 0;
  }
  if (k == 0 && what == 0) return;
  if (k < 0) return;
  int* keys = scratch + (size_t)row * CANDIDATE_SCRATCH + c * MAX_CANDIDATES;
  int* ids = keys + SCRATCH_IDS;
  const int kk = min(k, len);
  if (kk > 0) {
    block_topk(len, kk, cap, [&](int i) { return pack(xs[i], lo + i); },
               [&](int rank, uint64_t p) {
                 keys[rank] = (int)key_part(p);
                 ids[rank] = id_of(p);
               },
               s);
  }
  if (what == 1) {
    float m = -INFINITY;
    for (int i = threadIdx.x; i < len; i += TOPK_THREADS) m = fmaxf(m, xs[i]);
    m = block_max(m, red);
    float sum = 0.f;
    if (m != -INFINITY)
      for (int i = threadIdx.x; i < len; i += TOPK_THREADS) sum += __expf(xs[i] - m);
    sum = block_sum(sum, red);
    if (threadIdx.x == 0) {
      keys[LSE_MAX] = __float_as_int(m);
      keys[LSE_SUM] = __float_as_int(sum);
    }
  }
}

// Entry q < chunks * k of the chunks' lists in position-major order: position q / chunks of list
// q % chunks (0 past the end of a short list). Enumerated so, each thread's strided group of entries starts
// at one of the first few positions of a list, so the group bests are the top of the row and the filter
// keeps about k entries; list-major order would give groups that all sit at one position (for k = 64).
__device__ __forceinline__ uint64_t listed(const int* keys, int q, int chunks, int V, int cs) {
  const int j = q / chunks, c = q - j * chunks;
  if (j >= min(cs, V - c * cs)) return 0;
  return pack_key((uint32_t)keys[c * MAX_CANDIDATES + j], keys[SCRATCH_IDS + c * MAX_CANDIDATES + j]);
}

// Stage 2 of selectCandidates (src/backends/cpu/sampling.ts): one block per row merges the chunks' lists
// into the row's k best, [rows, MAX_CANDIDATES] values and ids; entries past min(k, V) are left alone. The
// row's status (1: a NaN or +Infinity somewhere in the row) is the chunks' flags together; padding rows
// (MODE_NONE) are left alone.
extern "C" __global__ void __launch_bounds__(TOPK_THREADS)
    topk_merge(float* values, int* ids, int* status, const int* scratch, int V, int cs, int chunks, const int* slots,
               const int* requests, int cap) {
                 pdl_begin();
  __shared__ TopkShared s;
  const int row = blockIdx.x;
  const int* q = request_of(requests, slots[row]);
  if (q[R_MODE] == MODE_NONE) return;
  const int* keys = scratch + (size_t)row * CANDIDATE_SCRATCH;
  if (threadIdx.x == 0) {
    int bad = 0;
    for (int c = 0; c < chunks; c++) bad |= keys[SCRATCH_FLAGS + c];
    status[row] = bad;
  }
  const int k = candidates_of(q);
  if (k == 0) return;
  float* vo = values + (size_t)row * MAX_CANDIDATES;
  int* io = ids + (size_t)row * MAX_CANDIDATES;
  block_topk(chunks * k, min(k, V), cap, [&](int q) { return listed(keys, q, chunks, V, cs); },
             [&](int rank, uint64_t p) {
               vo[rank] = value_of(key_part(p));
               io[rank] = id_of(p);
             },
             s);
}

// Stage 2 of logprobs (src/backends/cpu/sampling.ts): the row's log-sum-exp from the chunks' shares, the
// drawn token's log-prob, and the K best raw logits as (id, log-prob), out [rows, LOGPROB_STRIDE].
extern "C" __global__ void __launch_bounds__(TOPK_THREADS)
    logprobs_merge(int* out, const int* scratch, const float* x, const int* drawn, int V, int cs, int chunks, const int* slots,
                   const int* requests, int cap) {
                     pdl_begin();
  __shared__ TopkShared s;
  __shared__ float lse_s;
  const int row = blockIdx.x;
  const int K = row_k(request_of(requests, slots[row]), 1);
  if (K < 0) return;
  const int* keys = scratch + (size_t)row * CANDIDATE_SCRATCH;
  if (threadIdx.x < 32) {
    const int c = threadIdx.x;
    const float mc = c < chunks ? __int_as_float(keys[c * MAX_CANDIDATES + LSE_MAX]) : -INFINITY;
    const float sc = c < chunks ? __int_as_float(keys[c * MAX_CANDIDATES + LSE_SUM]) : 0.f;
    const float m = warp_max(mc);
    const float sum = warp_sum(mc == -INFINITY ? 0.f : sc * expf(mc - m));
    if (c == 0) lse_s = m == -INFINITY ? -INFINITY : m + logf(sum);
  }
  __syncthreads();
  const float lse = lse_s;
  int* o = out + (size_t)row * LOGPROB_STRIDE;
  if (threadIdx.x == 0) {
    const int id = drawn[row];
    o[0] = __float_as_int(id >= 0 && id < V ? x[(size_t)row * V + id] - lse : NAN);
  }
  if (K > 0) {
    block_topk(chunks * K, min(K, V), cap, [&](int q) { return listed(keys, q, chunks, V, cs); },
               [&](int rank, uint64_t p) {
                 o[1 + 2 * rank] = id_of(p);
                 o[2 + 2 * rank] = __float_as_int(value_of(key_part(p)) - lse);
               },
               s);
  }
}

// ---- processLogits ----
constexpr int PROCESS_THREADS = 1024;
// Vocabulary ids per pass of the penalty histogram (32 KiB of shared memory).
constexpr int PENALTY_CHUNK = 8192;
// A histogram entry: generated-token count in the low bits, SEEN when the token is in the prompt.
constexpr int SEEN = 1 << 30;

// processLogits in src/backends/cpu/sampling.ts: one block per row. Penalties go through a shared
// histogram over a chunk of the vocabulary at a time, so each penalised token is rewritten by exactly one
// thread, once, from its value before any penalty (the reference's "once per distinct token"), whatever
// the history length and even when scores is logits.
extern "C" __global__ void __launch_bounds__(PROCESS_THREADS)
    process_logits(float* scores, const float* logits, int V, const int* slots, const int* lengths, const int* requests,
                   const int* history, int max_seq) {
                     pdl_begin();
  __shared__ int counts[PENALTY_CHUNK];
  __shared__ int bad[LIST_CAPACITY];
  __shared__ int words[LIST_CAPACITY];
  __shared__ int word_count;
  __shared__ float red[32];
  constexpr int T = PROCESS_THREADS;
  const int row = blockIdx.x, slot = slots[row], tid = threadIdx.x;
  const int* q = request_of(requests, slot);
  const int mode = q[R_MODE];
  if (mode == MODE_NONE) return;
  float* s = scores + (size_t)row * V;
  const float* l = logits + (size_t)row * V;
  if (mode == MODE_BEAM) {
    float m = -INFINITY;
    for (int i = tid; i < V; i += T) m = fmaxf(m, l[i]);
    m = block_max(m, red);
    float sum = 0.f;
    if (m != -INFINITY)
      for (int i = tid; i < V; i += T) sum += __expf(l[i] - m);
    sum = block_sum(sum, red);
    const float lse = m == -INFINITY ? -INFINITY : m + logf(sum);
    for (int i = tid; i < V; i += T) s[i] = l[i] - lse;  // each thread rewrites only what it read: safe in place
  } else if (s != l) {
    for (int i = tid; i < V; i += T) s[i] = l[i];
  }
  if (!q[R_PROCESS]) return;
  const int len = lengths[row];
  const int L = max(0, min(len, max_seq));  // history rows hold max_seq tokens
  const int prompt = max(0, min(q[R_PROMPT_LEN], L));
  const int* h = history + (size_t)slot * max_seq;
  const float rep = req_f(q, R_REPETITION), freq = req_f(q, R_FREQUENCY), presence = req_f(q, R_PRESENCE);
  const bool do_rep = rep != 1.f, do_freq = freq != 0.f || presence != 0.f;
  __syncthreads();  // the copy is complete: a token is penalised by another thread than the one that copied it
  if (do_rep || do_freq) {
    for (int base = 0; base < V; base += PENALTY_CHUNK) {
      const int width = min(PENALTY_CHUNK, V - base);
      for (int j = tid; j < width; j += T) counts[j] = 0;
      __syncthreads();
      for (int i = (do_rep ? 0 : prompt) + tid; i < L; i += T) {
        const int t = h[i] - base;
        if ((unsigned)t < (unsigned)width) {
          if (i >= prompt) atomicAdd(&counts[t], 1);
          else atomicOr(&counts[t], SEEN);
        }
      }
      __syncthreads();
      for (int j = tid; j < width; j += T) {
        const int e = counts[j];
        if (e == 0) continue;
        float v = s[base + j];
        // float32 step by step, as the reference rounds: no contraction into fused multiply-adds
        if (do_rep) v = v < 0.f ? __fmul_rn(v, rep) : __fdiv_rn(v, rep);
        const int c = e & (SEEN - 1);
        if (do_freq && c > 0) v = __fsub_rn(__fsub_rn(v, __fmul_rn(freq, (float)c)), presence);
        s[base + j] = v;
      }
      __syncthreads();  // counts are cleared for the next chunk
    }
  }
  // bans come after every penalty, on the final values. No repeated n-grams (Hugging Face's
  // NoRepeatNGramLogitsProcessor): the token after each earlier occurrence of the history's last ngram - 1 tokens
  const int ngram = q[R_NO_REPEAT_NGRAM];
  if (ngram > 0 && L + 1 >= ngram) {
    for (int i = tid; i + ngram <= L; i += T) {
      bool same = true;
      for (int j = 0; same && j < ngram - 1; j++) same = h[i + j] == h[L - ngram + 1 + j];
      const int t = h[i + ngram - 1];
      if (same && (unsigned)t < (unsigned)V) s[t] = -INFINITY;
    }
  }
  const int* list = q + R_LIST;
  const int eos = max(0, min(q[R_EOS_COUNT], LIST_CAPACITY));
  const int from = min(eos + max(0, q[R_RESET_COUNT]), LIST_CAPACITY);
  const int nbad = max(0, min(q[R_BAD_INTS], LIST_CAPACITY - from));
  if (nbad > 0) {
    for (int j = tid; j < nbad; j += T) bad[j] = list[from + j];
    __syncthreads();
    if (tid == 0) {
      // the runs are (length, ids...): only a walk finds where each word starts
      int n = 0;
      for (int i = 0; i < nbad;) {
        const int m = bad[i];
        if (m < 0 || i + m >= nbad) break;
        words[n++] = i;
        i += 1 + m;
      }
      word_count = n;
    }
    __syncthreads();
    for (int w = tid; w < word_count; w += T) {
      const int i = words[w], m = bad[i];
      const int before = m - 1;  // the tokens that must end the history
      bool match = before <= L;
      for (int j = 0; match && j < before; j++) match = h[L - before + j] == bad[i + 1 + j];
      const int t = bad[i + m];
      if (match && (unsigned)t < (unsigned)V) s[t] = -INFINITY;
    }
  }
  if (len - min(q[R_PROMPT_LEN], len) < q[R_MIN_NEW]) {
    for (int j = tid; j < eos; j += T) {
      const int t = list[j];
      if ((unsigned)t < (unsigned)V) s[t] = -INFINITY;
    }
  }
  // forced tokens last (every score -Infinity but the token's, 0): the first generated token, or the last one
  // the request allows; the conditions are the same for the whole block
  const int bos = q[R_FORCED_BOS], feos = q[R_FORCED_EOS], generated = len - min(q[R_PROMPT_LEN], len);
  const int forced = bos >= 0 && generated == 0 ? bos : feos >= 0 && generated == q[R_MAX_NEW] - 1 ? feos : -1;
  if (forced >= 0) {
    __syncthreads();  // every ban is written before the row is overwritten
    for (int i = tid; i < V; i += T) s[i] = i == forced ? 0.f : -INFINITY;
  }
}

// ---- sample ----
constexpr int SAMPLE_THREADS = 1024;

struct MassPick {
  int digit;
  float above;
};

struct SampleShared {
  int hist[256];
  float fhist[SAMPLE_THREADS / 32][256];  // one mass histogram per warp
  float red[5][32];
  float wsum[32];
  CountPick cpick;
  MassPick mpick;
  int chosen, last;
  double p[MAX_CANDIDATES];
  int id[MAX_CANDIDATES];
  double sorted_p[MAX_CANDIDATES];
  int sorted_id[MAX_CANDIDATES];
};

// The largest probability t whose kept mass (the weights of keys >= t) reaches `target`, by radix selection
// over the float bits of the weights (p >= 0 sorts like its bits). weight(i, log_cut) is the weight of
// element i, or 0 when its log-weight is below log_cut: the selection only needs elements at least floor_p
// (known to hold the target mass) and, after a pass, those in the chosen bucket, so most elements skip
// the exp. The cut sits 0.01 below log(lo): exp is within 1e-5 of exact, so nothing at least lo is cut.
// Mass is added to the histogram in runs (a thread's consecutive weights of one bin, summed first) into its
// warp's own histogram: in a flat distribution most weights share a bin, and float atomics from every
// element of the row on one address would serialise the block.
template <int T, typename W>
__device__ float radix_select_mass(int N, float target, float floor_p, W weight, float (*whist)[256], MassPick* pick) {
  uint32_t prefix = 0, mask = 0;
  float above = 0.f;
  const int lane = threadIdx.x & 31;
  float* own = whist[threadIdx.x >> 5];
  float* fhist = whist[0];
  for (int shift = 24; shift >= 0; shift -= 8) {
    const float lo = fmaxf(floor_p, __uint_as_float(prefix));
    const float log_cut = lo > 0.f ? logf(lo) - 0.01f : -INFINITY;
    for (int b = threadIdx.x; b < (T / 32) * 256; b += T) whist[b >> 8][b & 255] = 0.f;
    __syncthreads();
    int run_bin = -1;
    float run = 0.f;
    for (int i = threadIdx.x; i < N; i += T) {
      const float p = weight(i, log_cut);
      if (p > 0.f) {
        const uint32_t u = __float_as_uint(p);
        if ((u & mask) == prefix) {
          const int bin = (u >> shift) & 255u;
          if (bin != run_bin) {
            if (run_bin >= 0) atomicAdd(&own[run_bin], run);
            run_bin = bin;
            run = 0.f;
          }
          run += p;
        }
      }
    }
    if (run_bin >= 0) atomicAdd(&own[run_bin], run);
    __syncthreads();
    // the warps' histograms summed into the first (each thread owns whole bins)
    for (int b = threadIdx.x; b < 256; b += T) {
      float s = 0.f;
      for (int w = 0; w < T / 32; w++) s += whist[w][b];
      fhist[b] = s;
    }
    __syncthreads();
    if (threadIdx.x < 32) {
      float c[8], s;
      const float incl = warp_digit_scan(fhist, lane, c, s);
      float excl = __shfl_up_sync(0xffffffffu, incl, 1);
      if (lane == 0) excl = 0.f;
      // lane l's range [above + excl, above + incl) meets the next lane's exactly, so one lane owns the target
      const float a = above + excl, b = above + incl;
      unsigned owner = __ballot_sync(0xffffffffu, a < target && target <= b);
      bool fallback = false;
      if (owner == 0) {
        // rounding left the target past the bucket's mass: keep all of it (its lowest nonempty digit)
        owner = __ballot_sync(0xffffffffu, s > 0.f);
        fallback = true;
      }
      const int who = owner == 0 ? 31 : (fallback ? 31 - __clz(owner) : __ffs(owner) - 1);
      if (lane == who) {
        float acc = a, at = a, last_at = a;
        int found = -1, last = 7;
#pragma unroll
        for (int j = 0; j < 8; j++) {
          if (c[j] > 0.f) {
            if (found < 0 && !fallback && acc + c[j] >= target) {
              found = j;
              at = acc;
            }
            last = j;
            last_at = acc;
          }
          acc += c[j];
        }
        if (found < 0) {
          found = last;
          at = last_at;
        }
        pick->digit = 255 - 8 * lane - found;
        pick->above = at;
      }
    }
    __syncthreads();
    prefix |= (uint32_t)pick->digit << shift;
    mask |= 255u << shift;
    above = pick->above;
    __syncthreads();
  }
  return __uint_as_float(prefix);
}

// The draw of a top-k row (1 <= k <= MAX_CANDIDATES, k < V) from its candidates, by warp 0, in double as
// the reference computes: the candidates are few, and the closer sums keep draws at a boundary agreeing.
__device__ int draw_candidates(const float* cv, const int* ci, int k, float T, float top_p, float min_p, double u, SampleShared& sh) {
  const int lane = threadIdx.x;
  const unsigned all = 0xffffffffu;
  const double mx = cv[0], t = T;
  // candidate order (value descending, so p descending): lane holds positions 2 lane and 2 lane + 1
  const int a = 2 * lane, b = a + 1;
  const double pa = a < k ? exp(((double)cv[a] - mx) / t) : 0.0;
  const double pb = b < k ? exp(((double)cv[b] - mx) / t) : 0.0;
  double incl = pa + pb;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const double y = __shfl_up_sync(all, incl, o);
    if (lane >= o) incl += y;
  }
  const double total = __shfl_sync(all, incl, 31);
  double threshold = 0.0;
  if (top_p < 1.f) {
    // runtime top-p: the first p, walking down, at which the mass reaches top-p of the total
    const double target = (double)top_p * total;
    double excl = __shfl_up_sync(all, incl, 1);
    if (lane == 0) excl = 0.0;
    const bool hit_a = a < k && excl + pa >= target, hit_b = b < k && excl + pa + pb >= target;
    const unsigned hit = __ballot_sync(all, hit_a || hit_b);
    if (hit) threshold = __shfl_sync(all, hit_a ? pa : pb, __ffs(hit) - 1);
  }
  const auto kept = [&](double p) { return p > 0.0 && p >= threshold && (min_p <= 0.f || p >= (double)min_p); };
  if (a < k) {
    sh.p[a] = kept(pa) ? pa : 0.0;
    sh.id[a] = ci[a];
  }
  if (b < k) {
    sh.p[b] = kept(pb) ? pb : 0.0;
    sh.id[b] = ci[b];
  }
  __syncwarp();
  // the walk goes in id order: place each candidate by its id's rank
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const int i = h ? b : a;
    if (i < k) {
      const int id = sh.id[i];
      int rank = 0;
      for (int j = 0; j < k; j++) rank += sh.id[j] < id;
      sh.sorted_id[rank] = id;
      sh.sorted_p[rank] = sh.p[i];
    }
  }
  __syncwarp();
  const double qa = a < k ? sh.sorted_p[a] : 0.0, qb = b < k ? sh.sorted_p[b] : 0.0;
  double run = qa + qb;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const double y = __shfl_up_sync(all, run, o);
    if (lane >= o) run += y;
  }
  const double kept_total = __shfl_sync(all, run, 31);
  double before = __shfl_up_sync(all, run, 1);
  if (lane == 0) before = 0.0;
  const double r = u * kept_total;
  const bool at_a = qa > 0.0 && r < before + qa, at_b = qb > 0.0 && r < before + qa + qb;
  const unsigned at = __ballot_sync(all, at_a || at_b);
  int pick;
  if (at) {
    const int src = __ffs(at) - 1;
    pick = __shfl_sync(all, at_a ? a : b, src);
  } else {
    // rounding put r at or past the end: the last kept token, as the reference's walk ends
    const unsigned any = __ballot_sync(all, qa > 0.0 || qb > 0.0);
    if (any == 0) return 0;
    const int src = 31 - __clz(any);
    pick = __shfl_sync(all, qb > 0.0 ? b : a, src);
  }
  return sh.sorted_id[pick];
}

// Top-p bounds tried before the radix selection of the top-p threshold: the largest whose mass reaches the
// target limits the selection to the tokens at least that likely.
__device__ __constant__ float MASS_BOUNDS[4] = {0.5f, 0.125f, 0.0078125f, 0.0001220703125f};

// The draw of a row over the whole vocabulary (top-k off, k >= V, or k > MAX_CANDIDATES), by the block, in
// float32. For k > MAX_CANDIDATES the kept tokens are exactly the k best (ties: lowest ids), found by radix
// selection over the packed keys.
__device__ int draw_full(const float* x, int V, int k, float T, float top_p, float min_p, float u, SampleShared& sh) {
  constexpr int NT = SAMPLE_THREADS;
  const int tid = threadIdx.x;
  float mx = -INFINITY;
  for (int i = tid; i < V; i += NT) mx = fmaxf(mx, x[i]);
  mx = block_max(mx, sh.red[0]);
  const bool topk = k >= 1 && k < V;
  uint64_t kprefix = 0, kmask = 0;
  if (topk) radix_select_count<NT>(V, k, [&](int i) { return pack(x[i], i); }, sh.hist, &sh.cpick, kprefix, kmask);
  const float inv_t = 1.f / T;
  // log p: the same expression everywhere, so a cut in log space agrees with the p computed from it
  const auto logp = [&](float v) { return (v - mx) * inv_t; };
  const auto in_topk = [&](int i, float v) { return !topk || (pack(v, i) & kmask) >= kprefix; };

  float acc[5] = {0.f, 0.f, 0.f, 0.f, 0.f};  // total, then the mass at least each bound
  const bool nucleus = top_p < 1.f;
  for (int i = tid; i < V; i += NT) {
    const float v = x[i];
    const float p = in_topk(i, v) ? __expf(logp(v)) : 0.f;
    acc[0] += p;
    if (nucleus) {
#pragma unroll
      for (int j = 0; j < 4; j++) acc[j + 1] += p >= MASS_BOUNDS[j] ? p : 0.f;
    }
  }
  block_sums<5>(acc, sh.red);
  float threshold = 0.f;
  if (nucleus) {
    const float target = top_p * acc[0];
    float floor_p = 0.f;
    for (int j = 0; j < 4; j++) {
      if (acc[j + 1] >= target) {
        floor_p = MASS_BOUNDS[j];
        break;
      }
    }
    threshold = radix_select_mass<NT>(V, target, floor_p, [&](int i, float log_cut) {
      const float v = x[i];
      const float z = logp(v);
      return z < log_cut || !in_topk(i, v) ? 0.f : __expf(z);
    }, sh.fhist, &sh.mpick);
  }
  const float cut = fmaxf(threshold, min_p > 0.f ? min_p : 0.f);
  const float log_cut = cut > 0.f ? logf(cut) - 0.01f : -INFINITY;
  const auto kept = [&](int i, float& p) {
    const float v = x[i];
    const float z = logp(v);
    if (z < log_cut || !in_topk(i, v)) return false;
    p = __expf(z);
    return p > 0.f && p >= threshold && (min_p <= 0.f || p >= min_p);
  };

  // the walk in id order: each thread owns a contiguous run of ids, placed by a prefix sum over the block
  const int run = (V + NT - 1) / NT;
  const int lo = min(V, tid * run), hi = min(V, lo + run);
  float mine = 0.f;
  int last = -1;
  for (int i = lo; i < hi; i++) {
    float p;
    if (kept(i, p)) {
      mine += p;
      last = i;
    }
  }
  const int lane = tid & 31, warp = tid >> 5;
  float incl = mine;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const float y = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += y;
  }
  float excl = __shfl_up_sync(0xffffffffu, incl, 1);
  if (lane == 0) excl = 0.f;
  __syncthreads();
  if (lane == 31) sh.wsum[warp] = incl;
  if (tid == 0) {
    sh.chosen = -1;
    sh.last = -1;
  }
  __syncthreads();
  // the same sums in the same order for every thread, so neighbouring ranges meet exactly
  float offset = 0.f, total = 0.f;
  for (int w = 0; w < NT / 32; w++) {
    if (w == warp) offset = total;
    total += sh.wsum[w];
  }
  const float before = offset + excl, after = offset + incl;
  const float r = u * total;
  if (mine > 0.f && before <= r && r < after) {
    // what is left of r, as the reference walks: small numbers, so adding p rounds far less than r + p would
    float rest = r - before;
    int pick = last;
    for (int i = lo; i < hi; i++) {
      float p;
      if (kept(i, p)) {
        rest -= p;
        if (rest < 0.f) {
          pick = i;
          break;
        }
      }
    }
    sh.chosen = pick;
  }
  if (last >= 0) atomicMax(&sh.last, last);
  __syncthreads();
  if (sh.chosen >= 0) return sh.chosen;
  return max(sh.last, 0);  // r at or past the end by rounding: the last kept token
}

// sample in src/backends/cpu/sampling.ts (CpuSampler): one block per row; only SAMPLE rows draw. Rows
// must belong to distinct sequences (each updates its sequence's history and runtime top-p).
extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS)
    sample_rows(int* ids, const float* scores, int V, const float* cand_values, const int* cand_ids, const int* slots,
                const int* lengths, const int* requests, int* history, int max_seq, float* top_p) {
                  pdl_begin();
  __shared__ SampleShared sh;
  const int row = blockIdx.x, slot = slots[row], tid = threadIdx.x;
  const int* q = request_of(requests, slot);
  if (q[R_MODE] != MODE_SAMPLE) return;
  const int L = lengths[row];
  const float T = req_f(q, R_TEMPERATURE);
  int id;
  if (T == 0.f) {
    if (tid != 0) return;
    id = cand_ids[(size_t)row * MAX_CANDIDATES];
  } else {
    const uint32_t bits = uniform_bits((uint32_t)q[R_SEED], (uint32_t)q[R_STREAM], (uint32_t)L);
    const int k = q[R_TOP_K];
    const float tp = top_p[slot], min_p = req_f(q, R_MIN_P);
    if (k >= 1 && k < V && k <= MAX_CANDIDATES) {
      if (tid >= 32) return;
      id = draw_candidates(cand_values + (size_t)row * MAX_CANDIDATES, cand_ids + (size_t)row * MAX_CANDIDATES, k, T, tp, min_p,
                           (double)bits / 16777216.0, sh);
    } else {
      id = draw_full(scores + (size_t)row * V, V, k, T, tp, min_p, (float)bits / 16777216.f, sh);
    }
    if (tid != 0) return;
  }
  ids[row] = id;
  if (L >= 0 && L < max_seq) history[(size_t)slot * max_seq + L] = id;
  const int* list = q + R_LIST;
  const int eos = max(0, min(q[R_EOS_COUNT], LIST_CAPACITY));
  const int resets = max(0, min(q[R_RESET_COUNT], LIST_CAPACITY - eos));
  bool reset = false;
  for (int i = 0; i < resets; i++) reset |= list[eos + i] == id;
  top_p[slot] = reset ? req_f(q, R_TOP_P) : fmaxf(__fmul_rn(top_p[slot], req_f(q, R_TOP_P_DECAY)), req_f(q, R_TOP_P_MIN));
}

// advance in src/backends/cpu/sampling.ts: rows whose sequence draws on the device move on one token.
extern "C" __global__ void advance(int* positions, int* key_lens, const int* slots, const int* requests, int n) {
  pdl_begin();
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n || request_of(requests, slots[i])[R_MODE] != MODE_SAMPLE) return;
  positions[i] += 1;
  key_lens[i] += 1;
}
