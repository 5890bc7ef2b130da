// POST /v1/embeddings: one vector per input (text or token ids), pooled as the model's directory says
// (sentence-transformers' modules) or by mean, and unit-length as OpenAI's are unless the directory or the
// request says otherwise; base64 is the little-endian float32 bytes the official client decodes.
import type { Pooling } from '../engine/embedder.js';
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
      : typeof input[0] === 'number' ? [input as number[]] : input as number[][];
  const vectors = emb.embedIds(seqs, { pooling: body.pooling, normalize: body.normalize ?? emb.defaults.normalize ?? true });
  const tokens = seqs.reduce((a, s) => a + s.length, 0);
  const data = vectors.map((v, i) => ({ object: 'embedding', index: i, embedding: body.encoding_format === 'base64' ? base64(v) : Array.from(v) }));
  return { object: 'list', data, model: served.id, usage: { prompt_tokens: tokens, total_tokens: tokens } };
}
