// Prompt attention on tensor cores (flash attention, with FlashAttention-2's split of the work: a block owns a tile of
// query rows of one head and streams the keys past it; no [seq x seq] score matrix is ever written). Reference: the
// CPU backend's attend (src/backends/cpu/attention.ts); the CUDA-core kernel attend_prefill of kernels/attention.cu
// keeps f32, head sizes this file does not build, T5's position bias and unaligned tensors.
// Rows, caches and segments as in kernels/attention.cu: packed qkv rows [n, (heads + 2 kv_heads) D] = q | k | v, keys
// and values read from the paged caches [blocks, block_size, kv_heads * D] through the sequence's block table (the
// prompt's own k and v were written there first), a segment = consecutive packed rows (positions) of one sequence,
// a row sees keys key_lens[row] - window .. key_lens[row] - 1 (all below key_lens[row] without a window). An encoder's
// segments (whole sequences, nothing cached) may instead take keys and values from their own rows of qkv.
// Grid (query tiles, segments, heads), 128 threads (4 warps). Warp w takes query rows 16 MT w .. 16 MT (w + 1) - 1 of
// the block's 64 MT, MT m16 tiles of them: each fragment of K or V read from shared memory feeds MT MMAs. Per key
// tile of BN keys: S = Q K^T by m16n8k16 MMAs (f32 accumulators), masked, scaled by scale * log2(e), online softmax
// in registers (a row's max and sum over the four lanes that hold it), then P, rounded to T in the registers that
// held S (an MMA's C layout is the next one's A layout), times V (ldmatrix.trans). K and V tiles come in by cp.async
// into two buffers, the next tile loading while this one is used; keys past the tile's last needed key are zeros.
// Shared rows are padded by 16 bytes so that ldmatrix's eight rows fall on distinct banks. A warp skips a key tile
// none of its rows sees (causal prompts, windows); the block skips tiles before its first row's window. Every row's
// result depends on its own keys only: key tiles start at multiples of BN from a multiple of BN, whichever rows share
// the block.
#include "mma.cuh"
#include "paged.cuh"

constexpr int FA_THREADS = 128, FA_WARPS = FA_THREADS / 32;

// 2^x by the special-function unit, subnormal results flushed to zero (probabilities that small add nothing)
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

