// Flags shared by the commands: parsing numbers with one-line errors, the load options, and every request
// option of generate and chat (named as the runtime's request API names them).
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEVICES, DTYPES, type Device, type FloatDType } from '../backends/select.js';
import type { LoadOptions } from '../engine/load.js';
import type { GenerateOptions } from '../engine/options.js';
import { QUANTIZE_METHODS, type QuantizeMethod } from '../loaders/quantize-methods.js';

export function number(name: string, check: (x: number) => boolean, want: string) {
  return (value: string): number => {
    const x = Number(value);
    if (value.trim() === '' || !Number.isFinite(x) || !check(x)) throw new InvalidArgumentError(`${name} must be ${want}.`);
    return x;
  };
}

export const int = (name: string, min: number) => number(name, (x) => Number.isSafeInteger(x) && x >= min, `a whole number >= ${min}`);

/** A repeatable option: each use adds one value. */
function collect<T>(parse: (v: string) => T) {
  return (value: string, previous: T[] | undefined): T[] => [...(previous ?? []), parse(value)];
}

export interface CommonFlags {
  model: string;
  device: Device;
  dtype?: FloatDType;
  offline?: boolean;
  revision?: string;
  checkUpdates?: boolean;
  hubTimeout?: number;
  maxBatch?: number;
  maxSeqLen?: number;
  prefillChunk?: number;
  kvBlocks?: number;
  swapSpace?: number;
  batchInvariant?: boolean;
  quantize?: QuantizeMethod;
  tensorParallel?: number;
  pipelineParallel?: number;
  nodes?: number;
  nodeRank?: number;
  masterAddr?: string;
  masterPort?: number;
  joinTimeout?: number;
}

function notice(message: string): void {
  process.stderr.write(`peregrine: note: ${message}\n`);
}

export function loadOptions(o: CommonFlags): LoadOptions {
  return { notice, device: o.device, dtype: o.dtype, offline: o.offline, revision: o.revision, checkUpdates: o.checkUpdates, hubTimeout: o.hubTimeout, maxBatch: o.maxBatch, maxSeqLen: o.maxSeqLen, prefillChunk: o.prefillChunk, kvBlocks: o.kvBlocks,
    swapSpace: o.swapSpace === undefined ? undefined : Math.round(o.swapSpace * 2 ** 30), batchInvariant: o.batchInvariant, quantize: o.quantize,
    tensorParallel: o.tensorParallel, pipelineParallel: o.pipelineParallel,
    nodes: (o.nodes ?? 1) > 1 || o.nodeRank !== undefined
      ? { count: o.nodes ?? 1, rank: o.nodeRank ?? 0, masterAddr: o.masterAddr, masterPort: o.masterPort, joinTimeout: o.joinTimeout }
      : undefined };
}

/** The flags every command that loads a model takes; `many`: -m may be repeated (serve). */
export function common(cmd: Command, many = false): Command {
  const model = 'a Hugging Face model directory, a .gguf file, or a hub id such as owner/name[@revision] (downloaded into ~/.cache/peregrine or $PEREGRINE_CACHE)';
  return (many ? cmd.requiredOption('-m, --model <dir|file|hub-id>', `${model}; repeat to serve several`, collect((v: string) => v)) : cmd.requiredOption('-m, --model <dir|file|hub-id>', model))
    .addOption(new Option('-d, --device <device>', 'where to run (auto: the GPU when there is one)').choices(DEVICES).default('auto'))
    .addOption(new Option('--dtype <dtype>', 'compute dtype (default: f16 on the GPU; the CPU computes in f32 whatever is asked)').choices(DTYPES))
    .addOption(new Option('--quantize <method>', 'quantize the linear layers of GPT-2 and Llama-family blocks as they load: int8 (int8 weights, an f16 scale per 32), int4 (4-bit weights, an f16 scale and a zero per 128), fp8 (E4M3 weights, an f32 scale per output channel; GPU: compute capability 8.9 or later)')
      .choices(Object.keys(QUANTIZE_METHODS)))
    .option('--batch-invariant', 'compute every row the same way whatever shares its batch, so that each request gets exactly the tokens it gets alone (the CPU always does; slower prompts on the GPU)')
    .option('--offline', 'use only the local cache for hub ids')
    .option('--revision <rev>', 'the branch, tag or commit of a hub id (default main; also as owner/name@rev)')
    .option('--check-updates', 'ask the hub where the revision points now, even when the model is cached (default: a cached model is used without asking)')
    .option('--hub-timeout <seconds>', 'seconds to wait for the hub to answer, and for each chunk of a download (default 10, or PEREGRINE_HUB_TIMEOUT)',
      number('--hub-timeout', (x) => x > 0, 'a number of seconds > 0'));
}

