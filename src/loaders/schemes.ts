// The quantization schemes a checkpoint's config.json may name (quantization_config, read by
// models/quantization-config.ts): how its quantized layers are stored.
import type { Int4Type } from './int4.js';

/** AWQ and GPTQ int4 (loaders/int4.ts) */
export interface Int4Scheme {
  method: 'awq' | 'gptq';
  type: Int4Type;
  /** GPTQ's original format stores each zero minus one (checkpoint_format "gptq") */
  zerosMinusOne: boolean;
}

/** SmoothQuant W8A8 as `peregrine quantize --method smoothquant` writes it (loaders/w8a8.ts) */
export interface W8A8Scheme {
  method: 'smoothquant';
  /** the migration strength the scales were computed with */
  alpha: number;
}

export type QuantScheme = Int4Scheme | W8A8Scheme;