template <typename T, int D, int MT, int BN, bool QREG>
__device__ void flash_prefill(T* out, const T* qkv, const T* kc, const T* vc, const int* tables, const int* slots,
                              const int* key_lens, const int* segments, int heads, int kv_heads, float scale_log2,
                              int window, int block_size, int max_blocks) {
  constexpr int BM = 16 * MT * FA_WARPS, LD = D + 8, CH = D / 8, KD = D / 16, NT = BN / 8;
  static_assert(D % 16 == 0 && BN % 16 == 0, "head size and key tile in steps of 16");
  extern __shared__ __align__(16) unsigned char flash_smem[];
  T* qs = reinterpret_cast<T*>(flash_smem);  // [BM][LD]
  T* ks = qs + BM * LD;                      // [2][BN][LD]
  T* vs = ks + 2 * BN * LD;                  // [2][BN][LD]
  const int seg = blockIdx.y, h = blockIdx.z;
  const int first = segments[seg * 3], count = segments[seg * 3 + 1];
  const int r0 = blockIdx.x * BM;
  if (r0 >= count) return;
  const int rows = min(BM, count - r0), base = first + r0;
  const int H = heads * D, W = kv_heads * D, row_width = H + 2 * W, kvh = h / (heads / kv_heads);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t4 = lane & 3;
  // without block tables (an encoder: Backend.attendEncoder) key j of the segment is its row j of qkv, kc and vc
  // pointing at the row's k and v
  const int* table = tables ? tables + (size_t)slots[first] * max_blocks : nullptr;
  // keys grow with position: the block's last row sees the most, its first row's window starts first
  const int Lmax = key_lens[base + rows - 1];
  const int start = window > 0 ? max(0, key_lens[base] - window) / BN * BN : 0;
  const int tiles = (Lmax - start + BN - 1) / BN;

  for (int c = tid; c < BM * CH; c += FA_THREADS) {
    const int r = c / CH, part = c % CH;
    cp_async16_or_zero(qs + r * LD + part * 8, qkv + (size_t)(base + min(r, rows - 1)) * row_width + h * D + part * 8, r < rows);
  }
  auto load_kv = [&](int tile, int buf) {
    const int j0 = start + tile * BN;
    T* kd = ks + buf * BN * LD;
    T* vd = vs + buf * BN * LD;
    for (int c = tid; c < BN * CH; c += FA_THREADS) {
      const int j = c / CH, part = c % CH;
      const bool live = j0 + j < Lmax;
      const size_t key_row = table ? (size_t)cache_row(table, j0 + j, block_size) * W : (size_t)(first + j0 + j) * row_width;
      const size_t src = live ? key_row + kvh * D + part * 8 : 0;
      cp_async16_or_zero(kd + j * LD + part * 8, kc + src, live);
      cp_async16_or_zero(vd + j * LD + part * 8, vc + src, live);
    }
  };
  load_kv(0, 0);
  cp_async_commit();

  // the warp's rows wr0 .. wr0 + 16 MT - 1: keys grow with position, so its first row sees the fewest keys and its last
  // the most; a tile inside every row's range needs no mask
  const int wr0 = warp * 16 * MT;
  const bool warp_live = wr0 < rows;
  const int w_first = key_lens[base + min(wr0, rows - 1)], w_last = key_lens[base + min(rows, wr0 + 16 * MT) - 1];
  const int warp_hi = warp_live ? w_last : 0, warp_lo = warp_live && window > 0 ? w_first - window : 0;
  const int whole_lo = window > 0 ? w_last - window : 0, whole_hi = w_first;

  float o[MT][D / 8][4], m[MT][2], l[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
#pragma unroll
    for (int d = 0; d < D / 8; d++) o[mt][d][0] = o[mt][d][1] = o[mt][d][2] = o[mt][d][3] = 0.f;
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.f;
  }
  uint32_t qf[QREG ? MT : 1][QREG ? KD : 1][4];
  auto q_frag = [&](uint32_t(&a)[4], int mt, int kd) {
    ldmatrix_x4(a, qs + (wr0 + mt * 16 + (lane & 15)) * LD + kd * 16 + (lane >> 4) * 8);
  };

  for (int it = 0; it < tiles; it++) {
    if (it + 1 < tiles) {
      load_kv(it + 1, (it + 1) & 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const int j0 = start + it * BN;
    if constexpr (QREG) {
      if (it == 0) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
          for (int kd = 0; kd < KD; kd++) q_frag(qf[mt][kd], mt, kd);
      }
    }
    if (warp_live && j0 < warp_hi && j0 + BN > warp_lo) {
      const T* kt = ks + (it & 1) * BN * LD;
      const T* vt = vs + (it & 1) * BN * LD;
      float s[MT][NT][4];
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int t = 0; t < NT; t++) s[mt][t][0] = s[mt][t][1] = s[mt][t][2] = s[mt][t][3] = 0.f;
#pragma unroll
      for (int kd = 0; kd < KD; kd++) {
        uint32_t qa[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          if constexpr (QREG) {
#pragma unroll
            for (int e = 0; e < 4; e++) qa[mt][e] = qf[mt][kd][e];
          } else {
            q_frag(qa[mt], mt, kd);
          }
        }
#pragma unroll
        for (int nj = 0; nj < BN / 16; nj++) {
          uint32_t b[4];
          ldmatrix_x4(b, kt + (nj * 16 + (lane & 7) + 8 * (lane >> 4)) * LD + kd * 16 + 8 * ((lane >> 3) & 1));
#pragma unroll
          for (int mt = 0; mt < MT; mt++) {
            mma16816<T>(s[mt][2 * nj], qa[mt], b[0], b[1]);
            mma16816<T>(s[mt][2 * nj + 1], qa[mt], b[2], b[3]);
          }
        }
      }
      // online softmax over this tile, in base 2; the warp's 2 MT rows a lane holds go through each phase together
      // (independent chains the scheduler can interleave), with one vote on the rescale for all of them
      float mx[MT][2];
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < 2; i++) {
          mx[mt][i] = -INFINITY;
          if (j0 >= whole_lo && j0 + BN <= whole_hi) {
#pragma unroll
            for (int t = 0; t < NT; t++)
#pragma unroll
              for (int e = 0; e < 2; e++) mx[mt][i] = fmaxf(mx[mt][i], s[mt][t][2 * i + e] *= scale_log2);
          } else {  // a tile at the edge of some row's keys: the row's range, read again here
            const int r = wr0 + mt * 16 + g + 8 * i;
            const int L = r < rows ? key_lens[base + r] : 0, lo = window > 0 ? L - window : 0;
#pragma unroll
            for (int t = 0; t < NT; t++)
#pragma unroll
              for (int e = 0; e < 2; e++) {
                const int key = j0 + t * 8 + 2 * t4 + e;
                float v = s[mt][t][2 * i + e] * scale_log2;
                if (key >= L || key < lo) v = -INFINITY;
                s[mt][t][2 * i + e] = v;
                mx[mt][i] = fmaxf(mx[mt][i], v);
              }
          }
        }
      float corr[MT][2];
      bool moved = false;
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < 2; i++) {
          float x = fmaxf(mx[mt][i], __shfl_xor_sync(0xffffffffu, mx[mt][i], 1));
          x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
          const float mn = fmaxf(m[mt][i], x);
          mx[mt][i] = mn == -INFINITY ? 0.f : mn;  // the reference; a row that has seen no key yet keeps zeros
          corr[mt][i] = fast_exp2(m[mt][i] - mx[mt][i]);
          m[mt][i] = mn;
          moved |= corr[mt][i] != 1.f;
        }
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < 2; i++) {
          float sum = 0.f;
#pragma unroll
          for (int t = 0; t < NT; t++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
              const float p = fast_exp2(s[mt][t][2 * i + e] - mx[mt][i]);
              s[mt][t][2 * i + e] = p;
              sum += p;
            }
          l[mt][i] = l[mt][i] * corr[mt][i] + sum;
        }
      // once the rows' maxima settle the output needs no rescaling: skipped unless some lane's row moved (a row whose
      // maximum stayed has corr = 1, which leaves its output exactly as it was)
      if (__any_sync(0xffffffffu, moved)) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
          for (int d = 0; d < D / 8; d++) {
            o[mt][d][0] *= corr[mt][0];
            o[mt][d][1] *= corr[mt][0];
            o[mt][d][2] *= corr[mt][1];
            o[mt][d][3] *= corr[mt][1];
          }
      }
      // O += P V, 16 keys a step
