// The paged KV cache's addressing, shared by kernels/attention.cu and kernels/flash.cu: each layer's cache is
// [blocks, block_size, W]; a sequence keeps position p in block table[p / block_size], row p % block_size.
#pragma once

// Position p's block (p / block_size) and row in it (p % block_size), by a shift and a mask for the power-of-two
// block sizes the runtime uses (a uniform branch; a division by a runtime int costs a few dozen instructions).
__device__ __forceinline__ int block_of(int p, int block_size) {
  return (block_size & (block_size - 1)) == 0 ? p >> (__ffs(block_size) - 1) : p / block_size;
}
__device__ __forceinline__ int row_in_block(int p, int block_size) {
  return (block_size & (block_size - 1)) == 0 ? p & (block_size - 1) : p % block_size;
}

// The cache row of position p; `table` is the sequence's row of the block table. A row index fits an int:
// 2^31 rows of even 64 fp16 values would be 256 GiB.
__device__ __forceinline__ int cache_row(const int* table, int p, int block_size) {
  return table[block_of(p, block_size)] * block_size + row_in_block(p, block_size);
}
