// Fuzzing the HTTP server's requests: valid bodies of each endpoint with fields set to hostile values, fields
// removed, unknown fields, bodies that are not objects or not JSON, wrong content types and unknown routes,
// sent through fastify's inject (no sockets). Every answer is a success of the endpoint's shape or an OpenAI
// error object with a 4xx status and a one-line message, never a 500; afterwards nothing is left admitted or
// running.
import { AssertionError } from 'node:assert';
import fc from 'fast-check';
import { loadEmbedder, loadGenerator } from '../../src/engine/load.js';
import { createServer, type PeregrineServer } from '../../src/server/app.js';
import { fixture } from '../helpers/fixtures.js';
import { note, type Target } from './harness.js';

function fail(message: string): never {
  throw new AssertionError({ message });
}

let server: Promise<PeregrineServer> | null = null;

/** One server for the process: a generator without a chat template, one with, and an encoder. */
function theServer(): Promise<PeregrineServer> {
  server ??= (async () => {
    const [gpt2, llama, bert] = await Promise.all([loadGenerator(fixture('gpt2-tiny'), { device: 'cpu' }), loadGenerator(fixture('llama-tiny'), { device: 'cpu' }),
      loadEmbedder(fixture('bert-tiny'), { device: 'cpu' })]);
    const s = createServer([{ id: 'gpt2', created: 1, kind: 'causal-lm', generator: gpt2 }, { id: 'llama', created: 1, kind: 'causal-lm', generator: llama },
      { id: 'bert', created: 1, kind: 'encoder', embedder: bert }], { maxQueue: 12, bodyLimit: 64 * 1024 });
    await s.app.ready();
    return s;
  })();
  return server;
}

const BASES: Record<string, () => Record<string, unknown>> = {
  '/v1/completions': () => ({ model: 'gpt2', prompt: 'hello there', max_tokens: 3, temperature: 0 }),
  '/v1/chat/completions': () => ({ model: 'llama', messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hi' }], max_tokens: 3, seed: 1 }),
  '/v1/embeddings': () => ({ model: 'bert', input: ['a b', 'c'] }),
};

const FIELDS = ['model', 'prompt', 'messages', 'input', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'n', 'stream', 'stream_options', 'stop', 'seed',
  'presence_penalty', 'frequency_penalty', 'logit_bias', 'logprobs', 'top_logprobs', 'echo', 'suffix', 'best_of', 'user', 'top_k', 'min_p', 'top_p_decay', 'top_p_min',
  'top_p_reset_ids', 'repetition_penalty', 'min_tokens', 'ignore_eos', 'stop_token_ids', 'bad_words', 'num_beams', 'length_penalty', 'early_stopping', 'diversity_rate',
  'truncate', 'response_format', 'tools', 'tool_choice', 'chat_template_kwargs', 'encoding_format', 'dimensions', 'pooling', 'normalize', '__proto__', 'constructor', 'bogus'];

const scalar = fc.oneof(
  fc.constantFrom(0, -1, 1, 2, 3, 8, 16, 64, 65, 128, 129, 255, 256, 1e9, 2 ** 32, 2 ** 53, -(2 ** 31), 0.5, 1.5, -0.5, 1e-9, 1e308, -1e308, 100, -100, -2, 2, 20, 21),
  fc.constantFrom('', ' ', 'x', 'gpt2', 'llama', 'bert', 'left', 'right', 'never', 'text', 'json_object', 'float', 'base64', 'mean', 'cls', 'max', 'system', 'user',
    'assistant', 'developer', 'tool', '<|endoftext|>', '\u0000', '😀', 'ü'.repeat(50), 'x'.repeat(3000), 'null', 'true', '1e3', 'NaN'),
  fc.boolean(), fc.constant(null), fc.integer({ min: -5, max: 70000 }), fc.double({ noNaN: true }),
);
const value: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  v: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalar, fc.array(tie('v'), { maxLength: 4 }), fc.dictionary(fc.constantFrom('role', 'content', 'type', 'text', 'include_usage', 'name', '5', '99999', 'x'), tie('v'), { maxKeys: 3 })),
})).v;

type Edit = { kind: 'set'; field: string; value: unknown } | { kind: 'delete'; field: string } | { kind: 'message'; index: number; field: string; value: unknown };

const edit: fc.Arbitrary<Edit> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('set' as const), field: fc.constantFrom(...FIELDS), value }), weight: 6 },
  { arbitrary: fc.record({ kind: fc.constant('delete' as const), field: fc.constantFrom('model', 'prompt', 'messages', 'input', 'max_tokens') }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('message' as const), index: fc.nat(2), field: fc.constantFrom('role', 'content', 'name', 'x'), value }), weight: 2 },
);

