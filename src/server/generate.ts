// What /v1/completions and /v1/chat/completions share: admit the choices, then answer with one JSON body or
// a stream of chunks; usage counts each prompt once and every choice's tokens. The endpoints differ only in
// how a choice looks (a Shape).
import { randomUUID } from 'node:crypto';
import type { FastifyReply } from 'fastify';
import type { GenerateOptions } from '../engine/options.js';
import type { FinishReason, GenerationResult, TokenEvent } from '../engine/request.js';
import { AdmittedChoices, clientGone, type Admission } from './choices.js';
import type { TokenLogprobs } from './logprobs.js';
import type { Metrics } from './metrics.js';
import type { Served } from './models.js';
import { EventStream } from './sse.js';

/** A finished choice, sampled or a beam. */
export interface ChoiceResult {
  text: string;
  finishReason: FinishReason;
  tokens: number;
  logprobs: TokenLogprobs | null;
  /** with prompt log-probs (completions' echo with logprobs): the prompt's tokens, the first with none */
  prompt: TokenLogprobs | null;
}

/** How an endpoint writes its choices. */
export interface Shape {
  object: string;
  chunkObject: string;
  idPrefix: string;
  /** a choice's first chunk, before its tokens (chat: the assistant role; completions: the echoed prompt) */
  opening(choice: number): Record<string, unknown> | null;
  /** a chunk's choice for one or more consecutive tokens of a choice (several: the stream interval) */
  tokens(choice: number, events: TokenEvent[]): Record<string, unknown>;
  /** a finished choice in the JSON body */
  finished(choice: number, r: ChoiceResult): Record<string, unknown>;
}

export interface GenerationCall {
  served: Served;
  prompts: number[][];
  /** choices per prompt */
  perPrompt: number;
  options: GenerateOptions;
  stream: boolean;
  includeUsage: boolean;
  /** a stream sends a choice's tokens this many at a time (and at its end) */
  interval: number;
}

export interface ServerState {
  admission: Admission;
  metrics: Metrics;
  /** tokens per stream chunk (each choice's last chunk may hold fewer) */
  streamInterval: number;
}

export const finishReason = (r: FinishReason): 'stop' | 'length' => (r === 'length' ? 'length' : 'stop');

/** Each choice's result: a sampled choice as it ran, beam search's best beams in order. */
function choiceResults(results: GenerationResult[], prompts: number[][], perPrompt: number): ChoiceResult[] {
  const promptOf = (choice: number) => Math.floor(choice / perPrompt);
  const out: ChoiceResult[] = [];
  for (const r of results) {
    if (r.sequences) {
      for (const s of r.sequences) out.push({ text: s.text, finishReason: r.finishReason, tokens: s.ids.length, logprobs: null, prompt: null });
    } else {
      out.push({
        text: r.text, finishReason: r.finishReason, tokens: r.ids.length, logprobs: r.logprobs ? { ids: r.ids, logprobs: r.logprobs, top: r.topLogprobs } : null,
        prompt: r.promptLogprobs ? { ids: prompts[promptOf(out.length)], logprobs: r.promptLogprobs, top: r.promptTopLogprobs } : null,
      });
    }
  }
  return out;
}

export async function answer(state: ServerState, call: GenerationCall, shape: Shape, reply: FastifyReply): Promise<unknown> {
  const admitted = AdmittedChoices.admit(call.served, call.prompts, call.perPrompt, call.options, state.admission, state.metrics);
  const head = { id: `${shape.idPrefix}-${randomUUID().replaceAll('-', '')}`, created: Math.floor(Date.now() / 1000), model: call.served.id };
  const promptTokens = call.prompts.reduce((a, p) => a + p.length, 0);
  const usage = (choices: number) => ({ prompt_tokens: promptTokens, completion_tokens: choices, total_tokens: promptTokens + choices });
  const signal = clientGone(reply.raw);
  if (!call.stream) {
    const results = choiceResults(await admitted.run(signal, null), call.prompts, call.perPrompt);
    return { ...head, object: shape.object, choices: results.map((r, i) => shape.finished(i, r)), usage: usage(results.reduce((a, r) => a + r.tokens, 0)) };
  }
  const stream = new EventStream(reply);
  // every chunk has the same head: serialized once, a token costs the serialization of its choice only
  const chunkHead = JSON.stringify({ ...head, object: shape.chunkObject }).slice(0, -1) + ',"choices":[';
  const chunk = (choice: Record<string, unknown>) => stream.sendJson(`${chunkHead}${JSON.stringify(choice)}]}`);
  let generated = 0;
  const opened = new Set<number>();
  const pending = new Map<number, TokenEvent[]>();
  try {
    await admitted.run(signal, (choice, e) => {
      if (!opened.has(choice)) {
        opened.add(choice);
        const first = shape.opening(choice);
        if (first) chunk(first);
      }
      generated++;
      if (call.interval === 1) {
        chunk(shape.tokens(choice, [e]));
        return;
      }
      const held = pending.get(choice) ?? [];
      held.push(e);
      if (held.length < call.interval && e.finishReason === undefined) {
        pending.set(choice, held);
        return;
      }
      pending.delete(choice);
      chunk(shape.tokens(choice, held));
    });
    if (call.includeUsage) stream.send({ ...head, object: shape.chunkObject, choices: [], usage: usage(generated) });
    stream.end();
  } catch (err) {
    stream.fail(err);
  }
  return reply;
}
