// POST /v1/completions: prompts as text or token ids, n choices each, echo, log-probs in the legacy shape.
import type { FastifyReply } from 'fastify';
import type { TextGenerator } from '../engine/generation.js';
import { completionLogprobs, type TokenLogprobs } from './logprobs.js';
import { badRequest } from './errors.js';
import { answer, finishReason, type ServerState, type Shape } from './generate.js';
import type { ModelTable } from './models.js';
import { generateOptions, requestsPerPrompt, type GenerationBody } from './params.js';

export interface CompletionBody extends GenerationBody {
  prompt: string | string[] | number[] | number[][];
  logprobs?: number | null;
  echo?: boolean | null;
  suffix?: string | null;
  best_of?: number | null;
}

/** OpenAI's default for completions. */
const DEFAULT_MAX_TOKENS = 16;

function promptList(p: CompletionBody['prompt']): { texts: string[] | null; ids: number[][] | null } {
  if (typeof p === 'string') return { texts: [p], ids: null };
  if (typeof p[0] === 'string') return { texts: p as string[], ids: null };
  if (typeof p[0] === 'number') return { texts: null, ids: [p as number[]] };
  return { texts: null, ids: p as number[][] };
}

/** An echoed prompt's log-probs followed by the completion's (with max_tokens 0, the prompt's alone). */
function joined(prompt: TokenLogprobs, completion: TokenLogprobs | null): TokenLogprobs {
  if (!completion) return prompt;
  return {
    ids: [...prompt.ids, ...completion.ids], logprobs: [...prompt.logprobs, ...completion.logprobs],
    top: prompt.top && completion.top ? [...prompt.top, ...completion.top] : undefined,
  };
}

export async function completions(state: ServerState, models: ModelTable, body: CompletionBody, reply: FastifyReply): Promise<unknown> {
  const served = models.pick(body.model, 'causal-lm', '/v1/completions');
  const gen = served.generator as TextGenerator;
  if (body.suffix) throw badRequest('suffix is not supported: Peregrine\'s models continue text, they do not fill in the middle', 'suffix');
  const n = body.n ?? 1;
  if (body.best_of !== undefined && body.best_of !== null && body.best_of !== n) {
    throw badRequest(`best_of ${body.best_of} is not supported (only best_of equal to n, ${n}); ask for n choices, or beam search with num_beams`, 'best_of');
  }
  const top = body.logprobs ?? null;
  // echo with logprobs scores the prompt too (the usual way to ask for a text's log-likelihood, with max_tokens 0)
  const scorePrompt = body.echo === true && top !== null;
  if (body.max_tokens === 0 && !scorePrompt) throw badRequest('max_tokens 0 only scores the prompt: it needs echo with logprobs', 'max_tokens');
  if (scorePrompt && body.stream) throw badRequest('echo with logprobs is answered in one JSON body (the prompt\'s log-probs come with the result); set stream to false', 'stream');
  const options = generateOptions(body, gen, body.max_tokens ?? DEFAULT_MAX_TOKENS, top);
  if (scorePrompt) options.promptLogprobs = true;
  const list = promptList(body.prompt);
  const prompts = list.ids ?? gen.encodePrompts(list.texts!, gen.checkOptions(options));
  const echoes = body.echo ? (list.texts ?? prompts.map((ids) => gen.tokenizer.decode(ids, false))) : null;
  const tok = gen.tokenizer;
  const offsets = new Map<number, number>();
  const promptOf = (choice: number) => Math.floor(choice / n);
  const echoed = (choice: number) => echoes?.[promptOf(choice)] ?? '';
  const shape: Shape = {
    object: 'text_completion',
    chunkObject: 'text_completion',
    idPrefix: 'cmpl',
    opening: (choice) => (echoes ? { index: choice, text: echoed(choice), logprobs: null, finish_reason: null } : null),
    tokens: (choice, events) => {
      const at = offsets.get(choice) ?? echoed(choice).length;
      const text = events.length === 1 ? events[0].text : events.map((e) => e.text).join('');
      offsets.set(choice, at + text.length);
      const last = events[events.length - 1];
      return {
        index: choice, text,
        logprobs: top === null ? null : completionLogprobs(tok, { ids: events.map((e) => e.id), logprobs: events.map((e) => e.logprob!), top: last.topLogprobs ? events.map((e) => e.topLogprobs!) : undefined }, at),
        finish_reason: last.finishReason ? finishReason(last.finishReason) : null,
      };
    },
    finished: (choice, r) => ({
      index: choice, text: echoed(choice) + r.text,
      logprobs: r.prompt ? completionLogprobs(tok, joined(r.prompt, r.logprobs), 0) : r.logprobs ? completionLogprobs(tok, r.logprobs, echoed(choice).length) : null,
      finish_reason: finishReason(r.finishReason),
    }),
  };
  return answer(state, { served, prompts, perPrompt: requestsPerPrompt(body), options, stream: body.stream === true, includeUsage: body.stream_options?.include_usage === true, interval: state.streamInterval }, shape, reply);
}
