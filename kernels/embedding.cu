// Token (+ position) (+ token type) embedding lookup into packed rows; reference: src/backends/cpu/embedding.ts.
#include "common.cuh"

template <typename T>
__device__ void embed(T* out, const int* ids, const int* positions, const T* tok, const T* pos,
                      const int* type_ids, const T* types, int H) {
  const int t = blockIdx.x;
  const T* a = tok + (size_t)ids[t] * H;
  const T* b = pos ? pos + (size_t)positions[t] * H : nullptr;
  const T* c = types ? types + (size_t)type_ids[t] * H : nullptr;
  T* o = out + (size_t)t * H;
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    float v = to_f(a[i]);
    if (b) v += to_f(b[i]);
    if (c) v += to_f(c[i]);
    o[i] = from_f<T>(v);
  }
}

#define EMBED(T, S)                                                                                        \
  extern "C" __global__ void embed_##S(T* out, const int* ids, const int* positions, const T* tok,        \
                                       const T* pos, const int* type_ids, const T* types, int H) {         \
    pdl_begin();                                                                                           \
    embed<T>(out, ids, positions, tok, pos, type_ids, types, H);                                           \
  }
FOR_EACH_DTYPE(EMBED)
