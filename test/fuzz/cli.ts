// Fuzzing the command line: random argument lists of real and unknown flags with hostile values.
// cli-flags parses them in process with the commands' own flag definitions (src/cli/flags.ts) and takes
// what parses through the request checks and a load plan; cli-spawn runs the peregrine command itself.
// Either way the answer is a one-line refusal or a result, never an internal error or a stack.
import { AssertionError } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import fc from 'fast-check';
import { common, generateOptions, generationFlags, loadOptions, runtimeFlags, type CommonFlags, type GenerationFlags } from '../../src/cli/flags.js';
import { inspectModel } from '../../src/engine/load.js';
import { checkOptions } from '../../src/engine/options.js';
import { Tokenizer } from '../../src/tokenizers/tokenizer.js';
import { CLI, fixture } from '../helpers/fixtures.js';
import { inCaseDir, knownDefect, note, noteOutcome, outcomeOrKnown, syncOutcome, writeFiles, type Target } from './harness.js';
import { gpt2Tokenizer, tokenizerFiles } from './seeds.js';

function fail(message: string): never {
  throw new AssertionError({ message });
}

const FLAGS = ['-m', '--model', '-d', '--device', '--dtype', '--offline', '--max-batch', '--max-seq-len', '--prefill-chunk', '--kv-blocks', '-n', '--max-new-tokens',
  '--min-new-tokens', '-t', '--temperature', '-k', '--top-k', '--top-p', '--top-p-decay', '--top-p-min', '--top-p-reset-ids', '--min-p', '-s', '--seed',
  '--repetition-penalty', '--presence-penalty', '--frequency-penalty', '--bad-words', '--stop', '--eos-token-id', '--ignore-eos', '--num-beams', '--length-penalty',
  '--early-stopping', '--num-return-sequences', '--diversity-rate', '--logprobs', '--top-logprobs', '-p', '--prompt', '--json', '--system', '--pooling', '--normalize',
  '--help', '-h', '--version', '-V', '--revision', '--prompt-file', '--truncate'];

/** Argument values: numbers in every spelling, and strings that are not numbers at all (no line breaks: a shell argument with one is the user's own). */
const VALUES = ['0', '-0', '1', '-1', '2', '3', '8', '16', '63', '64', '65', '1.5', '0.5', '1e3', '1e-9', '1e309', '-1e309', 'NaN', 'Infinity', '-Infinity', '0x10',
  '0b1', '0o7', '1_000', ' 1', '1 ', '', ' ', '9007199254740991', '9007199254740993', '99999999999999999999', '4294967295', '4294967296', '100000', '2147483648',
  'true', 'false', 'never', 'cpu', 'cuda', 'auto', 'f16', 'f32', 'bf16', 'cls', 'mean', 'x', 'hello world', '-', '--', '-x', 'a\u0000b', 'ü', '😀', 'x'.repeat(300),
  '<|endoftext|>', '.', '..', '/', '/etc/passwd', 'gpt2', 'openai-community/gpt2', 'some-org/not-cached@main', 'left', 'right'];

type Token = { flag: string; value: string | null; joined: boolean } | { positional: string };

const token: fc.Arbitrary<Token> = fc.oneof(
  {
    arbitrary: fc.record({
      flag: fc.oneof({ arbitrary: fc.constantFrom(...FLAGS), weight: 9 }, { arbitrary: fc.constantFrom('--bogus', '-z', '--no-json', '--top_k', '--MAX-BATCH', '---x'), weight: 1 }),
      value: fc.oneof({ arbitrary: fc.constantFrom(...VALUES), weight: 4 }, { arbitrary: fc.constant(null), weight: 1 }, { arbitrary: fc.string({ maxLength: 6 }), weight: 1 }),
      joined: fc.boolean(),
    }),
    weight: 6,
  },
  { arbitrary: fc.record({ positional: fc.constantFrom(...VALUES) }), weight: 1 },
);

function argv(tokens: Token[]): string[] {
  return tokens.flatMap((t) => 'positional' in t ? [t.positional] : t.value === null ? [t.flag] : t.joined && t.flag.startsWith('--') ? [`${t.flag}=${t.value}`] : [t.flag, t.value]);
}

// ---------------------------------------------------------------------------------- in-process parse

export interface FlagsInput {
  model: boolean;
  tokens: Token[];
}

let tokenizer: Tokenizer | null = null;
function smallTokenizer(): Tokenizer {
  if (!tokenizer) {
    const dir = mkdtempSync(join(tmpdir(), 'peregrine-fuzz-tok-'));
    writeFiles(dir, tokenizerFiles(gpt2Tokenizer()));
    tokenizer = Tokenizer.fromDir(dir);
    rmSync(dir, { recursive: true, force: true });
  }
  return tokenizer;
}

