// The CUDA driver API through koffi: signatures declared once below; every call that returns a CUresult
// is checked, and a failure becomes an error naming the status (by the driver's own cuGetErrorName) and
// the call that failed.
import koffi from 'koffi';
import { PeregrineError } from '../../errors.js';
import { loadDriver } from './libs.js';

/** An opaque driver handle (context, stream, module, function, event, graph). */
export type Handle = unknown;

const SIGNATURES = {
  cuInit: 'int cuInit(unsigned int flags)',
  cuDriverGetVersion: 'int cuDriverGetVersion(_Out_ int *version)',
  cuDeviceGetCount: 'int cuDeviceGetCount(_Out_ int *count)',
  cuDeviceGet: 'int cuDeviceGet(_Out_ int *device, int ordinal)',
  cuDeviceGetName: 'int cuDeviceGetName(_Out_ char *name, int len, int device)',
  cuDeviceGetAttribute: 'int cuDeviceGetAttribute(_Out_ int *value, int attrib, int device)',
  cuDevicePrimaryCtxRetain: 'int cuDevicePrimaryCtxRetain(_Out_ void **ctx, int device)',
  cuCtxSetCurrent: 'int cuCtxSetCurrent(void *ctx)',
  cuMemGetInfo: 'int cuMemGetInfo_v2(_Out_ size_t *free, _Out_ size_t *total)',
  cuMemAlloc: 'int cuMemAlloc_v2(_Out_ uint64_t *dptr, size_t bytes)',
  cuMemFree: 'int cuMemFree_v2(uint64_t dptr)',
  cuMemAllocHost: 'int cuMemAllocHost_v2(_Out_ void **pp, size_t bytes)',
  cuMemFreeHost: 'int cuMemFreeHost(void *p)',
  cuMemcpyHtoD: 'int cuMemcpyHtoD_v2(uint64_t dst, const void *src, size_t bytes)',
  cuMemcpyDtoH: 'int cuMemcpyDtoH_v2(_Out_ void *dst, uint64_t src, size_t bytes)',
  cuMemcpyDtoHAsync: 'int cuMemcpyDtoHAsync_v2(void *dst, uint64_t src, size_t bytes, void *stream)',
  cuMemcpyHtoDAsync: 'int cuMemcpyHtoDAsync_v2(uint64_t dst, uint64_t src, size_t bytes, void *stream)',
  cuMemcpyDtoDAsync: 'int cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t bytes, void *stream)',
  cuMemsetD8Async: 'int cuMemsetD8Async(uint64_t dst, uint8_t value, size_t count, void *stream)',
  cuStreamCreate: 'int cuStreamCreate(_Out_ void **stream, unsigned int flags)',
  cuStreamSynchronize: 'int cuStreamSynchronize(void *stream)',
  cuEventCreate: 'int cuEventCreate(_Out_ void **event, unsigned int flags)',
  cuEventDestroy: 'int cuEventDestroy_v2(void *event)',
  cuEventRecord: 'int cuEventRecord(void *event, void *stream)',
  cuEventSynchronize: 'int cuEventSynchronize(void *event)',
  cuEventElapsedTime: 'int cuEventElapsedTime_v2(_Out_ float *ms, void *start, void *end)',
  cuModuleLoadData: 'int cuModuleLoadData(_Out_ void **module, const void *image)',
  cuModuleUnload: 'int cuModuleUnload(void *module)',
  cuModuleGetFunction: 'int cuModuleGetFunction(_Out_ void **fn, void *module, const char *name)',
  cuFuncSetAttribute: 'int cuFuncSetAttribute(void *fn, int attrib, int value)',
  cuFuncGetAttribute: 'int cuFuncGetAttribute(_Out_ int *value, int attrib, void *fn)',
  cuLaunchKernel: 'int cuLaunchKernel(void *fn, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, unsigned int by, unsigned int bz, unsigned int smem, void *stream, void *params, void *extra)',
  cuLaunchKernelEx: 'int cuLaunchKernelEx(const void *config, void *fn, void *params, void *extra)',
  cuStreamBeginCapture: 'int cuStreamBeginCapture_v2(void *stream, int mode)',
  cuStreamEndCapture: 'int cuStreamEndCapture(void *stream, _Out_ void **graph)',
  cuGraphInstantiate: 'int cuGraphInstantiateWithFlags(_Out_ void **exec, void *graph, unsigned long long flags)',
  cuGraphLaunch: 'int cuGraphLaunch(void *exec, void *stream)',
  cuGraphExecDestroy: 'int cuGraphExecDestroy(void *exec)',
  cuGraphDestroy: 'int cuGraphDestroy(void *graph)',
  cuGraphGetNodes: 'int cuGraphGetNodes(void *graph, void *nodes, _Inout_ size_t *count)',
} as const;

type Name = keyof typeof SIGNATURES;

export const CU = {
  DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: 16,
  DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: 75,
  DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: 76,
  FUNC_ATTRIBUTE_BINARY_VERSION: 6,
  FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES: 8,
  LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION: 6,
  STREAM_CAPTURE_MODE_RELAXED: 2,
  STREAM_DEFAULT: 0,
  ERROR_OUT_OF_MEMORY: 2,
} as const;

export class CudaError extends Error {
  constructor(readonly status: number, readonly statusName: string, readonly call: string) {
    super(`CUDA error ${statusName} (${status}) in ${call}`);
    this.name = 'CudaError';
  }
}

type Fn = (...args: unknown[]) => number;

export class Driver {
  private readonly fns: Record<Name, Fn>;
  private readonly errorName: Fn;

  constructor() {
    const lib = loadDriver();
    this.fns = {} as Record<Name, Fn>;
    for (const [name, sig] of Object.entries(SIGNATURES)) this.fns[name as Name] = lib.func(sig) as Fn;
    this.errorName = lib.func('int cuGetErrorName(int error, _Out_ const char **name)') as Fn;
  }

  /** Calls a driver function and throws a CudaError naming the status and the call unless it returns CUDA_SUCCESS. */
  call(name: Name, ...args: unknown[]): void {
    const status = this.fns[name](...args);
    if (status !== 0) throw this.error(status, name);
  }

  error(status: number, call: string): CudaError {
    const out: (string | null)[] = [null];
    this.errorName(status, out);
    return new CudaError(status, out[0] ?? `CUresult ${status}`, call);
  }

  /** The raw function, for the few hot calls that check their own status. */
  raw(name: Name): Fn {
    return this.fns[name];
  }

  // ---- small typed helpers over out-parameters ----

  int(name: Name, ...args: unknown[]): number {
    const out = [0];
    this.call(name, out, ...args);
    return out[0];
  }

  handle(name: Name, ...args: unknown[]): Handle {
    const out: Handle[] = [null];
    this.call(name, out, ...args);
    return out[0];
  }
}

/** Converts an out-of-memory CudaError into a PeregrineError that says what to lower. */
export function memoryError(err: unknown, what: string, bytes: number, free: number): Error {
  if (err instanceof CudaError && err.status === CU.ERROR_OUT_OF_MEMORY) {
    return new PeregrineError('out-of-memory', `out of GPU memory allocating ${what} (${fmt(bytes)}, ${fmt(free)} free); lower --max-batch or --max-seq-len, or use a smaller dtype`);
  }
  return err as Error;
}

export function fmt(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

export { koffi };
