// Log-probabilities in the two shapes OpenAI returns them: the legacy completions object (parallel lists of
// tokens, log-probs, top alternatives and text offsets) and chat's list of {token, logprob, bytes, top_logprobs}.
import type { TopLogprob } from '../engine/request.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';

export interface TokenLogprobs {
  ids: number[];
  /** null: a token with no log-prob (an echoed prompt's first) */
  logprobs: (number | null)[];
  top: TopLogprob[][] | undefined;
}

const tokenText = (tok: Tokenizer, id: number, text?: string) => text ?? tok.decode([id], false);

/** /v1/completions: `offset` is where the choice's text starts (after an echoed prompt). */
export function completionLogprobs(tok: Tokenizer, t: TokenLogprobs, offset: number) {
  const tokens = t.ids.map((id) => tokenText(tok, id));
  const textOffset: number[] = [];
  let at = offset;
  for (const s of tokens) {
    textOffset.push(at);
    at += s.length;
  }
  return {
    tokens,
    token_logprobs: t.logprobs,
    top_logprobs: t.top ? t.top.map((alts, i) => (t.logprobs[i] === null ? null : Object.fromEntries(alts.map((a) => [tokenText(tok, a.id, a.text), a.logprob])))) : null,
    text_offset: textOffset,
  };
}

/** /v1/chat/completions: each token with its UTF-8 bytes and alternatives. */
export function chatLogprobs(tok: Tokenizer, t: TokenLogprobs) {
  const entry = (id: number, logprob: number, text?: string) => {
    const token = tokenText(tok, id, text);
    return { token, logprob, bytes: Array.from(Buffer.from(token, 'utf8')) };
  };
  return {
    content: t.ids.map((id, i) => ({ ...entry(id, t.logprobs[i]!), top_logprobs: (t.top?.[i] ?? []).map((a) => entry(a.id, a.logprob, a.text)) })),
  };
}
