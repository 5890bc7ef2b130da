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

// A vocabulary-parallel rank's share of the lookup: row ids[t] - first of its slice of the table, or zeros where
// the id is another rank's; an all-reduce over the ranks completes the rows. Reference: src/backends/cpu/embedding.ts.
#define EMBED_SLICE(T, S)                                                                                  \
  extern "C" __global__ void embed_slice_##S(T* out, const int* ids, const T* table, int first, int rows, \
                                             int H) {                                                      \
    pdl_begin();                                                                                           \
    const int t = blockIdx.x, r = ids[t] - first;                                                          \
    T* o = out + (size_t)t * H;                                                                            \
    const bool mine = r >= 0 && r < rows;                                                                  \
    const T* a = table + (size_t)(mine ? r : 0) * H;                                                       \
    for (int i = threadIdx.x; i < H; i += blockDim.x) o[i] = mine ? a[i] : from_f<T>(0.f);                 \
  }
FOR_EACH_DTYPE(EMBED_SLICE)
