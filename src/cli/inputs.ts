// Inputs of the commands: prompts from arguments, stdin (-p -) or files; texts of embed/classify from the
// arguments or one per line of stdin.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { text } from 'node:stream/consumers';
import { fail, fsError } from '../errors.js';

/** One trailing line break goes (files and piped text end with one); everything else is kept. */
function withoutFinalNewline(s: string): string {
  return s.replace(/\r?\n$/, '');
}

/** The prompts of -p (where "-" is all of stdin) followed by those of --prompt-file, one prompt each. */
export async function readPrompts(args: string[] = [], files: string[] = []): Promise<string[]> {
  if (args.filter((a) => a === '-').length > 1) fail('bad-argument', '-p - reads stdin, which holds one prompt; give it once');
  const prompts: string[] = [];
  for (const a of args) prompts.push(a === '-' ? withoutFinalNewline(await text(process.stdin)) : a);
  for (const path of files) {
    try {
      prompts.push(withoutFinalNewline(readFileSync(path, 'utf8')));
    } catch (err) {
      throw fsError(err, '--prompt-file', path);
    }
  }
  if (prompts.length === 0) fail('bad-argument', 'no prompt; give one with -p <text>, -p - (stdin) or --prompt-file <path>');
  return prompts;
}

/** The arguments, or one text per line of stdin; an empty line is an input too (the empty text), so outputs match input lines. */
export async function readInputs(args: string[]): Promise<string[]> {
  if (args.length > 0) return args;
  if (process.stdin.isTTY) fail('bad-request', 'no input texts; pass them as arguments or one per line on stdin');
  const all = await text(process.stdin);
  if (all === '') fail('bad-request', 'stdin held no input texts; give one text per line');
  return withoutFinalNewline(all).split(/\r?\n/);
}

/** A whole text file named by `flag` (perplexity's --file, quantize's --calibration): refused when unreadable or blank. */
export async function readTextFile(path: string, flag: string): Promise<string> {
  let s: string;
  try {
    s = await readFile(path, 'utf8');
  } catch (err) {
    return fail('bad-argument', `cannot read ${flag} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (s.trim() === '') fail('bad-argument', `${flag} ${path} holds no text`);
  return s;
}
