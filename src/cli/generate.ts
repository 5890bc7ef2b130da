// peregrine generate: one prompt streams its text as it is produced; several prompts print one line each
// (prefixed by the prompt's index) or one JSON object each, as they finish.
import type { GenerationResult, TextGenerator } from '../engine/generation.js';
import type { GenerateOptions } from '../engine/options.js';
import { fail } from '../errors.js';

export function resultJson(index: number, r: GenerationResult): string {
  return JSON.stringify({ index, ...r });
}

function writeOut(s: string): void {
  process.stdout.write(s);
}

export async function runGenerate(gen: TextGenerator, prompts: string[], opts: GenerateOptions, json: boolean): Promise<void> {
  const beams = (opts.numBeams ?? 1) > 1;
  if (opts.promptLogprobs && !json) fail('bad-argument', '--prompt-logprobs are printed with --json; add --json');
  if (prompts.length === 1 && !json && !beams) {
    for await (const e of gen.stream(prompts, opts)) writeOut(e.text);
    writeOut('\n');
    return;
  }
  // every prompt and option is checked before anything is printed
  const spec = gen.checkOptions(opts);
  gen.checkPrompts(gen.encodePrompts(prompts, spec), spec);
  // each prompt is its own call, so that each line goes out the moment its prompt finishes
  const failures: Error[] = [];
  await Promise.all(prompts.map(async (p, i) => {
    try {
      const r = await gen.generate(p, opts);
      if (json) writeOut(resultJson(i, r) + '\n');
      else writeOut(`${prompts.length > 1 ? `[${i}] ` : ''}${r.text.replace(/\n/g, '\\n')}\n`);
    } catch (err) {
      failures.push(err as Error);
    }
  }));
  if (failures.length) throw failures[0];
}
