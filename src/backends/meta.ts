// A backend of shapes only: tensors without memory and ops that do nothing. `inspect` builds a model and
// its runtime over it to print the memory plan a real load would make, without reading any weights.
import { fail } from '../errors.js';
import type { HostWeight } from '../loaders/dtypes.js';
import { isStoredQuant, type StoredQuant } from '../loaders/quant.js';
import { numel, quantDType, type Backend, type DType, type ParallelRank, type PipelineStage, type Tensor } from '../ops/backend.js';

class MetaTensor implements Tensor {
  constructor(readonly shape: readonly number[], readonly dtype: DType) {}
}

const nothing = (): void => {};

export class MetaBackend implements Backend {
  readonly name: string;
  readonly batchInvariant = false;
  /** `parallel` and `pipeline`: those of the backend whose rank's model this one shapes */
  constructor(readonly activationDtype: DType, device: string, readonly parallel: ParallelRank | null = null, readonly pipeline: PipelineStage | null = null) {
    this.name = device;
  }

  weight(src: HostWeight, shape: number[], transpose = false, quantized = false): Tensor {
    const keep = quantized && isStoredQuant(src.dtype) && shape.length === 2 && !transpose;
    return new MetaTensor(shape, keep ? quantDType(src.dtype as StoredQuant) : this.activationDtype);
  }

  quantizedWeight(_src: HostWeight, shape: number[], _transpose: boolean, type: StoredQuant): Tensor {
    return new MetaTensor(shape, quantDType(type));
  }

  arena(bytes: number): Tensor {
    return new MetaTensor([bytes], 'f32');
  }

  view(_arena: Tensor, _offset: number, shape: number[], dtype: DType): Tensor {
    return new MetaTensor(shape, dtype);
  }

  buffer(shape: number[], dtype: DType): Tensor {
    if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail('bad-argument', `a buffer of shape [${shape}] cannot be planned`);
    return new MetaTensor(shape, dtype);
  }

  readFloat(_src: Tensor, count: number): Float32Array {
    return new Float32Array(count);
  }

  readInt(src: Tensor, count: number): Int32Array {
    return new Int32Array(Math.min(count, numel(src.shape)));
  }

  readBlocks = (): Uint8Array => new Uint8Array(0);
  writeBlocks = nothing;

  graph(_key: string, body: () => void): void {
    body();
  }

  free = nothing;
  writeInt = nothing;
  invalidateGraphs = nothing;
  dispose = nothing;
  embed = nothing;
  embedSlice = nothing;
  layerNorm = nothing;
  addBiasResidualLayerNorm = nothing;
  linear = nothing;
  normLinear = nothing;
  gatedActivation = nothing;
  rotary = nothing;
  linearResidual = nothing;
  gatedLinearResidual = nothing;
  writeKV = nothing;
  attend = nothing;
  attendEncoder = nothing;
  decodeAttention = nothing;
  crossAttention = nothing;
  allReduce = nothing;
  allGather = nothing;
  sendRows = nothing;
  recvRows = nothing;
  copyBlocks = nothing;
  gatherRows = nothing;
  scatterInt = nothing;
  meanPool = nothing;
  processLogits = nothing;
  selectCandidates = nothing;
  sample = nothing;
  logprobs = nothing;
  advance = nothing;
}
