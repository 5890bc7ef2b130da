// A quantized linear layer for 9 to 64 rows (decode at batch 16 to 64) on tensor cores: out = act(x w^T + bias)
// (+ out), x [M, K] in f16/bf16, w [N, K] in any ggml or grouped-int4 layout of kernels/quant-blocks.cuh. The weight
// is read once, as it is stored (1 or 0.5 bytes a weight, not a dequantized copy's 2 written then read again), and
// dequantized in registers into shared memory for mma.sync (llama.cpp's MMQ does the same with int8 MMA on x rounded
// to int8; this keeps x as it is, so the result is the float GEMM's over the dequantized weight).
// Tiles: a block of 256 threads takes 64 rows of x by 128 weight rows, 128 inputs per step, in two shared buffers:
// the quantized units of the next two steps (global loads into registers) and the next step's x (cp.async) are in
// flight while the tensor cores work on this one. Thread t dequantizes unit t % 4 of weight rows t / 4 and t / 4 + 64
// in each step, so a row's four lanes load side by side; shared rows are padded by 16 bytes so that ldmatrix's eight
// rows fall on distinct banks. Bytes are turned into floats by bit tricks, not conversion instructions (byte_float).
// Eight warps in 2 x 4, each 32 x 32 of the output: 2 x 4 m16n8k16 MMAs per 16 inputs.
// Split-K: a layer with too few column tiles to fill the GPU gives each of gridDim.z blocks a range of steps; they
// add their sums into acc (f32 [M, N], zero between uses) and qmma_finish applies bias, activation and residual,
// zeroing acc again. With one split the block writes out itself.
// Reference: the CPU backend's linear over the dequantized weight (src/loaders/quant.ts dequantizeRow,
// src/loaders/int4.ts); test/gpu/quant.test.ts.
#include "mma.cuh"
#include "quant-blocks.cuh"

constexpr int QM_BM = 64, QM_BN = 128, QM_BK = 128, QM_LD = QM_BK + 8, QM_THREADS = 256;
constexpr int QM_UNITS = QM_BK / 32;  // units of 32 inputs per row per step

// The epilogue of one value: act(v + bias[j]) (+ the old out[m, j] with res).
template <typename T, typename O>
__device__ __forceinline__ void qmma_store(O* out, const T* bias, int act, int N, int m, int j, float v, int res) {
  v = activate(v + (bias ? to_f(bias[j]) : 0.f), act);
  O* o = out + (size_t)m * N + j;
  if (res) v += to_f(*o);
  *o = from_f<O>(v);
}

// Byte e of a 32-bit word as an exact float without a conversion instruction (I2F and F2F issue at a fraction of the
// FMA rate and held this kernel to a sixth of the copy bandwidth): 2^23 + byte as float bits, less 2^23 (2^23 + 128
// for bytes that are signed, stored biased by 128).
__device__ __forceinline__ float byte_float(uint32_t word, int e, float offset) {
  return __uint_as_float(__byte_perm(word, 0x4B000000u, 0x7440 | e)) - offset;
}
// A unit's 32 weights dequantized into d (four 16-byte chunks of eight T): weight e = scale(e / 16) * byte e of
// word(e / 4) - word_min(), the bytes signed where the unit says so (kernels/quant-blocks.cuh). With ROTATE, `late`
// stores the chunks in the order 2, 3, 0, 1: the four lanes of a row write units 0-3 at 64-byte steps, so in each
// store the lanes of units 2 and 3 would otherwise hit the banks of units 0 and 1 (without it each chunk is stored
// as it is made, which spares registers).
template <typename T, bool ROTATE, typename U>
__device__ __forceinline__ void store_unit(uint32_t* d, const U& un, bool late) {
  constexpr bool SIGNED = U::SIGNED_WORDS;
  const float offset = SIGNED ? 8388736.f : 8388608.f, mn = un.word_min();
  uint4 chunk[4];
#pragma unroll
  for (int c = 0; c < 4; c++) {
    uint32_t v[4];
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int wi = 2 * c + h;
      const uint32_t word = (uint32_t)un.word(wi) ^ (SIGNED ? 0x80808080u : 0u);
      const float sc = un.scale(wi >> 2);
      v[2 * h] = pack2(fmaf(sc, byte_float(word, 0, offset), -mn), fmaf(sc, byte_float(word, 1, offset), -mn), T());
      v[2 * h + 1] = pack2(fmaf(sc, byte_float(word, 2, offset), -mn), fmaf(sc, byte_float(word, 3, offset), -mn), T());
    }
    chunk[c] = make_uint4(v[0], v[1], v[2], v[3]);
    if (!ROTATE) reinterpret_cast<uint4*>(d)[c] = chunk[c];
  }
  if (!ROTATE) return;
  uint4* out = reinterpret_cast<uint4*>(d);
