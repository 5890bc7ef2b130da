// POST /v1/chat/completions: the messages rendered with the model's chat template (@huggingface/jinja), one
// prompt with n choices; log-probs in chat's shape. Tools and structured output are refused by name.
import type { Template } from '@huggingface/jinja';
import type { FastifyReply } from 'fastify';
import { parseTemplate, renderChat, type Message } from '../engine/chat.js';
import type { TextGenerator } from '../engine/generation.js';
import { PeregrineError } from '../errors.js';
import { badRequest } from './errors.js';
import { answer, finishReason, type ServerState, type Shape } from './generate.js';
import { chatLogprobs } from './logprobs.js';
import type { ModelTable, Served } from './models.js';
import { generateOptions, requestsPerPrompt, type GenerationBody } from './params.js';

interface BodyMessage {
  role: 'system' | 'developer' | 'user' | 'assistant';
  content?: string | { type: 'text'; text: string }[] | null;
  name?: string;
}

export interface ChatBody extends GenerationBody {
  messages: BodyMessage[];
  max_completion_tokens?: number | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
  response_format?: { type: string } | null;
  tools?: unknown[];
  tool_choice?: unknown;
  functions?: unknown[];
  function_call?: unknown;
  parallel_tool_calls?: boolean;
  chat_template_kwargs?: Record<string, unknown>;
}

const templates = new WeakMap<Served, Template | null>();

function templateOf(served: Served): Template {
  if (!templates.has(served)) templates.set(served, parseTemplate(served.generator!.tokenizer.chatTemplate()));
  const t = templates.get(served)!;
  if (!t) throw badRequest(`${served.id} has no chat template (tokenizer_config.json's chat_template, or the GGUF's tokenizer.chat_template); use /v1/completions`, 'model', 'no_chat_template');
  return t;
}

function refuseUnsupported(b: ChatBody): void {
  if (b.tools?.length || b.functions?.length) throw badRequest('tools and functions are not supported by Peregrine\'s server', b.tools?.length ? 'tools' : 'functions');
  for (const k of ['tool_choice', 'function_call'] as const) {
    if (b[k] !== undefined && b[k] !== null && b[k] !== 'none' && b[k] !== 'auto') throw badRequest(`${k} ${JSON.stringify(b[k])} is not supported: no tools are served`, k);
  }
  if (b.response_format && b.response_format.type !== 'text') throw badRequest(`response_format ${JSON.stringify(b.response_format.type)} is not supported (only "text"): Peregrine does not constrain output to a schema`, 'response_format');
  if (b.truncate) throw badRequest('truncate is not supported for chat: cutting the rendered conversation would cut the template\'s framing; send fewer or shorter messages', 'truncate');
  if (b.max_tokens != null && b.max_completion_tokens != null && b.max_tokens !== b.max_completion_tokens) {
    throw badRequest(`max_tokens ${b.max_tokens} and max_completion_tokens ${b.max_completion_tokens} disagree; give one`, 'max_completion_tokens');
  }
  if (b.top_logprobs != null && !b.logprobs) throw badRequest('top_logprobs needs logprobs: true', 'top_logprobs');
}

/** The messages as templates take them: developer is system, text parts joined. */
function messagesOf(b: ChatBody): Message[] {
  return b.messages.map((m) => ({
    role: m.role === 'developer' ? 'system' : m.role,
    content: typeof m.content === 'string' ? m.content : (m.content ?? []).map((p) => p.text).join(''),
    ...(m.name !== undefined ? { name: m.name } : {}),
  }));
}

export async function chatCompletions(state: ServerState, models: ModelTable, body: ChatBody, reply: FastifyReply): Promise<unknown> {
  const served = models.pick(body.model, 'causal-lm', '/v1/chat/completions');
  const gen = served.generator as TextGenerator;
  refuseUnsupported(body);
  // a template that does not parse is the model's fault (500); one that refuses these messages is the request's
  const template = templateOf(served);
  let text: string;
  try {
    text = renderChat(template, gen.tokenizer, messagesOf(body), true, body.chat_template_kwargs ?? {});
  } catch (err) {
    // a template raising on the messages (roles that do not alternate, say) refuses them
    if (err instanceof PeregrineError) throw badRequest(`${served.id}'s chat template refused the messages: ${err.message.replace(/^the tokenizer's chat template failed to render /, '')}`, 'messages');
    throw err;
  }
  // the template writes the special tokens (a begin-of-text token, the role markers)
  const ids = gen.tokenizer.encode(text, false);
  if (ids.length === 0) throw badRequest('the messages render to no tokens', 'messages');
  const room = Math.min(gen.model.info.maxPositions, gen.runtime.limits.maxSeqLen) - ids.length;
  const asked = body.max_completion_tokens ?? body.max_tokens ?? null;
  if (asked === null && room < 1) {
    throw badRequest(`the messages take ${ids.length} tokens, which leaves no room to answer in the model's ${ids.length + room}; send fewer or shorter messages`, 'messages', 'context_length_exceeded');
  }
  const top = body.logprobs ? body.top_logprobs ?? 0 : null;
  const options = generateOptions(body, gen, asked ?? room, top);
  const tok = gen.tokenizer;
  const shape: Shape = {
    object: 'chat.completion',
    chunkObject: 'chat.completion.chunk',
    idPrefix: 'chatcmpl',
    opening: (choice) => ({ index: choice, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }),
    tokens: (choice, events) => {
      const text = events.length === 1 ? events[0].text : events.map((e) => e.text).join('');
      const last = events[events.length - 1];
      return {
        index: choice, delta: text ? { content: text } : {},
        logprobs: top === null ? null : chatLogprobs(tok, { ids: events.map((e) => e.id), logprobs: events.map((e) => e.logprob!), top: last.topLogprobs ? events.map((e) => e.topLogprobs!) : undefined }),
        finish_reason: last.finishReason ? finishReason(last.finishReason) : null,
      };
    },
    finished: (choice, r) => ({
      index: choice, message: { role: 'assistant', content: r.text },
      logprobs: r.logprobs ? chatLogprobs(tok, r.logprobs) : null,
      finish_reason: finishReason(r.finishReason),
    }),
  };
  return answer(state, { served, prompts: [ids], perPrompt: requestsPerPrompt(body), options, stream: body.stream === true, includeUsage: body.stream_options?.include_usage === true, interval: state.streamInterval }, shape, reply);
}
