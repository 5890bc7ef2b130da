// Peregrine's library API.
export { loadModel, loadGenerator, loadEmbedder, inspectModel, type LoadOptions, type LoadedModel, type Inspection } from './engine/load.js';
export { Translator, loadTranslator } from './engine/translator.js';
export { TextGenerator, type CallOptions, type GenerationResult, type TokenEvent, type FinishReason, type TopLogprob, type BeamSequence } from './engine/generation.js';
export type { GenerateOptions, SamplingOptions } from './engine/options.js';
export { Session, type SessionOptions } from './engine/session.js';
export { Embedder, type EmbedOptions, type ClassifyOptions, type FillMaskOptions, type Pooling, type Classification, type ProblemType, type TokenLabel, type MaskFill, type MaskPrediction } from './engine/embedder.js';
export type { TruncateSide } from './engine/truncate.js';
export { PeregrineError, type ErrorCode } from './errors.js';
export { abortGroup, createGroup, type GroupHandle } from './backends/cpu/thread-group.js';
export { runNode, type NodesOption } from './engine/net/nodes.js';
export { resolveModelDir, type HubOptions } from './loaders/hub.js';
export { SafetensorsFile } from './loaders/safetensors.js';
export { writeSafetensors } from './loaders/safetensors-write.js';
export { Tokenizer } from './tokenizers/tokenizer.js';
export { createServer, PeregrineServer, type ServerOptions } from './server/app.js';
export type { Served } from './server/models.js';
