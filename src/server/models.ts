// The models a server holds, by the name requests pick them with (`model` in the body).
import type { Embedder } from '../engine/embedder.js';
import type { TextGenerator } from '../engine/generation.js';
import { ApiError } from './errors.js';

export interface Served {
  id: string;
  /** seconds since the epoch, when it was loaded */
  created: number;
  kind: 'causal-lm' | 'encoder';
  generator?: TextGenerator;
  embedder?: Embedder;
}

export class ModelTable {
  private readonly byId = new Map<string, Served>();

  constructor(readonly models: Served[]) {
    for (const m of models) {
      if (this.byId.has(m.id)) throw new Error(`two models are served as ${m.id}`);
      this.byId.set(m.id, m);
    }
  }

  /** The model a request names, of the kind the endpoint needs. */
  pick(id: unknown, kind: Served['kind'], endpoint: string): Served {
    const m = typeof id === 'string' ? this.byId.get(id) : undefined;
    if (!m) throw new ApiError(404, `the model ${JSON.stringify(id)} is not served here; served: ${this.models.map((x) => x.id).join(', ')}`, 'not_found_error', 'model', 'model_not_found');
    if (m.kind !== kind) {
      throw new ApiError(400, `${m.id} is ${m.kind === 'encoder' ? 'an encoder: it embeds, use /v1/embeddings' : 'a text generator: use /v1/completions or /v1/chat/completions'}, not ${endpoint}`, 'invalid_request_error', 'model', 'wrong_model_kind');
    }
    return m;
  }

  dispose(): void {
    for (const m of this.models) (m.generator ?? m.embedder)!.dispose();
  }
}
