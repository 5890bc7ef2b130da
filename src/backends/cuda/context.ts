// What every launcher is handed: the driver, the kernels, the stream, cuBLASLt and the scratch memory reserved with
// the backend (src/backends/cuda/backend.ts builds it). Its own file, so that launchers import it without importing
// the backend that imports them.
import type { Blas } from './blas.js';
import type { Driver, Handle } from './driver.js';
import type { KernelSet } from './kernels.js';

/** Device memory a launcher's scratch holds: its address and size. */
export interface QuantScratch {
  ptr: number;
  bytes: number;
}

/** Device memory of the split decode attention (kernels/attention.cu DecodeSplit), reserved with the backend. */
export interface DecodeSplitScratch {
  /** softmax states it holds, each DECODE_MAX_HEAD + 2 floats; a counter for each too */
  slots: number;
  partials: number;
  counters: number;
}

/** What the launchers need: kernels, the stream, cuBLASLt and the driver. */
export interface CudaContext {
  driver: Driver;
  /** every linear through the GEMV kernel, so that a row's result does not depend on the rows beside it */
  batchInvariant: boolean;
  /** multiprocessors, for grid sizing */
  sms: number;
  kernels: KernelSet;
  stream: Handle;
  blas: Blas;
  /** the quantized layers' scratch (qlinear.ts), reserved as quantized weights load */
  quantScratch: QuantScratch;
  /** the tensor-core quantized GEMM's split-K sums (qlinear.ts qmma), zero between uses */
  qmmaAcc: QuantScratch;
  /** the split decode attention's softmax states and counters (attention.ts decodeSplits), `slots` states */
  decodeSplit: DecodeSplitScratch;
}