export interface ServerInput {
  url: string;
  method: 'POST' | 'GET' | 'PUT';
  edits: Edit[];
  /** the body as sent: JSON of the edited object, another JSON value, or bytes that are not JSON */
  shape: 'object' | 'array' | 'number' | 'garbage' | 'empty';
  contentType: string;
  stream: boolean;
}

export const serverArbitrary: fc.Arbitrary<ServerInput> = fc.record({
  url: fc.oneof({ arbitrary: fc.constantFrom(...Object.keys(BASES)), weight: 12 }, { arbitrary: fc.constantFrom('/v1/models', '/v1/models/gpt2', '/v1/nothing', '/v1/completions?x=1', '//v1/completions'), weight: 1 }),
  method: fc.oneof({ arbitrary: fc.constant('POST' as const), weight: 12 }, { arbitrary: fc.constantFrom('GET' as const, 'PUT' as const), weight: 1 }),
  edits: fc.array(edit, { maxLength: 4 }),
  shape: fc.oneof({ arbitrary: fc.constant('object' as const), weight: 16 }, { arbitrary: fc.constantFrom('array' as const, 'number' as const, 'garbage' as const, 'empty' as const), weight: 1 }),
  contentType: fc.oneof({ arbitrary: fc.constant('application/json'), weight: 16 }, { arbitrary: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1'), weight: 1 }),
  stream: fc.boolean(),
});

function body(input: ServerInput): string {
  const base = BASES[input.url]?.() ?? {};
  if (input.stream && input.url !== '/v1/embeddings') base.stream = true;
  for (const e of input.edits) {
    if (e.kind === 'set') Object.defineProperty(base, e.field, { value: e.value, enumerable: true, configurable: true, writable: true });
    else if (e.kind === 'delete') delete base[e.field];
    else if (Array.isArray(base.messages)) {
      const m = (base.messages as Record<string, unknown>[])[e.index];
      if (m && typeof m === 'object') m[e.field] = e.value;
    }
  }
  switch (input.shape) {
    case 'object': return JSON.stringify(base);
    case 'array': return JSON.stringify([base]);
    case 'number': return '42';
    case 'garbage': return '{"model": "gpt2", "prompt": "x",';
    case 'empty': return '';
  }
}

async function check(input: ServerInput): Promise<void> {
  const s = await theServer();
  const payload = body(input);
  const r = await s.app.inject({ method: input.method, url: input.url, headers: { 'content-type': input.contentType }, payload });
  const what = `${input.method} ${input.url} ${payload.slice(0, 300)}`;
  if (r.statusCode >= 500) fail(`status ${r.statusCode} for ${what}: ${r.body.slice(0, 500)}`);
  if (r.statusCode >= 400) {
    let e: { error?: { message?: unknown; type?: unknown } };
    try {
      e = JSON.parse(r.body);
    } catch {
      fail(`status ${r.statusCode} without a JSON body for ${what}: ${r.body.slice(0, 200)}`);
    }
    const message = e.error?.message;
    if (typeof message !== 'string' || typeof e.error?.type !== 'string') fail(`status ${r.statusCode} without an OpenAI error object for ${what}: ${r.body.slice(0, 200)}`);
    if (/[\r\n\u2028\u2029]/.test(message) || /\bat .+:\d+:\d+\)?/.test(message)) fail(`a message of more than one line, or a stack: ${JSON.stringify(message)}`);
    note(`status ${r.statusCode}: ${message.replace(/"[^"]*"|\d+(\.\d+)?(e[+-]?\d+)?/g, '#').slice(0, 60)}`);
  } else if (r.headers['content-type']?.toString().startsWith('text/event-stream')) {
    if (!r.body.endsWith('data: [DONE]\n\n')) fail(`a stream that did not end with [DONE] for ${what}: ${r.body.slice(-300)}`);
    if (r.body.includes('"error"')) fail(`an error inside a stream for ${what}: ${r.body.slice(0, 500)}`);
    note('status 200, streamed');
  } else {
    const ok = JSON.parse(r.body) as { choices?: unknown[]; data?: unknown[] };
    if (input.url.startsWith('/v1/') && input.method === 'POST' && !Array.isArray(ok.choices) && !Array.isArray(ok.data)) fail(`a 200 without choices or data for ${what}: ${r.body.slice(0, 200)}`);
    note('status 200');
  }
  if (s.state.admission.inFlight !== 0) fail(`${s.state.admission.inFlight} sequences still admitted after ${what}`);
  for (const m of s.models.models) {
    const st = m.generator?.scheduler.stats();
    if (st && (st.running !== 0 || st.waiting !== 0)) fail(`${m.id} still runs ${st.running} and holds ${st.waiting} waiting after ${what}`);
  }
}

export const serverTarget: Target<ServerInput> = { name: 'server', quick: 150, arbitrary: serverArbitrary, check };
