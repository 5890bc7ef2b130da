// The methods of LoadOptions.quantize (--quantize) and the type each quantizes a float matrix to (int4: groups of
// 128 inputs, of 64 or 32 where a layer's inputs are not a multiple of 128; fp8: E4M3 per output channel); its own module, free of imports, so that
// the CLI's flags name the choices without loading the loaders.
export const QUANTIZE_METHODS = { int8: 'Q8_0', int4: 'Q4_G128', fp8: 'FP8' } as const;
export type QuantizeMethod = keyof typeof QUANTIZE_METHODS;
