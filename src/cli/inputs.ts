// Inputs of embed/classify: the arguments, or one text per line of stdin.
import { text } from 'node:stream/consumers';
import { fail } from '../errors.js';

export async function readInputs(args: string[]): Promise<string[]> {
  if (args.length > 0) return args;
  if (process.stdin.isTTY) fail('bad-request', 'no input texts; pass them as arguments or one per line on stdin');
  const lines = (await text(process.stdin)).split(/\r?\n/).filter((l) => l.trim() !== '');
  if (lines.length === 0) fail('bad-request', 'stdin held no input texts; give one text per line');
  return lines;
}
