// The fuzz targets: one per file format Peregrine reads, and the command line.
import type { Target } from './harness.js';
import { safetensorsTarget } from './safetensors.js';

export function targets(): Target[] {
  return [safetensorsTarget];
}