async function checkFlags(input: FlagsInput): Promise<void> {
  const args = [...(input.model ? ['-m', fixture('gpt2-tiny')] : []), ...argv(input.tokens)];
  const cmd = generationFlags(runtimeFlags(common(new Command('generate'))))
    .exitOverride()
    .configureOutput({ writeOut: () => {}, writeErr: () => {} })
    .action(() => {});
  try {
    cmd.parse(args, { from: 'user' });
  } catch (err) {
    if (!(err instanceof CommanderError)) fail(`parsing ${JSON.stringify(args)} threw ${(err as Error)?.stack ?? err}`);
    note(`parse: ${err.code}`);
    // commander puts "(Did you mean ...?)" on a line of its own; the message itself must be one line
    if (/[\r\n]/.test(err.message.replace(/\n\(Did you mean [^\n]*\?\)$/, ''))) fail(`a parse error of more than one line: ${JSON.stringify(err.message)}`);
    return;
  }
  note('parse: ok');
  const o = cmd.opts<CommonFlags & GenerationFlags>();
  const spec = syncOutcome(() => checkOptions(generateOptions(o), 50257, [50256], smallTokenizer()));
  noteOutcome('options', spec);
  const plan = await outcomeOrKnown('plan', () => inspectModel(o.model, loadOptions(o)));
  if (plan) noteOutcome('plan', plan);
}

export const cliFlagsTarget: Target<FlagsInput> = {
  name: 'cli-flags',
  quick: 300,
  arbitrary: fc.record({ model: fc.oneof({ arbitrary: fc.constant(true), weight: 4 }, { arbitrary: fc.constant(false), weight: 1 }), tokens: fc.array(token, { maxLength: 8 }) }),
  check: (input) => checkFlags(input),
};

// ----------------------------------------------------------------------------------- the real command

export interface SpawnInput {
  command: string;
  model: string | null;
  tokens: Token[];
  stdin: string;
}

const COMMANDS = ['generate', 'chat', 'embed', 'classify', 'inspect', 'bogus', '', '--help', '--version'];

async function checkSpawn(input: SpawnInput, dir: string): Promise<void> {
  const model = input.model === null ? [] : ['-m', input.model.startsWith('fixture:') ? fixture(input.model.slice(8)) : input.model];
  // (an argument of a process cannot hold a NUL byte: cli-flags tries those)
  const args = [...(input.command ? [input.command] : []), ...model, ...argv(input.tokens)].map((a) => a.replaceAll('\u0000', ''));
  const env: NodeJS.ProcessEnv = { ...process.env, PEREGRINE_CACHE: join(dir, 'cache'), PEREGRINE_OFFLINE: '1', PEREGRINE_HUB_URL: 'http://127.0.0.1:9', PEREGRINE_DEVICE: 'cpu', HOME: dir };
  delete env.PEREGRINE_DEBUG;
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env, input: input.stdin, timeout: 120_000, cwd: dir });
  const what = `peregrine ${JSON.stringify(args)}`;
  if (r.error) fail(`${what} did not finish: ${r.error.message}`);
  note(`exit ${r.status ?? r.signal}`);
  const known = knownDefect(r.stderr);
  if (known && (/internal error/.test(r.stderr) || r.signal === 'SIGTRAP' || r.signal === 'SIGABRT')) {
    note(`KNOWN (${known})`);
    return;
  }
  if (r.signal) fail(`${what} was killed by ${r.signal}: ${r.stderr.trim().split('\n').slice(0, 3).join(' | ')}`);
  if (/internal error|\n\s+at .+:\d+:\d+/.test(r.stderr)) fail(`${what} failed inside: ${r.stderr.trim().split('\n')[0]}`);
  if (r.status !== 0 && r.status !== 1) fail(`${what} exited with ${r.status}: ${r.stderr.trim().split('\n')[0]}`);
  if (r.status === 1) {
    const lines = r.stderr.trim().replace(/\n\(Did you mean [^\n]*\?\)$/, '').split('\n');
    // an error that follows output the command already gave (a generation that ran, then a refusal) is the last line
    if (lines.length !== 1 || !lines[0].startsWith('peregrine: ')) fail(`${what} refused with ${lines.length} lines on stderr: ${JSON.stringify(r.stderr.slice(0, 300))}`);
  }
}

export const cliSpawnTarget: Target<SpawnInput> = {
  name: 'cli-spawn',
  quick: 2,
  arbitrary: fc.record({
    command: fc.oneof({ arbitrary: fc.constantFrom('generate', 'inspect', 'embed', 'classify'), weight: 6 }, { arbitrary: fc.constantFrom(...COMMANDS), weight: 1 }),
    model: fc.oneof(
      { arbitrary: fc.constantFrom('fixture:gpt2-tiny', 'fixture:bert-tiny'), weight: 5 },
      { arbitrary: fc.constantFrom<string | null>(null, 'gpt2', 'fixtures/gpt2-tny', 'a\u0000b', '', '/', 'x'.repeat(5000)), weight: 1 },
    ),
    tokens: fc.array(token, { maxLength: 6 }),
    stdin: fc.constantFrom('', 'hello\n', '\n\n', 'a\nb\n'),
  }),
  check: (input) => inCaseDir((dir) => checkSpawn(input, dir)),
};
