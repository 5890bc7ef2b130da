// A conversation over a session: messages rendered with the tokenizer's chat template (@huggingface/jinja),
// each turn sending only the text the template adds, so the session's KV cache carries the rest. Models
// without a template continue plain text, one line per user message.
import { Template } from '@huggingface/jinja';
import { fail } from '../errors.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';
import type { CallOptions, TextGenerator } from './generation.js';
import type { GenerationResult, TokenEvent } from './request.js';
import type { Session } from './session.js';

export interface Message {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export class Chat {
  private session: Session;
  private readonly template: Template | null;
  readonly messages: Message[] = [];
  /** the text the session holds (rendered prompt and replies) */
  private said = '';
  private endedWithEos = false;

  constructor(private readonly gen: TextGenerator, system?: string) {
    this.template = parseTemplate(gen.tokenizer.chatTemplate());
    if (system) this.messages.push({ role: 'system', content: system });
    this.session = gen.session();
  }

  get hasTemplate(): boolean {
    return this.template !== null;
  }

  private render(addGenerationPrompt: boolean): string {
    return renderChat(this.template!, this.gen.tokenizer, this.messages, addGenerationPrompt);
  }

  /** The text this turn adds to the session (restarting the session if the template rewrote earlier turns). */
  private delta(user: string): string {
    if (!this.template) {
      const text = `${this.said ? '\n' : ''}${user}\n`;
      this.said += text;
      return text;
    }
    const full = this.render(true);
    let rest: string | null = full.startsWith(this.said) ? full.slice(this.said.length) : null;
    const eos = this.gen.tokenizer.specialToken('eos_token');
    // the end token that closed the last reply is in the session already (as a token, not as text)
    if (rest !== null && this.endedWithEos && eos && rest.startsWith(eos)) rest = rest.slice(eos.length);
    if (rest === null) {
      this.session.close();
      this.session = this.gen.session();
      rest = full;
    }
    this.said = full;
    return rest;
  }

  /** One user message; the reply streams as events and joins the conversation. */
  async *send(user: string, options: CallOptions = {}): AsyncGenerator<TokenEvent, GenerationResult> {
    this.messages.push({ role: 'user', content: user });
    const text = this.delta(user);
    let reply = '', last: TokenEvent | undefined;
    const ids: number[] = [];
    for await (const e of this.session.stream(text, options)) {
      reply += e.text;
      ids.push(e.id);
      last = e;
      yield e;
    }
    this.messages.push({ role: 'assistant', content: reply });
    this.said += reply;
    this.endedWithEos = last?.finishReason === 'eos';
    return { ids, text: reply, finishReason: last?.finishReason ?? 'length' };
  }

  close(): void {
    this.session.close();
  }
}

/**
 * A conversation as the template writes it. `extra` are more variables for the template (the server's
 * chat_template_kwargs, such as enable_thinking); they cannot replace the messages or the special tokens.
 */
export function renderChat(template: Template, tok: Tokenizer, messages: Message[], addGenerationPrompt: boolean, extra: Record<string, unknown> = {}): string {
  try {
    return template.render({
      ...extra, messages, add_generation_prompt: addGenerationPrompt,
      bos_token: tok.specialToken('bos_token') ?? '', eos_token: tok.specialToken('eos_token') ?? '',
    });
  } catch (err) {
    return fail('bad-config', `the tokenizer's chat template failed to render (${(err as Error).message})`);
  }
}

/** The tokenizer's chat template, parsed (null when it has none). */
export function parseTemplate(source: string | null): Template | null {
  if (source === null) return null;
  try {
    return new Template(source);
  } catch (err) {
    return fail('bad-config', `the tokenizer's chat template could not be parsed (${(err as Error).message}); fix chat_template in tokenizer_config.json`);
  }
}
