// JSON schemas of the request bodies (fastify validates every body against them before a handler runs).
// The OpenAI fields, then the runtime's own options under the names vLLM and Hugging Face give them. A field
// not listed is refused by name: a request never silently computes something other than what it asked for.
import { MAX_TOP_LOGPROBS } from '../ops/requests.js';

const nullable = (schema: Record<string, unknown>) => ({ anyOf: [schema, { type: 'null' }] });
const ids = { type: 'array', items: { type: 'integer', minimum: 0 }, minItems: 1 };
const penalty = nullable({ type: 'number', minimum: -2, maximum: 2 });

/** Sampling and stopping, shared by completions and chat completions. */
const generation = {
  model: { type: 'string' },
  max_tokens: nullable({ type: 'integer', minimum: 1 }),
  temperature: nullable({ type: 'number', minimum: 0 }),
  top_p: nullable({ type: 'number', exclusiveMinimum: 0, maximum: 1 }),
  n: nullable({ type: 'integer', minimum: 1, maximum: 128 }),
  stream: nullable({ type: 'boolean' }),
  stream_options: nullable({ type: 'object', properties: { include_usage: { type: 'boolean' } }, additionalProperties: false }),
  stop: nullable({ anyOf: [{ type: 'string', minLength: 1 }, { type: 'array', items: { type: 'string', minLength: 1 }, maxItems: 16 }] }),
  seed: nullable({ type: 'integer', minimum: 0, maximum: 2 ** 32 - 1 }),
  presence_penalty: penalty,
  frequency_penalty: penalty,
  logit_bias: nullable({ type: 'object', additionalProperties: { type: 'number', minimum: -100, maximum: 100 } }),
  user: { type: 'string' },
  // beyond OpenAI: the runtime's request options
  top_k: { type: 'integer', minimum: 0 },
  min_p: { type: 'number', minimum: 0, maximum: 1 },
  top_p_decay: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
  top_p_min: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
  top_p_reset_ids: { type: 'array', items: { type: 'integer', minimum: 0 } },
  repetition_penalty: { type: 'number', exclusiveMinimum: 0 },
  min_tokens: { type: 'integer', minimum: 0 },
  ignore_eos: { type: 'boolean' },
  stop_token_ids: { type: 'array', items: { type: 'integer', minimum: 0 } },
  bad_words: { type: 'array', items: { type: 'string', minLength: 1 } },
  num_beams: { type: 'integer', minimum: 1 },
  length_penalty: { type: 'number' },
  early_stopping: { anyOf: [{ type: 'boolean' }, { const: 'never' }] },
  diversity_rate: { type: 'number' },
  truncate: { enum: ['left', 'right'] },
} as const;

export const completionBody = {
  type: 'object',
  required: ['model', 'prompt'],
  additionalProperties: false,
  properties: {
    ...generation,
    // 0 with echo and logprobs scores the prompt alone
    max_tokens: nullable({ type: 'integer', minimum: 0 }),
    prompt: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, minItems: 1 }, ids, { type: 'array', items: ids, minItems: 1 }] },
    logprobs: nullable({ type: 'integer', minimum: 0, maximum: MAX_TOP_LOGPROBS }),
    echo: nullable({ type: 'boolean' }),
    suffix: nullable({ type: 'string' }),
    best_of: nullable({ type: 'integer', minimum: 1 }),
  },
} as const;

const textPart = { type: 'object', required: ['type', 'text'], properties: { type: { const: 'text' }, text: { type: 'string' } }, additionalProperties: false };

export const chatBody = {
  type: 'object',
  required: ['model', 'messages'],
  additionalProperties: false,
  properties: {
    ...generation,
    messages: {
      type: 'array', minItems: 1,
      items: {
        type: 'object', required: ['role'], additionalProperties: false,
        properties: {
          role: { enum: ['system', 'developer', 'user', 'assistant'] },
          content: nullable({ anyOf: [{ type: 'string' }, { type: 'array', items: textPart }] }),
          name: { type: 'string' },
        },
      },
    },
    max_completion_tokens: nullable({ type: 'integer', minimum: 1 }),
    logprobs: nullable({ type: 'boolean' }),
    top_logprobs: nullable({ type: 'integer', minimum: 0, maximum: MAX_TOP_LOGPROBS }),
    response_format: nullable({ type: 'object', required: ['type'], properties: { type: { type: 'string' } } }),
    tools: { type: 'array' },
    tool_choice: {},
    functions: { type: 'array' },
    function_call: {},
    parallel_tool_calls: { type: 'boolean' },
    chat_template_kwargs: { type: 'object' },
  },
} as const;

export const embeddingBody = {
  type: 'object',
  required: ['model', 'input'],
  additionalProperties: false,
  properties: {
    model: { type: 'string' },
    input: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, minItems: 1 }, ids, { type: 'array', items: ids, minItems: 1 }] },
    encoding_format: { enum: ['float', 'base64'] },
    dimensions: { type: 'integer', minimum: 1 },
    user: { type: 'string' },
    // beyond OpenAI
    pooling: { enum: ['mean', 'cls', 'max'] },
    normalize: { type: 'boolean' },
    truncate: { enum: ['left', 'right'] },
  },
} as const;