/** --tensor-parallel and --pipeline-parallel, for the commands that run a causal LM's generator (generate, chat, serve, perplexity). */
export function parallelFlag(cmd: Command): Command {
  return cmd.option('--tensor-parallel <n>', 'split the model over n ranks (threads of this process on the CPU backend, --device cpu; Llama-family models): each holds 1/n of every layer',
    int('--tensor-parallel', 1))
    .option('--pipeline-parallel <n>', 'split the layers into n stages, each run by its own ranks (threads of this process on the CPU backend, --device cpu; Llama-family models); with --tensor-parallel t, n * t ranks',
      int('--pipeline-parallel', 1))
    .option('--nodes <n>', 'spread the ranks over n processes, on this host or others, as torchrun does: run the same command on each with its own --node-rank (CPU backend)', int('--nodes', 1))
    .option('--node-rank <k>', 'this process\'s place among --nodes: 0 (the default) loads the model and runs the command, driving the others; the others run its passes until it ends', int('--node-rank', 0))
    .option('--master-addr <host>', 'where node 0 listens for the other nodes (default 127.0.0.1)')
    .option('--master-port <port>', 'the port node 0 listens on (default 29500)', int('--master-port', 1))
    .option('--join-timeout <seconds>', 'how long node 0 waits for the other nodes to connect, and they for it (default 120)', number('--join-timeout', (x) => x > 0, 'a number of seconds > 0'));
}

/** Memory planned at load: sequences at once, tokens per sequence, prefill chunk, KV blocks. */
export function runtimeFlags(cmd: Command): Command {
  return cmd
    .option('--max-batch <n>', 'sequences that run at once (default 64 on the GPU, 8 on the CPU)', int('--max-batch', 1))
    .option('--max-seq-len <n>', 'tokens per sequence, prompt and generated (default: the model maximum)', int('--max-seq-len', 1))
    .option('--prefill-chunk <n>', 'prompt tokens per forward pass (default 256)', int('--prefill-chunk', 1))
    .option('--kv-blocks <n>', 'blocks of 16 tokens in the KV-cache pool (default: what --max-batch full sequences need, within device memory)', int('--kv-blocks', 2))
    .option('--swap-space <GiB>', 'host memory holding the KV caches of preempted requests until they run again (default 4)', number('--swap-space', (x) => x >= 0, 'a number of GiB >= 0'));
}

/** What commander parses from generationFlags: the request options, with the CLI's own spellings of a few. */
export type GenerationFlags = Omit<GenerateOptions, 'maxNewTokens' | 'eosTokenId' | 'stopAtEos' | 'badWordsIds' | 'truncate'> & TruncateFlags & {
  maxNewTokens: number;
  eosTokenId?: number[];
  ignoreEos?: boolean;
  maxLenA?: number;
  maxLenB?: number;
};

function earlyStopping(v: string): boolean | 'never' {
  if (v === 'true') return true;
  if (v === 'false') return false;
  if (v === 'never') return 'never';
  throw new InvalidArgumentError('--early-stopping must be true, false or never.');
}

