// Peregrine's library API.
export { loadModel, loadGenerator, loadEmbedder, inspectModel, type LoadOptions, type LoadedModel, type Inspection } from './engine/load.js';
export { TextGenerator, type GenerateOptions, type GenerationResult, type TokenEvent, type FinishReason } from './engine/generation.js';
export { Embedder, type EmbedOptions, type Pooling, type Classification } from './engine/embedder.js';
export type { SamplingOptions } from './engine/sampling.js';
export { PeregrineError, type ErrorCode } from './errors.js';
export { resolveModelDir, type HubOptions } from './loaders/hub.js';
export { SafetensorsFile } from './loaders/safetensors.js';
export { writeSafetensors } from './loaders/safetensors-write.js';
export { Tokenizer } from './tokenizers/tokenizer.js';
