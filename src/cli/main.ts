#!/usr/bin/env node
// The peregrine command: generate, translate, summarize, chat, embed, classify, fill-mask, serve, perplexity, quantize, inspect. Each command imports what it runs when
// it runs (the engine, the tokenizers, a backend), so --help and --version load only commander.
import { Command, InvalidArgumentError, Option } from 'commander';
import { fail, PeregrineError } from '../errors.js';
import type { Pooling } from '../engine/embedder.js';
import { common, generateOptions, generationFlags, int, loadOptions, parallelFlag, promptFlags, runtimeFlags, truncateFlags, truncateSide, type CommonFlags, type GenerationFlags, type TruncateFlags } from './flags.js';
import type { ServeFlags } from './serve.js';
import { packageVersion } from './version.js';

const engine = () => import('../engine/load.js');

function writeOut(s: string): void {
  process.stdout.write(s);
}

/**
 * A node other than the leader (--node-rank k > 0) runs the leader's passes instead of the command, until the leader
 * ends; true once it has.
 */
async function servedAsNode(o: CommonFlags): Promise<boolean> {
  if (!o.nodeRank) return false;
  const { runNode } = await import('../engine/net/nodes.js');
  await runNode(o.model, loadOptions(o));
  return true;
}

function buildProgram(): Command {
  const program = new Command('peregrine')
    .description('Transformer inference for Node.js: text generation, and embeddings, classification and fill-mask with BERT-family encoders, from Hugging Face checkpoints')
    .version(packageVersion(), '-V, --version', 'print the version')
    .configureOutput({ outputError: (str, write) => write(`peregrine: ${str}`) });

  promptFlags(generationFlags(parallelFlag(runtimeFlags(common(program.command('generate').description('generate text from prompts: one prompt streams to stdout, several print a line each as they finish'))))))
    .option('--json', 'print one JSON object per prompt (ids, text, finishReason, and log-probs or beams when asked for)')
    .action(async (o: CommonFlags & GenerationFlags & { prompt?: string[]; promptFile?: string[]; json?: boolean }) => {
      if (await servedAsNode(o)) return;
      const [{ loadGenerator }, { runGenerate }, { readPrompts }] = await Promise.all([engine(), import('./generate.js'), import('./inputs.js')]);
      const prompts = await readPrompts(o.prompt, o.promptFile);
      const gen = await loadGenerator(o.model, loadOptions(o));
      // disposed at the end, so that the nodes of a parallel group hear the leader's bye
      try {
        await runGenerate(gen, prompts, generateOptions(o), o.json === true);
      } finally {
        gen.dispose();
      }
    });

  for (const [name, what] of [['translate', 'translate texts with an encoder-decoder model (Marian, mBART, T5 with its task prefix)'], ['summarize', 'summarize texts with an encoder-decoder model (BART, T5 with "summarize: ")']]) {
    const cmd = generationFlags(runtimeFlags(common(program.command(name).description(`${what}: one line per input, as each finishes (one input streams)`))));
    truncateFlags(cmd, 'right')
      .argument('[texts...]', 'texts (default: one per line of stdin)')
      .option('--json', 'print one JSON object per input (ids, text, finishReason, and beams when asked for)')
      .action(async (texts: string[], o: CommonFlags & GenerationFlags & { json?: boolean }, command: Command) => {
        const [{ loadTranslator }, { runGenerate }, { readInputs }] = await Promise.all([import('../engine/translator.js'), import('./generate.js'), import('./inputs.js')]);
        const inputs = await readInputs(texts);
        const tr = await loadTranslator(o.model, loadOptions(o));
        // without -n, the model's generation config (max_length) decides
        const opts = { ...generateOptions(o), truncate: truncateSide(o, 'right') };
        if (command.getOptionValueSource('maxNewTokens') === 'default') delete opts.maxNewTokens;
        await runGenerate(tr.generator, inputs, opts, o.json === true);
      });
  }

  generationFlags(parallelFlag(runtimeFlags(common(program.command('chat').description('an interactive conversation: one user message per line of stdin, replies stream to stdout; the KV cache stays between turns')))))
    .option('--system <text>', 'a system message first (with a chat template)')
    .action(async (o: CommonFlags & GenerationFlags & { system?: string }) => {
      if (await servedAsNode(o)) return;
      const [{ loadGenerator }, { runChat }] = await Promise.all([engine(), import('./chat.js')]);
      const gen = await loadGenerator(o.model, loadOptions(o));
      try {
        await runChat(gen, generateOptions(o), o.system);
      } finally {
        gen.dispose();
      }
    });

  truncateFlags(common(program.command('embed').description('print sentence embeddings as JSON, one vector per input line')), 'right')
    .argument('[texts...]', 'texts to embed (default: one per line of stdin; an empty line is the empty text)')
    .addOption(new Option('--pooling <mode>', 'how to pool token states into one vector (default: a sentence-transformers Pooling module\'s mode, else mean)').choices(['cls', 'mean', 'max']))
    .option('--normalize', 'scale each vector to unit length (default: when a sentence-transformers Normalize module follows)')
    .option('--no-normalize', 'leave vectors as pooled, even after a Normalize module')
    .action(async (texts: string[], o: CommonFlags & TruncateFlags & { pooling?: Pooling; normalize?: boolean }) => {
      const [{ loadEmbedder }, { readInputs }] = await Promise.all([engine(), import('./inputs.js')]);
      const inputs = await readInputs(texts);
      const emb = await loadEmbedder(o.model, loadOptions(o));
      for (const v of emb.embed(inputs, { pooling: o.pooling, normalize: o.normalize, truncate: truncateSide(o, 'right') })) writeOut(JSON.stringify(Array.from(v)) + '\n');
    });

  truncateFlags(common(program.command('classify').description('sequence classification: label and scores as JSON, one line per input; with --tokens, each token\'s label')), 'right')
    .argument('[texts...]', 'texts to classify (default: one per line of stdin; an empty line is the empty text)')
    .option('--tokens', 'token classification (a ...ForTokenClassification checkpoint): a JSON list per input of {index, id, token, label, score}, special tokens left out')
    .action(async (texts: string[], o: CommonFlags & TruncateFlags & { tokens?: boolean }) => {
      const [{ loadEmbedder }, { readInputs }] = await Promise.all([engine(), import('./inputs.js')]);
      const inputs = await readInputs(texts);
      const emb = await loadEmbedder(o.model, loadOptions(o));
      const truncate = truncateSide(o, 'right');
      const results = o.tokens ? emb.classifyTokens(inputs, { truncate }) : emb.classify(inputs, { truncate });
      for (const c of results) writeOut(JSON.stringify(c) + '\n');
    });

  truncateFlags(common(program.command('fill-mask').description('the most likely tokens at each mask token ([MASK], <mask>) of each input: a JSON list per input line of {index, predictions: [{id, token, score}]}')), 'right')
    .argument('[texts...]', 'texts with mask tokens (default: one per line of stdin)')
    .option('-k, --top-k <k>', 'predictions per mask, best first', int('--top-k', 1), 5)
    .action(async (texts: string[], o: CommonFlags & TruncateFlags & { topK: number }) => {
      const [{ loadEmbedder }, { readInputs }] = await Promise.all([engine(), import('./inputs.js')]);
      const inputs = await readInputs(texts);
      const emb = await loadEmbedder(o.model, loadOptions(o));
      for (const f of emb.fillMask(inputs, { topK: o.topK, truncate: truncateSide(o, 'right') })) writeOut(JSON.stringify(f) + '\n');
    });

  parallelFlag(runtimeFlags(common(program.command('serve').description('an OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, /v1/embeddings, /metrics) with a chat page at /'), true)))
    .option('--host <host>', 'the address to listen on', '127.0.0.1')
    .option('--port <port>', 'the port to listen on (0: any free port)', int('--port', 0), 8000)
    .option('--api-key <key>', 'require Authorization: Bearer <key> on every request but /health and the page (default: $PEREGRINE_API_KEY, else none)')
    .option('--max-queue <n>', 'sequences running and waiting at once over all requests; beyond it requests get 429 (default 1024)', int('--max-queue', 1))
    .option('--max-body-bytes <n>', 'the largest request body (default 4 MiB)', int('--max-body-bytes', 1))
    .option('--served-model-name <name>', 'the name requests use for the model of the same position among the -m options (repeatable; default: the path or hub id as given)', (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option('--stream-interval <n>', 'a stream sends its tokens n at a time (default 1; more gives more tokens/s under many concurrent streams)', int('--stream-interval', 1))
    .action(async (o: Omit<CommonFlags, 'model'> & ServeFlags & { model: string[] }) => {
      if ((o.nodes ?? 1) > 1 && o.model.length > 1) throw new InvalidArgumentError('--nodes serves one model: give -m once');
      if (await servedAsNode({ ...o, model: o.model[0] })) return;
      const { runServe } = await import('./serve.js');
      await runServe(o.model, loadOptions({ ...o, model: o.model[0] }), o);
    });

  parallelFlag(runtimeFlags(common(program.command('perplexity').description('perplexity of a causal LM over a text file, with a sliding window (Hugging Face\'s definition: each window scores the tokens no earlier window scored, with the rest of the window as context)'))))
    .requiredOption('--file <path>', 'the text (UTF-8), tokenized whole as the model\'s tokenizer does by default (a BOS token first where it adds one)')
    .option('--context <n>', 'tokens per window (default: the model\'s positions and --max-seq-len allow, less one)', int('--context', 2))
    .option('--stride <n>', 'tokens between window starts (default: half the context)', int('--stride', 1))
    .option('--json', 'print JSON')
    .action(async (o: CommonFlags & { file: string; context?: number; stride?: number; json?: boolean }) => {
      if (await servedAsNode(o)) return;
      const [{ loadGenerator }, { runPerplexity }] = await Promise.all([engine(), import('./perplexity.js')]);
      await runPerplexity(() => loadGenerator(o.model, loadOptions(o)), o.file, { context: o.context, stride: o.stride }, o.json === true);
    });

  program.command('quantize').description('quantize a checkpoint into a new directory, calibrated on a text run through the model on the CPU: --method smoothquant (SmoothQuant W8A8: int8 weights per output channel, int8 activations per token) or gptq (GPTQ int4 weights in groups, a GPTQ checkpoint); GPT-2 and Llama-family blocks')
    .requiredOption('-m, --model <dir>', 'a Hugging Face model directory or hub id, its weights fp32, fp16 or bf16')
    .requiredOption('-o, --output <dir>', 'where the quantized checkpoint goes (a new or empty directory)')
    .addOption(new Option('--method <method>', 'the quantization method').choices(['smoothquant', 'gptq']).makeOptionMandatory())
    .requiredOption('--calibration <file>', 'the calibration text (UTF-8), run through the model on the CPU')
    .option('--calibration-tokens <n>', 'tokens of the calibration text read (default 8192)', int('--calibration-tokens', 2))
    .option('--alpha <a>', 'smoothquant: migration strength in (0, 1]: how much of the activations\' range moves into the weights (default 0.5)', parseFloat)
    .option('--group-size <n>', 'gptq: inputs per group, 32, 64 or 128 (default: the largest that divides every layer\'s inputs)', int('--group-size', 1))
    .option('--damp <f>', 'gptq: dampening of the Hessian\'s diagonal, a fraction of its mean, in (0, 1] (default 0.01)', parseFloat)
    .option('--no-act-order', 'gptq: quantize inputs in their stored order instead of by decreasing activation energy')
    .option('--sequential', 'gptq: one calibration pass per layer, each on the inputs the quantized layers before it give (a forward over the text per layer)')
    .action(async (o: { model: string; output: string; method: 'smoothquant' | 'gptq'; calibration: string; calibrationTokens?: number; alpha?: number; groupSize?: number; damp?: number; actOrder: boolean; sequential?: boolean }) => {
      const theirs = o.method === 'smoothquant' ? ['--group-size', '--damp', '--no-act-order', '--sequential'] : ['--alpha'];
      const given = { '--alpha': o.alpha !== undefined, '--group-size': o.groupSize !== undefined, '--damp': o.damp !== undefined, '--no-act-order': !o.actOrder, '--sequential': o.sequential === true };
      const stray = theirs.find((f) => given[f as keyof typeof given]);
      if (stray) fail('bad-argument', `${stray} is not a setting of --method ${o.method}`);
      const { readTextFile } = await import('./inputs.js');
      const text = await readTextFile(o.calibration, '--calibration');
      const tty = process.stderr.isTTY;
      if (o.method === 'smoothquant') {
        const { smoothQuant } = await import('../engine/smoothquant.js');
        const r = await smoothQuant(o.model, text, o.output, { alpha: o.alpha, maxTokens: o.calibrationTokens, onWindow: (done, total) => tty && process.stderr.write(`\rcalibration window ${done}/${total}`) });
        if (tty) process.stderr.write('\n');
        writeOut(`${o.output}: ${r.matrices} block matrices (${r.tensors} tensors) quantized to W8A8, calibrated on ${r.tokens} tokens\n`);
        return;
      }
      const { gptq } = await import('../engine/gptq.js');
      const r = await gptq(o.model, text, o.output, {
        group: o.groupSize, damp: o.damp, actOrder: o.actOrder, sequential: o.sequential, maxTokens: o.calibrationTokens,
        onWindow: (pass, passes, done, total) => tty && process.stderr.write(`\rpass ${pass}/${passes}: calibration window ${done}/${total}`),
      });
      if (tty) process.stderr.write('\n');
      if (r.tokens < r.maxInputs) process.stderr.write(`peregrine: note: ${r.tokens} calibration tokens are fewer than the ${r.maxInputs} inputs of the widest layer, so GPTQ fits the calibration text more than the model's use; give a longer text (--calibration, --calibration-tokens)\n`);
      writeOut(`${o.output}: ${r.matrices} block matrices (${r.tensors} tensors) quantized to GPTQ int4 in groups of ${r.group}, calibrated on ${r.tokens} tokens in ${r.passes} pass${r.passes === 1 ? '' : 'es'}; output error on the calibration inputs ${r.errorVsRtn.toFixed(3)} of round-to-nearest's\n`);
    });

  runtimeFlags(common(program.command('inspect').description('architecture, parameter count, dtypes and the memory plan a load makes (KV-cache pool, tables, activations)')))
    .option('--json', 'print JSON')
    .action(async (o: CommonFlags & { json?: boolean }) => {
      const [{ inspectModel }, { formatInspection }] = await Promise.all([engine(), import('./inspect.js')]);
      const r = await inspectModel(o.model, loadOptions(o));
      writeOut(o.json ? JSON.stringify(r, null, 2) + '\n' : formatInspection(r));
    });

  return program;
}

async function main(argv: string[]): Promise<number> {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof PeregrineError) {
      process.stderr.write(`peregrine: error: ${err.message}\n`);
      return 1;
    }
    const e = err as Error;
    process.stderr.write(`peregrine: internal error: ${e?.message ?? String(err)} (this is a bug; set PEREGRINE_DEBUG=1 for the stack trace)\n`);
    if (process.env.PEREGRINE_DEBUG) process.stderr.write(`${e?.stack}\n`);
    return 70;
  }
}

main(process.argv).then((code) => {
  process.exitCode = code;
});
