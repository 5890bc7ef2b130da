// peregrine chat: an interactive conversation on stdin/stdout whose KV cache stays between turns; each
// line is a user message, the reply streams as it is produced.
import { createInterface } from 'node:readline';
import { Chat } from '../engine/chat.js';
import type { TextGenerator } from '../engine/generation.js';
import type { GenerateOptions } from '../engine/options.js';
import { PeregrineError } from '../errors.js';

export async function runChat(gen: TextGenerator, opts: GenerateOptions, system?: string): Promise<void> {
  let chat = new Chat(gen, system);
  const tty = process.stdin.isTTY === true;
  if (tty) process.stderr.write(`peregrine chat: ${chat.hasTemplate ? 'chat template' : 'no chat template: plain text continuation'}; Ctrl-D ends\n> `);
  const lines = createInterface({ input: process.stdin, terminal: false });
  for await (const line of lines) {
    if (line.trim() !== '') {
      try {
        for await (const e of chat.send(line, opts)) process.stdout.write(e.text);
        process.stdout.write('\n');
      } catch (err) {
        // a conversation grown past its limit starts over; other errors end the command
        if (!(err instanceof PeregrineError && /beyond its limit/.test(err.message))) throw err;
        process.stderr.write(`peregrine: ${err.message}; starting over\n`);
        chat.close();
        chat = new Chat(gen, system);
      }
    }
    if (tty) process.stderr.write('> ');
  }
  chat.close();
}