export function generationFlags(cmd: Command): Command {
  const any = (name: string) => number(name, () => true, 'a number');
  return cmd
    .option('-n, --max-new-tokens <n>', 'tokens to generate per prompt (0: none, only the prompt\'s log-probs with --prompt-logprobs)', int('--max-new-tokens', 0), 32)
    .option('--min-new-tokens <n>', 'no end token before this many new tokens', int('--min-new-tokens', 0))
    .option('-t, --temperature <t>', 'sampling temperature; 0 is greedy (default: greedy, or 1 with --top-k/--top-p/--min-p)', number('--temperature', (x) => x >= 0, 'a number >= 0'))
    .option('-k, --top-k <k>', 'sample among the k most likely tokens (0: off)', int('--top-k', 0))
    .option('--top-p <p>', 'sample among the most likely tokens holding probability p (1: off)', number('--top-p', (x) => x > 0 && x <= 1, 'in (0, 1]'))
    .option('--top-p-decay <d>', 'after each token, top-p = max(top-p * d, --top-p-min) (FasterTransformer)', number('--top-p-decay', (x) => x > 0 && x <= 1, 'in (0, 1]'))
    .option('--top-p-min <p>', 'the floor of the decayed top-p (default 1e-6)', number('--top-p-min', (x) => x > 0 && x <= 1, 'in (0, 1]'))
    .option('--top-p-reset-ids <id>', 'a token after which top-p returns to its start (repeatable)', collect(int('--top-p-reset-ids', 0)))
    .option('--min-p <p>', 'keep tokens at least p times as likely as the most likely one (0: off)', number('--min-p', (x) => x >= 0 && x <= 1, 'in [0, 1]'))
    .option('-s, --seed <n>', 'sampling seed: the same seed gives the same tokens (default: random)', int('--seed', 0))
    .option('--repetition-penalty <p>', 'divide the logits of tokens already in the text by p (Hugging Face; 1: off)', number('--repetition-penalty', (x) => x >= 1e-6, 'a number >= 1e-6'))
    .option('--presence-penalty <p>', 'subtract p from the logits of generated tokens (OpenAI; -2 .. 2)', number('--presence-penalty', (x) => x >= -2 && x <= 2, 'in [-2, 2]'))
    .option('--frequency-penalty <p>', 'subtract p times the count of each generated token (OpenAI; -2 .. 2)', number('--frequency-penalty', (x) => x >= -2 && x <= 2, 'in [-2, 2]'))
    .option('--bad-words <word>', 'a word never to generate (repeatable)', collect((v: string) => v))
    .option('--stop <text>', 'stop when the text contains this; it is not printed (repeatable)', collect((v: string) => v))
    .option('--eos-token-id <id>', 'an end token, replacing the model\'s own (repeatable)', collect(int('--eos-token-id', 0)))
    .option('--ignore-eos', 'keep generating past end tokens')
    .option('--num-beams <n>', 'beam search with n beams', int('--num-beams', 1))
    .option('--length-penalty <x>', 'beam score = sum of log-probs / length^x (Hugging Face; default 1)', any('--length-penalty'))
    .option('--early-stopping [when]', 'beam search stops when num-beams sequences finished: true, false or never (Hugging Face)', earlyStopping)
    .option('--num-return-sequences <n>', 'beams to return per prompt (at most --num-beams)', int('--num-return-sequences', 1))
    .option('--diversity-rate <x>', 'rank a beam\'s k-th best continuation by score + x * k (FasterTransformer; negative diversifies)', any('--diversity-rate'))
    .option('--logprobs', 'report each token\'s log-probability under the model\'s raw distribution')
    .option('--top-logprobs <k>', 'and the k most likely alternatives per step (0 .. 20)', int('--top-logprobs', 0))
    .option('--prompt-logprobs', 'with --json: each prompt token\'s log-probability given the tokens before it (and --top-logprobs alternatives)')
    .option('--no-repeat-ngram-size <n>', 'no n-gram of n tokens occurs twice (Hugging Face; 0: off)', int('--no-repeat-ngram-size', 0))
    .option('--forced-bos-token-id <id>', 'force the first generated token (mBART\'s target language code)', int('--forced-bos-token-id', 0))
    .option('--forced-eos-token-id <id>', 'force this token when a sequence reaches --max-new-tokens', int('--forced-eos-token-id', 0))
    .option('--decoder-start-token-id <id>', 'encoder-decoder models: the decoder\'s first token (default: the model\'s)', int('--decoder-start-token-id', 0))
    .option('--max-len-a <a>', 'encoder-decoder models: at most a * source tokens + --max-len-b new tokens (fairseq)', number('--max-len-a', (x) => x >= 0, 'a number >= 0'))
    .option('--max-len-b <b>', 'with --max-len-a (default 0)', any('--max-len-b'));
}

export interface TruncateFlags {
  truncate?: boolean;
  truncateSide?: 'left' | 'right';
}

/**
 * --truncate cuts inputs too long for the model's positions (default: refused) on the side the task suits,
 * --truncate-side on the other. (A bare flag, not `--truncate [side]`, which would swallow a text after it.)
 */
export function truncateFlags(cmd: Command, side: 'left' | 'right'): Command {
  const keeps = side === 'left' ? 'its end' : 'its start';
  return cmd
    .option('--truncate', `cut an input too long for the model's positions instead of refusing it (keeping ${keeps})`)
    .addOption(new Option('--truncate-side <side>', `the side --truncate cuts: left keeps the end, right the start (default ${side}; implies --truncate)`).choices(['left', 'right']));
}

/** The side inputs are cut on, or undefined when they are not. */
export function truncateSide(o: TruncateFlags, side: 'left' | 'right'): 'left' | 'right' | undefined {
  return o.truncateSide ?? (o.truncate ? side : undefined);
}

/** Where prompts come from: -p (repeatable, several texts each; "-" reads stdin) and --prompt-file; and truncation. */
export function promptFlags(cmd: Command): Command {
  return truncateFlags(cmd, 'left')
    .option('-p, --prompt <text...>', 'prompt text (several prompts run together); - reads one prompt from stdin')
    .option('--prompt-file <path>', 'a file whose text is one prompt (repeatable)', collect((v: string) => v));
}

/** The request options of the parsed flags (the command's other flags ride along; checkOptions reads only its own). */
export function generateOptions(o: GenerationFlags): GenerateOptions {
  const { ignoreEos, logprobs, topLogprobs, truncate, truncateSide: side, maxLenA, maxLenB, ...rest } = o;
  return { ...rest, maxLengthA: maxLenA, maxLengthB: maxLenB, stopAtEos: !ignoreEos, logprobs: logprobs || topLogprobs !== undefined ? true : undefined, topLogprobs, truncate: truncateSide({ truncate, truncateSide: side }, 'left') };
}
