// POST /v1/embeddings: one vector per input (text or token ids), pooled and unit-length by default as
// OpenAI's are; base64 is the little-endian float32 bytes the official client decodes.
import type { Embedder, Pooling } from '../engine/embedder.js';
import { l2normalize } from '../engine/embedder.js';
import { checkTokenIds } from '../models/vocab.js';
import { badRequest } from './errors.js';
import type { ModelTable } from './models.js';

export interface EmbeddingBody {
  model: string;
  input: string | string[] | number[] | number[][];
  encoding_format?: 'float' | 'base64';
  dimensions?: number;
  user?: string;
  pooling?: Pooling;
  normalize?: boolean;
  truncate?: 'left' | 'right';
}

/** Token-id inputs, checked against the model's vocabulary and positions. */
function idInputs(emb: Embedder, inputs: number[][]): Int32Array[] {
  const { maxPositions, vocabSize } = emb.model.info;
  return inputs.map((ids, i) => {
    if (ids.length > maxPositions) throw badRequest(`input ${i} has ${ids.length} tokens, beyond the model's ${maxPositions} positions; shorten it`, 'input', 'context_length_exceeded');
    checkTokenIds(ids, vocabSize, `input ${i}`, 'ids');
    return Int32Array.from(ids);
  });
}

const base64 = (v: Float32Array): string => Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');

export function embeddings(models: ModelTable, body: EmbeddingBody): unknown {
  const served = models.pick(body.model, 'encoder', '/v1/embeddings');
  const emb = served.embedder!;
  const H = emb.model.info.hidden;
  if (body.dimensions !== undefined && body.dimensions !== H) {
    throw badRequest(`dimensions ${body.dimensions} is not supported: ${served.id} embeds in ${H} dimensions, and its vectors are not trained to be cut`, 'dimensions');
  }
  const input = body.input;
  const seqs = typeof input === 'string' ? emb.encodeTexts([input], body.truncate)
    : typeof input[0] === 'string' ? emb.encodeTexts(input as string[], body.truncate)
      : idInputs(emb, typeof input[0] === 'number' ? [input as number[]] : input as number[][]);
  const out = emb.model.encode(seqs, { pooling: body.pooling ?? 'mean' });
  const tokens = seqs.reduce((a, s) => a + s.length, 0);
  const data = seqs.map((_, i) => {
    const v = out.pooled!.slice(i * H, (i + 1) * H);
    if (body.normalize ?? true) l2normalize(v);
    return { object: 'embedding', index: i, embedding: body.encoding_format === 'base64' ? base64(v) : Array.from(v) };
  });
  return { object: 'list', data, model: served.id, usage: { prompt_tokens: tokens, total_tokens: tokens } };
}
