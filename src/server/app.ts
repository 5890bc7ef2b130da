// The OpenAI-compatible HTTP server over the models it holds (fastify): every body validated against its
// schema before a handler runs, errors as OpenAI error objects, an optional Bearer key, /metrics for
// Prometheus, and the chat playground at /. Closing drains: running requests finish, new ones get 503.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Fastify, { type FastifyInstance } from 'fastify';
import { chatCompletions, type ChatBody } from './chat.js';
import { completions, type CompletionBody } from './completions.js';
import { embeddings, type EmbeddingBody } from './embeddings.js';
import { ApiError, toApiError } from './errors.js';
import type { ServerState } from './generate.js';
import { Metrics } from './metrics.js';
import { ModelTable, type Served } from './models.js';
import { chatBody, completionBody, embeddingBody } from './schemas.js';
import { validationMessage, type SchemaError } from './validation.js';

export interface ServerOptions {
  /** requests must carry `Authorization: Bearer <apiKey>` (all but /health and the page) */
  apiKey?: string;
  /** sequences admitted at once, running and waiting, over all requests; beyond it requests get 429 (default 1024) */
  maxQueue?: number;
  /** the largest request body in bytes (default 4 MiB) */
  bodyLimit?: number;
  /**
   * a stream sends each choice's tokens this many at a time (default 1: every token as it comes). Under many
   * concurrent streams, every socket write costs the scheduler's thread time between decode steps: fewer, larger
   * chunks give more tokens/s for a lumpier stream (vLLM's stream interval)
   */
  streamInterval?: number;
}

const PAGE = new URL('../../../web/playground.html', import.meta.url);

const digest = (s: string) => createHash('sha256').update(s).digest();

export class PeregrineServer {
  readonly app: FastifyInstance;
  readonly models: ModelTable;
  readonly state: ServerState;

  constructor(served: Served[], options: ServerOptions = {}) {
    this.models = new ModelTable(served);
    this.state = { admission: { inFlight: 0, limit: options.maxQueue ?? 1024 }, metrics: new Metrics(served), streamInterval: options.streamInterval ?? 1 };
    this.app = Fastify({
      bodyLimit: options.bodyLimit ?? 4 * 2 ** 20,
      return503OnClosing: true,
      forceCloseConnections: 'idle',
      ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false } },
      schemaErrorFormatter: (errors) => {
        const { message, param } = validationMessage(errors as SchemaError[]);
        return new ApiError(400, message, 'invalid_request_error', param, 'invalid_body');
      },
    });
    this.routes(options);
  }

  private routes(options: ServerOptions): void {
    const { app, models, state } = this;
    const key = options.apiKey === undefined ? null : digest(options.apiKey);
    app.addHook('onRequest', async (req) => {
      if (key === null || req.url === '/health' || (req.method === 'GET' && req.url === '/')) return;
      const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
      if (!m || !timingSafeEqual(digest(m[1]), key)) {
        throw new ApiError(401, m ? 'the API key is not valid' : 'an API key is required: send the header Authorization: Bearer <key>', 'authentication_error', null, 'invalid_api_key');
      }
    });
    app.addHook('onResponse', async (req, reply) => {
      state.metrics.requests.inc({ endpoint: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) });
    });
    app.setErrorHandler(async (err, _req, reply) => {
      const e = err instanceof ApiError ? err : toApiError(err);
      return reply.status(e.status).send(e.body());
    });
    app.setNotFoundHandler(async (req) => {
      throw new ApiError(404, `no route ${req.method} ${req.url}`, 'invalid_request_error', null, 'unknown_url');
    });

    app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').send(readFileSync(PAGE)));
    app.get('/health', async () => ({ status: 'ok' }));
    app.get('/metrics', async (_req, reply) => reply.type(state.metrics.registry.contentType).send(await state.metrics.registry.metrics()));
    const card = (m: Served) => ({ id: m.id, object: 'model', created: m.created, owned_by: 'peregrine', kind: m.kind });
    app.get('/v1/models', async () => ({ object: 'list', data: models.models.map(card) }));
    app.get<{ Params: { id: string } }>('/v1/models/*', async (req) => {
      const id = (req.params as Record<string, string>)['*'];
      const m = models.models.find((x) => x.id === id);
      if (!m) throw new ApiError(404, `the model ${JSON.stringify(id)} is not served here`, 'invalid_request_error', 'model', 'model_not_found');
      return card(m);
    });
    app.post<{ Body: CompletionBody }>('/v1/completions', { schema: { body: completionBody } }, async (req, reply) => completions(state, models, req.body, reply));
    app.post<{ Body: ChatBody }>('/v1/chat/completions', { schema: { body: chatBody } }, async (req, reply) => chatCompletions(state, models, req.body, reply));
    app.post<{ Body: EmbeddingBody }>('/v1/embeddings', { schema: { body: embeddingBody } }, async (req) => embeddings(models, req.body));
  }

  /** Listens on host:port; resolves to the address it listens on. */
  async listen(port: number, host: string): Promise<string> {
    return this.app.listen({ port, host });
  }

  /** Stops taking requests, waits for the running ones to finish, then frees the models. */
  async close(): Promise<void> {
    await this.app.close();
    this.models.dispose();
  }
}

export function createServer(served: Served[], options: ServerOptions = {}): PeregrineServer {
  return new PeregrineServer(served, options);
}
