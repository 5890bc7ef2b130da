// Building a tokenizer's vocabulary tables for @huggingface/tokenizers without its start-up cost. The
// library turns the vocabulary into a Map through Object.entries, and ranks BPE merges by splitting every
// merge string and keying a Map by JSON.stringify([left, right]): for GPT-2 (50k tokens, 50k merges) that
// is most of a CLI call's start-up. Here the library builds the tokenizer without vocabulary and merges,
// and the model then gets the same tables, built from the parsed strings without new ones: token -> id
// over Object.keys, and merge ranks keyed by the merge strings themselves, looked up through the
// library's own JSON key.
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';

type Json = Record<string, unknown>;

/** The fields of the library's WordPiece and BPE models that hold the vocabulary. */
interface VocabModel {
  tokens_to_ids: Map<string, number>;
  vocab: string[];
  unk_token_id?: number;
  bpe_ranks?: Map<string, number>;
}

/**
 * BPE merge ranks as the library looks them up (`get(JSON.stringify([left, right]))`), over the merges as
 * tokenizer.json lists them: "left right" strings, or [left, right] pairs. The table is built on the
 * first lookup.
 */
class MergeRanks {
  private table: Map<string, number> | null = null;

  private readonly strings: boolean;

  constructor(private readonly merges: readonly unknown[]) {
    // the library's test: pairs when the first merge is an array, else strings, which it splits (and so
    // throws on anything else)
    this.strings = !Array.isArray(merges[0]);
    if (this.strings) for (const m of merges) if (typeof m !== 'string') throw new Error(`merge ${JSON.stringify(m)} is not a "left right" string`);
  }

  get(key: string): number | undefined {
    const pair = JSON.parse(key) as [string, string];
    const table = (this.table ??= this.build());
    if (this.strings) {
      // the library splits "left right" at spaces, so its pieces never hold one
      if (pair[0].includes(' ') || pair[1].includes(' ')) return undefined;
      return table.get(`${pair[0]} ${pair[1]}`);
    }
    return table.get(pairKey(pair[0], pair[1]));
  }

  private build(): Map<string, number> {
    const table = new Map<string, number>();
    const merges = this.merges;
    for (let i = 0; i < merges.length; i++) {
      const m = merges[i];
      if (typeof m === 'string') {
        const first = m.indexOf(' ');
        if (first < 0) continue; // one piece: never looked up as a pair
        const second = m.indexOf(' ', first + 1);
        // as the library's split(' ', 2): a third piece is dropped
        table.set(second < 0 ? m : m.slice(0, second), i);
      } else if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') {
        table.set(pairKey(m[0], m[1]), i);
      }
    }
    return table;
  }
}

/** A key for a pair whose pieces may hold any character: the left piece's length first. */
function pairKey(left: string, right: string): string {
  return `${left.length}:${left}${right}`;
}

function isVocabModel(m: unknown): m is VocabModel {
  const v = m as VocabModel;
  return v.tokens_to_ids instanceof Map && Array.isArray(v.vocab);
}

/** The library's tokenizer over tokenizer.json and tokenizer_config.json, its vocabulary tables built fast for WordPiece and BPE. */
export function createHfTokenizer(json: Json, config: Json): HfTokenizer {
  const model = json.model as Json | undefined;
  const vocab = model?.vocab;
  const kind = model?.type;
  const plain = vocab === null || typeof vocab !== 'object' || Array.isArray(vocab) || (kind !== 'BPE' && kind !== 'WordPiece') || (kind === 'BPE' && !Array.isArray(model!.merges));
  if (plain) return new HfTokenizer(json, config);
  const stripped = kind === 'BPE' ? { ...model, vocab: {}, merges: [] } : { ...model, vocab: {} };
  const tok = new HfTokenizer({ ...json, model: stripped }, config);
  const m = (tok as unknown as { model: unknown }).model;
  if (!isVocabModel(m) || (kind === 'BPE' && !(m.bpe_ranks instanceof Map))) return new HfTokenizer(json, config);

  const entries = vocab as Record<string, number>;
  const keys = Object.keys(entries);
  const ids = new Map<string, number>();
  const tokens = new Array<string>(keys.length);
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i], id = entries[k];
    ids.set(k, id);
    tokens[id] = k;
  }
  const unk = ids.get(model!.unk_token as string);
  // what the library's constructor put into the empty tables: the added tokens, which override
  for (const [k, id] of m.tokens_to_ids) {
    ids.set(k, id);
    tokens[id] = k;
  }
  m.tokens_to_ids = ids;
  m.vocab = tokens;
  m.unk_token_id = unk;
  if (kind === 'BPE') m.bpe_ranks = new MergeRanks(model!.merges as unknown[]) as unknown as Map<string, number>;
  return tok;
}
