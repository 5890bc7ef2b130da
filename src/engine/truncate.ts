// Inputs longer than a model's positions, cut on request: the left side for generation prompts (the end of
// a prompt is what the continuation follows), the right side for embeddings and classification (the start
// of a text usually says what it is about). Special tokens that frame a text ([CLS] ... [SEP]) are kept.
import { fail } from '../errors.js';
import type { Tokenizer } from '../tokenizers/tokenizer.js';

/** Which side of a too-long input is cut: left keeps the end, right keeps the start. */
export type TruncateSide = 'left' | 'right';

export function checkTruncate(v: unknown): TruncateSide | undefined {
  if (v === undefined || v === 'left' || v === 'right') return v;
  return fail('bad-argument', `truncate must be "left" or "right", got ${JSON.stringify(v)}`);
}

/** The special tokens the tokenizer puts before and after a text (its post-processor's template), or null when they cannot be told apart. */
type Frame = { before: number[]; after: number[] } | null;
const frames = new WeakMap<Tokenizer, Frame>();

function frameOf(tokenizer: Tokenizer): Frame {
  if (frames.has(tokenizer)) return frames.get(tokenizer)!;
  const framed = tokenizer.encode('a'), plain = tokenizer.encode('a', false);
  let frame: Frame = null;
  for (let at = 0; at <= framed.length - plain.length && frame === null; at++) {
    if (plain.every((id, i) => framed[at + i] === id)) frame = { before: framed.slice(0, at), after: framed.slice(at + plain.length) };
  }
  frames.set(tokenizer, frame);
  return frame;
}

/**
 * The text's tokens with the tokenizer's special tokens; when `side` is given and they are more than
 * `limit`, the text's own tokens are cut on that side (the special tokens stay), so that `limit` remain.
 * A long text is tokenized once.
 */
export function encodeWithin(tokenizer: Tokenizer, text: string, limit: number, side: TruncateSide | undefined): number[] {
  if (side === undefined || limit < 1) return tokenizer.encode(text);
  const frame = frameOf(tokenizer);
  if (frame === null) {
    const ids = tokenizer.encode(text);
    return ids.length <= limit ? ids : side === 'left' ? ids.slice(ids.length - limit) : ids.slice(0, limit);
  }
  const room = limit - frame.before.length - frame.after.length;
  const plain = tokenizer.encode(text, false);
  if (plain.length <= room || room < 1) return tokenizer.encode(text);
  const kept = side === 'left' ? plain.slice(plain.length - room) : plain.slice(0, room);
  return [...frame.before, ...kept, ...frame.after];
}
