// Architectures by Hugging Face class name. Adding one is one model file and one line here.
import { fail, show } from '../errors.js';
import { bart, marian, mbart } from './bart.js';
import { bert, roberta, xlmRoberta } from './bert.js';
import { distilbert } from './distilbert.js';
import { gpt2 } from './gpt2.js';
import { llama, mistral, qwen2, qwen3 } from './llama.js';
import type { Architecture } from './model.js';
import { t5 } from './t5.js';

const ARCHITECTURES: Architecture[] = [gpt2, bert, roberta, xlmRoberta, distilbert, llama, mistral, qwen2, qwen3, bart, mbart, marian, t5];

export function supportedClassNames(): string[] {
  return ARCHITECTURES.flatMap((a) => a.classNames);
}

/** The architecture config.json names (its "architectures" list, else its "model_type"), and the class name used. */
export function findArchitecture(config: Record<string, unknown>, where: string): { arch: Architecture; className: string } {
  const listed = config.architectures;
  if (listed !== undefined && !(Array.isArray(listed) && listed.every((x) => typeof x === 'string'))) {
    fail('bad-config', `${where}: "architectures" must be a list of class names`);
  }
  const names = (listed as string[] | undefined) ?? [];
  for (const name of names) {
    const arch = ARCHITECTURES.find((a) => a.classNames.includes(name));
    if (arch) return { arch, className: name };
  }
  const type = config.model_type;
  if (names.length === 0 && typeof type === 'string') {
    const arch = ARCHITECTURES.find((a) => a.modelTypes.includes(type));
    if (arch) return { arch, className: arch.classNames[0] };
  }
  const what = names.length ? `architecture ${names.join(', ')}` : `model_type ${show(type)}`;
  return fail('unknown-architecture', `${where}: ${what} is not supported; Peregrine runs ${supportedClassNames().join(', ')}`);
}
