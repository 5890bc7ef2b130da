// peregrine perplexity: the text file read and checked before the model loads, then the windows' progress on
// stderr and the result on stdout.
import type { TextGenerator } from '../engine/generation.js';
import { readTextFile } from './inputs.js';
import { perplexity, type PerplexityOptions } from '../engine/perplexity.js';

export async function runPerplexity(load: () => Promise<TextGenerator>, file: string, options: PerplexityOptions, json: boolean): Promise<void> {
  const text = await readTextFile(file, '--file');
  const gen = await load();
  try {
    const ids = gen.tokenizer.encode(text);
    const tty = process.stderr.isTTY;
    const r = await perplexity(gen, ids, { ...options, onWindow: (done, total) => tty && process.stderr.write(`\rwindow ${done}/${total}`) });
    if (tty) process.stderr.write('\n');
    process.stdout.write(json ? JSON.stringify(r) + '\n'
      : `perplexity ${r.perplexity.toFixed(4)} (mean NLL ${r.nll.toFixed(6)} nats) over ${r.scored} tokens of ${r.tokens}: ${r.windows} window${r.windows === 1 ? '' : 's'} of at most ${r.context} tokens, stride ${r.stride}\n`);
  } finally {
    gen.dispose();
  }
}
