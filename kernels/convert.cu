// Checkpoint weights (F32, F16, BF16; optionally transposed) converted to the compute dtype on the device as they load.
// Launcher: src/backends/cuda/convert.ts (the CPU backend converts on the host, src/loaders/dtypes.ts).
#include "common.cuh"

// dst[r, c] = src[r, c], or src[c, r] when transposed (src is [cols, rows] then); any dtype to any dtype.
template <typename S, typename T>
__device__ void convert(T* dst, const S* src, int rows, int cols, int transpose) {
  const size_t total = (size_t)rows * cols;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const size_t r = i / cols, c = i % cols;
    dst[i] = from_f<T>(to_f(transpose ? src[c * rows + r] : src[i]));
  }
}

#define CONVERT(SRC, SS, T, S)                                                                             \
  extern "C" __global__ void convert_##SS##_to_##S(T* dst, const SRC* src, int rows, int cols, int transpose) { \
    pdl_begin();                                                                                           \
    convert<SRC, T>(dst, src, rows, cols, transpose);                                                      \
  }
#define CONVERT_FROM_ALL(T, S) CONVERT(float, f32, T, S) CONVERT(__half, f16, T, S) CONVERT(__nv_bfloat16, bf16, T, S)
FOR_EACH_DTYPE(CONVERT_FROM_ALL)