#pragma unroll
  for (int c = 0; c < 4; c++) {
    const int k = late ? (c + 2) & 3 : c;
    out[k] = late ? chunk[(c + 2) & 3] : chunk[c];
  }
}

template <int Q, typename T, typename O>
__device__ void qmma(O* out, float* acc, const T* x, const uint8_t* w, const T* bias, int act, int N, int K, int M, int steps_per_split,
                     int res) {
  extern __shared__ uint4 qmma_smem[];
  T* xs = reinterpret_cast<T*>(qmma_smem);  // [2][BM][LD]
  T* ws = xs + 2 * QM_BM * QM_LD;           // [2][BN][LD]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  // two steps of units in registers, and chunks stored in rotated order, except for Q5_K's and Q6_K's larger units
  constexpr bool DEEP = Q != Q5_K && Q != Q6_K;
  const int n0 = blockIdx.x * QM_BN, m0 = blockIdx.y * QM_BM;
  const int units = K / 32, steps = (units + QM_UNITS - 1) / QM_UNITS;
  const int s0 = blockIdx.z * steps_per_split, s1 = min(steps, s0 + steps_per_split);

  // the weight units this thread dequantizes: unit wu of each step in rows wr and wr + 64 of the tile, so the four
  // lanes of a row read its step's bytes side by side (a warp's load touches 8 rows, not 32)
  const int wu = tid % QM_UNITS, wr = tid / QM_UNITS;
  const QRow row[2] = {quant_row<Q>(w, min(n0 + wr, N - 1), N, K), quant_row<Q>(w, min(n0 + wr + QM_BN / 2, N - 1), N, K)};
  Unit<Q> ua[2], ub[2];  // the units of two steps in flight (steps s0, s0 + 2, ... in ua; s0 + 1, ... in ub)
  auto load_w = [&](Unit<Q> (&un)[2], int s) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int u = s * QM_UNITS + wu;
      if (u < units) un[i].load(row[i], u);
    }
  };
  auto store_w = [&](int buf, const Unit<Q> (&un)[2], int s) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int u = s * QM_UNITS + wu;
      uint32_t* d = reinterpret_cast<uint32_t*>(ws + (buf * QM_BN + wr + i * QM_BN / 2) * QM_LD + wu * 32);
      if (u >= units) {
#pragma unroll
        for (int c = 0; c < 4; c++) reinterpret_cast<uint4*>(d)[c] = make_uint4(0, 0, 0, 0);
        continue;
      }
      store_unit<T, DEEP>(d, un[i], wu >= 2);
    }
  };
  // x: 64 rows of 128 inputs, 16 vectors of 8 a row, 4 vectors a thread; rows past M and inputs past K are zeros
  auto load_x = [&](int buf, int s) {
#pragma unroll
    for (int i = 0; i < QM_BM * QM_BK / 8 / QM_THREADS; i++) {
      const int v = tid + i * QM_THREADS, r = v / (QM_BK / 8), c = (v % (QM_BK / 8)) * 8, k = s * QM_BK + c;
      T* d = xs + (buf * QM_BM + r) * QM_LD + c;
      if (m0 + r < M && k < K) cp_async16(d, x + (size_t)(m0 + r) * K + k);
      else *reinterpret_cast<uint4*>(d) = make_uint4(0, 0, 0, 0);
    }
    cp_async_commit();
  };

  float c[2][4][4];
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) c[i][j][e] = 0.f;
  const int wm = (warp / 4) * 32, wn = (warp % 4) * 32;

  auto mma_step = [&](int buf) {
    const T* xb = xs + buf * QM_BM * QM_LD;
    const T* wb = ws + buf * QM_BN * QM_LD;
#pragma unroll
    for (int kk = 0; kk < QM_BK; kk += 16) {
      uint32_t a[2][4], b[4][2];
#pragma unroll
      for (int i = 0; i < 2; i++) ldmatrix_x4(a[i], xb + (wm + i * 16 + (lane & 15)) * QM_LD + kk + (lane >> 4) * 8);
#pragma unroll
      for (int j = 0; j < 2; j++) {
        uint32_t r[4];
        ldmatrix_x4(r, wb + (wn + j * 16 + (lane & 7) + 8 * (lane >> 4)) * QM_LD + kk + 8 * ((lane >> 3) & 1));
        b[2 * j][0] = r[0];
        b[2 * j][1] = r[1];
        b[2 * j + 1][0] = r[2];
        b[2 * j + 1][1] = r[3];
      }
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) mma16816<T>(c[i][j], a[i], b[j][0], b[j][1]);
    }
  };
  // Step s: its weights and x are in shared buffer (s - s0) % 2, the next step's units in registers (`next`); the
  // units of step s + 2 go out into `cur` (free once step s was stored) before the tensor cores start on step s, so a
  // load has two steps' work to arrive in. Q5_K's and Q6_K's units are too large for two steps of them in the 128
  // registers that keep two blocks on a multiprocessor (DEEP): theirs go out one step ahead, into `next`.
  auto step = [&](int s, Unit<Q> (&cur)[2], Unit<Q> (&next)[2]) {
    const int buf = (s - s0) & 1;
    if (s + 1 < s1) load_x(buf ^ 1, s + 1);
    if (DEEP && s + 2 < s1) load_w(cur, s + 2);
    if (!DEEP && s + 1 < s1) load_w(next, s + 1);
    mma_step(buf);
    if (s + 1 < s1) store_w(buf ^ 1, next, s + 1);
    cp_async_wait<0>();
    __syncthreads();
  };
  if (s0 < s1) {
    load_w(ua, s0);
    if (DEEP && s0 + 1 < s1) load_w(ub, s0 + 1);
    load_x(0, s0);
    store_w(0, ua, s0);
    cp_async_wait<0>();
    __syncthreads();
  }
  for (int s = s0; s < s1; s += 2) {
    step(s, ua, ub);
    if (s + 1 < s1) step(s + 1, ub, ua);
  }

  // c[i][j]: rows wm + 16 i + lane / 4 (+ 8 for elements 2, 3), columns wn + 8 j + 2 (lane % 4) (+ 1)
  const bool split = gridDim.z > 1;
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int m = m0 + wm + i * 16 + (lane >> 2) + (e >> 1) * 8, col = n0 + wn + j * 8 + 2 * (lane & 3) + (e & 1);
        if (m >= M || col >= N) continue;
        if (split) atomicAdd(acc + (size_t)m * N + col, c[i][j][e]);
        else qmma_store<T, O>(out, bias, act, N, m, col, c[i][j][e], res);
      }
}