#pragma unroll
      for (int kk = 0; kk < BN / 16; kk++) {
        uint32_t pa[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          pa[mt][0] = pack2(s[mt][2 * kk][0], s[mt][2 * kk][1], T());
          pa[mt][1] = pack2(s[mt][2 * kk][2], s[mt][2 * kk][3], T());
          pa[mt][2] = pack2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1], T());
          pa[mt][3] = pack2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3], T());
        }
#pragma unroll
        for (int dn = 0; dn < KD; dn++) {
          uint32_t b[4];
          ldmatrix_x4_trans(b, vt + (kk * 16 + (lane & 7) + 8 * ((lane >> 3) & 1)) * LD + dn * 16 + 8 * (lane >> 4));
#pragma unroll
          for (int mt = 0; mt < MT; mt++) {
            mma16816<T>(o[mt][2 * dn], pa[mt], b[0], b[1]);
            mma16816<T>(o[mt][2 * dn + 1], pa[mt], b[2], b[3]);
          }
        }
      }
    }
    __syncthreads();  // the next iteration loads into the buffer this one read
  }

#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int i = 0; i < 2; i++) {
      float sum = l[mt][i];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const int r = wr0 + mt * 16 + g + 8 * i;
      if (r >= rows) continue;
      const float inv = sum > 0.f ? 1.f / sum : 0.f;  // a row without keys: zeros, as the reference's empty sum
      T* dst = out + (size_t)(base + r) * H + h * D + 2 * t4;
#pragma unroll
      for (int d = 0; d < D / 8; d++)
        *reinterpret_cast<uint32_t*>(dst + d * 8) = pack2(o[mt][d][2 * i] * inv, o[mt][d][2 * i + 1] * inv, T());
    }
}

// Per head size: MT m16 tiles a warp and BN keys a tile, Q kept in registers or read again from shared memory per
// tile, so that scores, output and Q fit the registers of two or more blocks an SM (ptxas -v reports no spills).
#define FLASH_KERNEL(T, NAME, D, MT, BN, QREG)                                                               \
  extern "C" __global__ void __launch_bounds__(FA_THREADS) NAME(                                              \
      T* out, const T* qkv, const T* kc, const T* vc, const int* tables, const int* slots, const int* key_lens, \
      const int* segments, int heads, int kv_heads, float scale_log2, int window, int block_size, int max_blocks) { \
    pdl_begin();                                                                                                 \
    flash_prefill<T, D, MT, BN, QREG>(out, qkv, kc, vc, tables, slots, key_lens, segments, heads, kv_heads,      \
                                     scale_log2, window, block_size, max_blocks);                              \
  }
#define FLASH(T, S, D, MT, BN, QREG) FLASH_KERNEL(T, flash_prefill##D##_##S, D, MT, BN, QREG)
#define FLASH_ALL(T, S)                                                                                       \
  FLASH(T, S, 32, 2, 64, true) FLASH(T, S, 64, 2, 64, true) FLASH(T, S, 80, 2, 32, false)                    \
  FLASH(T, S, 96, 2, 32, false) FLASH(T, S, 128, 2, 32, false) FLASH(T, S, 256, 1, 32, false)
FLASH_ALL(__half, f16)
FLASH_ALL(__nv_bfloat16, bf16)

#ifdef FLASH_TUNING
// Other tilings for bench/attention.ts --variants (flash_prefill<D>_m<MT>n<BN><q|s>_f16), built only by hand:
// nvcc ... -DFLASH_TUNING kernels/flash.cu
#define FLASH_V(D, MT, BN, QREG, Q) FLASH_KERNEL(__half, flash_prefill##D##_m##MT##n##BN##Q##_f16, D, MT, BN, QREG)
FLASH_V(64, 2, 64, false, s) FLASH_V(64, 2, 32, true, q) FLASH_V(64, 1, 32, true, q) FLASH_V(64, 1, 64, true, q)
FLASH_V(128, 2, 16, false, s) FLASH_V(128, 1, 64, false, s) FLASH_V(128, 1, 32, true, q) FLASH_V(128, 1, 64, true, q)
FLASH_V(128, 2, 64, false, s)
#endif
