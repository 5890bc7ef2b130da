// The methods of LoadOptions.quantize (--quantize) and the ggml type each quantizes a float matrix to; its own
// module, free of imports, so that the CLI's flags name the choices without loading the loaders.
export const QUANTIZE_METHODS = { int8: 'Q8_0' } as const;
export type QuantizeMethod = keyof typeof QUANTIZE_METHODS;