// After a split-K pass: out = act(acc + bias) (+ out), acc zeroed for the next pass.
template <typename T, typename O>
__device__ void qmma_finish(O* out, float* acc, const T* bias, int act, int N, int rows, int res) {
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (size_t)rows * N) return;
  const float v = acc[i];
  acc[i] = 0.f;
  qmma_store<T, O>(out, bias, act, N, (int)(i / N), (int)(i % N), v, res);
}

// qmma_<quant>_<dtype>[_f32out], qmma_finish_<dtype>[_f32out]
#define QMMA(T, S, O, OS, Q, QS)                                                                                       \
  extern "C" __global__ void __launch_bounds__(QM_THREADS, 2) qmma_##QS##_##S##OS(O* out, float* acc, const T* x, const uint8_t* w, \
                                                                              const T* bias, int act, int N, int K, int M,  \
                                                                              int steps_per_split, int res) {           \
    pdl_begin();                                                                                                        \
    qmma<Q, T, O>(out, acc, x, w, bias, act, N, K, M, steps_per_split, res);                                            \
  }
#define QMMA_OUT(T, S, O, OS)                                                                                          \
  QMMA(T, S, O, OS, Q8_0, q8_0) QMMA(T, S, O, OS, Q4_0, q4_0) QMMA(T, S, O, OS, Q4_K, q4_k) QMMA(T, S, O, OS, Q5_K, q5_k) \
  QMMA(T, S, O, OS, Q6_K, q6_k) QMMA(T, S, O, OS, Q4_G32, q4_g32) QMMA(T, S, O, OS, Q4_G64, q4_g64)                     \
  QMMA(T, S, O, OS, Q4_G128, q4_g128)                                                                                  \
  extern "C" __global__ void __launch_bounds__(256) qmma_finish_##S##OS(O* out, float* acc, const T* bias, int act, int N, int rows, \
                                                                       int res) {                                       \
    pdl_begin();                                                                                                        \
    qmma_finish<T, O>(out, acc, bias, act, N, rows, res);                                                               \
  }
#define QMMA_ALL(T, S) QMMA_OUT(T, S, T, ) QMMA_OUT(T, S, float, _f32out)
QMMA_ALL(__half, f16)
QMMA_ALL(__nv_bfloat16, bf16)
