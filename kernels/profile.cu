// The per-op profiler's gate (bench/cuda-timing.ts through CudaBackend's op hook). Launcher: src/backends/cuda/profile.ts.
#include "common.cuh"

// Holds the stream until the host has written `value` (or more) into `flag`, pinned host memory, or `timeout_ns` have
// passed: the profiler (bench/cuda-timing.ts OpProfiler) queues an op's events and launches behind it and then writes the flag, so the
// events time the GPU's work alone rather than the host's launching. The timeout only bounds a gate the host failed to
// open (an op that synchronised the stream inside); one thread.
extern "C" __global__ void profile_gate(const volatile unsigned* flag, unsigned value, unsigned long long timeout_ns) {
  pdl_begin();
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    if (*flag >= value) return;
    __nanosleep(200);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < timeout_ns);
}
