// Counter-based random numbers: uniform(seed, stream, counter) is a pure function, so a sampler needs no
// state between steps and the CUDA kernels compute the same numbers from the same integers
// (kernels/sampling.cu mirrors this file).

/** lowbias32 (Chris Wellons): a 32-bit integer hash with good avalanche. */
export function hash32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** A float in [0, 1) with 24 random bits, for (seed, stream = sequence, counter = position). */
export function uniform(seed: number, stream: number, counter: number): number {
  const h = hash32((hash32((hash32(seed >>> 0) ^ stream) >>> 0) + counter) >>> 0);
  return (h >>> 8) / 16777216;
}

/** A stream of uniforms (for tests and benchmarks that need random data). */
export function seededRandom(seed: number, stream = 0): () => number {
  let counter = 0;
  return () => uniform(seed, stream, counter++);
}
