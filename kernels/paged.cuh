// The paged KV cache's addressing, shared by kernels/attention.cu and kernels/flash.cu: each layer's cache is
// [blocks, block_size, W]; a sequence keeps position p in block table[p / block_size], row p % block_size.
#pragma once

// The cache row of position p; `table` is the sequence's row of the block table. A row index fits an int:
// 2^31 rows of even 64 fp16 values would be 256 GiB.
__device__ __forceinline__ int cache_row(const int* table, int p, int block_size) {
  return table[p / block_size] * block_size + p % block_size;
}
