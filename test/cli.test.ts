// The peregrine command, run as a user runs it.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CLI, fixture, hasGpuDriver, reference, ROOT } from './helpers/fixtures.js';
import { fakeSha, HubServer } from './helpers/hub-server.js';
import { encodeSafetensors } from '../src/loaders/safetensors-write.js';
import { SafetensorsFile } from '../src/loaders/safetensors.js';

const root = mkdtempSync(join(tmpdir(), 'peregrine-cli-'));
after(() => rmSync(root, { recursive: true, force: true }));
const env = { ...process.env, PEREGRINE_CACHE: join(root, 'cache'), PEREGRINE_OFFLINE: '1' };

function run(args: string[], input?: string, extra: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: extra.env ?? env, input, cwd: extra.cwd });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** The command without blocking this process (for a hub served from this process). */
async function runAsync(args: string[], childEnv: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, [CLI, ...args], { env: childEnv });
  let out = '', err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { code, out, err };
}

/** A failing command: non-zero exit, one line on stderr matching `pattern`, no stack trace. */
function failsWith(args: string[], pattern: RegExp, extraEnv: NodeJS.ProcessEnv = {}): void {
  const r = run(args, undefined, { env: { ...env, ...extraEnv } });
  assert.notEqual(r.code, 0, `exit code for ${args.join(' ')}`);
  const lines = r.err.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.err}`);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.err, /\n\s+at |internal error/);
  assert.equal(r.out, '');
}

describe('generate', () => {
  test('streams tokens to stdout as they are produced', async () => {
    const child = spawn(process.execPath, [CLI, 'generate', '--model', fixture('gpt2-tiny'), '--prompt', 'hi', '-n', '24'], { env });
    const chunks: string[] = [];
    child.stdout.setEncoding('utf8').on('data', (d: string) => chunks.push(d));
    const code = await new Promise((resolve) => child.on('close', resolve));
    assert.equal(code, 0);
    assert.ok(chunks.length > 1, `text arrived in ${chunks.length} write(s)`);
    assert.ok(chunks.join('').trim().length > 0);
  });

  test('--json prints the generated ids and text, equal to Hugging Face greedy', () => {
    const ref = reference<{ prompts: { text: string }[]; greedy: { generated: number[] }[] }>('gpt2-tiny');
    const r = run(['generate', '-m', fixture('gpt2-tiny'), '-p', ref.prompts[1].text, '-n', '32', '--json', '--ignore-eos']);
    assert.equal(r.code, 0, r.err);
    const out = JSON.parse(r.out);
    assert.deepEqual(out.ids, ref.greedy[1].generated);
    assert.equal(typeof out.text, 'string');
  });

  test('--batch-invariant is accepted; the CPU always is, so the tokens are those without it', () => {
    const args = ['generate', '-m', fixture('gpt2-tiny'), '-p', 'Hello there', '-n', '12', '--json', '--seed', '7', '--temperature', '0.9'];
    const plain = run(args), invariant = run([...args, '--batch-invariant']);
    assert.equal(invariant.code, 0, invariant.err);
    assert.deepEqual(JSON.parse(invariant.out).ids, JSON.parse(plain.out).ids);
  });

  test('several prompts and sampling flags', () => {
    const args = ['generate', '-m', fixture('gpt2-tiny'), '-p', 'a', 'b c', '-n', '5', '-t', '0.7', '-k', '40', '--top-p', '0.9', '-s', '3', '--json'];
    const a = run(args), b = run(args);
    assert.equal(a.code, 0, a.err);
    assert.equal(a.out.trim().split('\n').length, 2);
    assert.equal(a.out, b.out, 'same seed, same output');
  });

  test('--dtype f16 or bf16 runs on the CPU in f32, with a note; the same tokens as without', () => {
    const args = ['generate', '-m', fixture('gpt2-tiny'), '-p', 'hello', '-n', '4', '--json'];
    const plain = run([...args, '--device', 'cpu']);
    assert.equal(plain.code, 0, plain.err);
    assert.equal(plain.err, '');
    const devices = hasGpuDriver() ? ['cpu'] : ['cpu', 'auto'];
    for (const device of devices) {
      for (const dtype of ['f16', 'bf16']) {
        const r = run([...args, '--device', device, '--dtype', dtype], undefined, { env: { ...env, PEREGRINE_DEVICE: '' } });
        assert.equal(r.code, 0, r.err);
        assert.equal(r.err, `peregrine: note: the CPU computes in f32; --dtype ${dtype} applies on the GPU\n`);
        assert.equal(r.out, plain.out);
      }
    }
  });

  test('-p - reads the prompt from stdin, --prompt-file from a file (one final line break dropped)', () => {
    const args = ['generate', '-m', fixture('gpt2-tiny'), '-n', '4', '--json'];
    const text = 'Once upon a time,\nthere was';
    const direct = run([...args, '-p', text]);
    assert.equal(direct.code, 0, direct.err);
    const piped = run([...args, '-p', '-'], text + '\n');
    assert.equal(piped.code, 0, piped.err);
    assert.equal(piped.out, direct.out);
    const file = join(root, 'prompt.txt');
    writeFileSync(file, text + '\n');
    const filed = run([...args, '--prompt-file', file]);
    assert.equal(filed.code, 0, filed.err);
    assert.equal(filed.out, direct.out);
    const both = run([...args, '-p', 'hi', '--prompt-file', file]);
    assert.deepEqual(both.out.trim().split('\n').map((l) => JSON.parse(l).index).sort(), [0, 1]);
  });

  test('a prompt of any size from stdin: refused beyond the model\'s positions, or cut on the left with --truncate', () => {
    const big = 'the quick brown fox jumps. '.repeat(8000);
    const args = ['generate', '-m', fixture('gpt2-tiny'), '-p', '-', '-n', '4', '--json'];
    const refused = run(args, big);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /the prompt has \d+ tokens.*beyond the model's 64.*--truncate/);
    const cut = run([...args, '--truncate'], big);
    assert.equal(cut.code, 0, cut.err);
    const tail = run(['generate', '-m', fixture('gpt2-tiny'), '-p', 'the quick brown fox jumps. '.repeat(20), '-n', '4', '--json', '--truncate']);
    assert.deepEqual(JSON.parse(cut.out).ids, JSON.parse(tail.out).ids, 'the end of the prompt is kept');
    const right = run([...args, '--truncate-side', 'right'], big);
    assert.equal(right.code, 0, right.err);
  });

  test('bad arguments', () => {
    const m = ['-m', fixture('gpt2-tiny')];
    failsWith(['generate', ...m, '-p', ''], /the prompt is empty/);
    failsWith(['generate', ...m, '-p', 'x', '--top-p', '2'], /--top-p.*\(0, 1\]/);
    failsWith(['generate', ...m, '-p', 'x', '-t', 'hot'], /--temperature must be a number/);
    failsWith(['generate', ...m, '-p', 'x', '-n', '0'], /max new tokens must be at least 1 \(0 only scores a prompt/);
    failsWith(['generate', ...m, '-p', 'x', '-n', '-1'], /--max-new-tokens must be a whole number >= 0/);
    failsWith(['generate', ...m, '-p', 'x', '--prompt-logprobs'], /--prompt-logprobs are printed with --json/);
    failsWith(['generate', ...m, '-p', 'x', '-k', '2.5'], /--top-k/);
    failsWith(['generate', ...m, '-p', 'x', '-n', '100'], /beyond the model's 64/);
    failsWith(['generate', ...m, '-p', 'x', '--max-batch', '5000000'], /memory plan needs .* but the CPU has .* available; lower --max-batch \(5000000\)/);
    // sizes far beyond memory are refused before a plan is built
    for (const [flag, value] of [['--max-batch', '1000000000000'], ['--prefill-chunk', '100000000000'], ['--kv-blocks', '100000000000']]) {
      const pattern = new RegExp(`memory plan needs at least .* TiB .*available; lower .*${flag} \\(${value}\\)`);
      failsWith(['generate', ...m, '-p', 'x', flag, value], pattern);
      failsWith(['inspect', ...m, flag, value], pattern);
    }
    failsWith(['inspect', '-m', fixture('bert-tiny'), '--max-batch', '1000000000000'], /memory plan needs at least .* TiB .*lower --max-batch \(1000000000000\)/);
    failsWith(['generate', ...m, '-p', 'x', '--device', 'tpu'], /Allowed choices are cpu, cuda, auto/);
    if (!hasGpuDriver()) failsWith(['generate', ...m, '-p', 'x', '--device', 'cuda'], /no NVIDIA driver found/);
    failsWith(['generate', ...m, '-p', 'x', '--dtype', 'f8'], /Allowed choices are f32, f16, bf16/);
    failsWith(['generate', ...m, '-p', 'x'], /PEREGRINE_DEVICE="bogus" is not a device; set it to cpu, cuda or auto/, { PEREGRINE_DEVICE: 'bogus' });
    failsWith(['generate', '-p', 'x'], /required option '-m, --model/);
    failsWith(['generate', ...m], /no prompt; give one with -p <text>, -p - \(stdin\) or --prompt-file <path>/);
    failsWith(['generate', ...m, '--prompt-file', join(root, 'no-such-file')], /--prompt-file not found: .*no-such-file/);
    failsWith(['generate', ...m, '-p', '-', '-p', '-'], /reads stdin, which holds one prompt/);
    failsWith(['generate', '-m', fixture('bert-tiny'), '-p', 'x'], /encoder/);
    failsWith(['frobnicate'], /unknown command/);
  });
});

describe('generate: the request API from the command line', () => {
  const m = ['-m', fixture('gpt2-tiny')];

  test('beam search, several return sequences and scores as JSON; as lines of text without --json', () => {
    const ref = reference<{ cases: { prompt: number[]; options: Record<string, unknown>; sequences?: number[][]; scores?: number[] }[] }>('gpt2-tiny', 'generation.json');
    const c = ref.cases.find((x) => x.options.numBeams === 4 && x.options.lengthPenalty === 2 && x.options.earlyStopping === true)!;
    const prompt = reference<{ prompts: { text: string; ids: number[] }[] }>('gpt2-tiny').prompts.find((p) => p.ids.join() === c.prompt.join())!.text;
    const r = run(['generate', ...m, '-p', prompt, '-n', '12', '--num-beams', '4', '--num-return-sequences', '3', '--length-penalty', '2',
      '--early-stopping', '--eos-token-id', String((c.options.eosTokenId as number[])[0]), '--json']);
    assert.equal(r.code, 0, r.err);
    const out = JSON.parse(r.out);
    assert.deepEqual(out.sequences.map((x: { ids: number[] }) => x.ids), c.sequences);
    out.sequences.forEach((x: { score: number }, i: number) => assert.ok(Math.abs(x.score - c.scores![i]) < 1e-4));
    assert.deepEqual(out.ids, c.sequences![0]);
    assert.equal(out.index, 0);
  });

  test('several prompts print one line each, prefixed by their index, in the order they finish', () => {
    const r = run(['generate', ...m, '-p', 'a long one', '-p', 'b', '-n', '3', '--ignore-eos']);
    assert.equal(r.code, 0, r.err);
    const lines = r.out.trimEnd().split('\n');
    assert.equal(lines.length, 2);
    assert.deepEqual(lines.map((l) => l.slice(0, 4)).sort(), ['[0] ', '[1] ']);
    const j = run(['generate', ...m, '-p', 'x', '-p', 'y z', '-n', '2', '--json', '--logprobs', '--top-logprobs', '2']);
    const objs = j.out.trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(objs.map((o) => o.index).sort(), [0, 1]);
    for (const o of objs) {
      assert.equal(o.logprobs.length, o.ids.length);
      assert.equal(o.topLogprobs[0].length, 2);
      assert.ok(['length', 'eos', 'stop'].includes(o.finishReason));
    }
  });

  test('sampling, penalties, stop strings and bad words from flags', () => {
    const args = ['generate', ...m, '-p', 'Hello', '-n', '12', '-t', '0.9', '--top-k', '30', '--top-p', '0.9', '--top-p-decay', '0.95',
      '--top-p-min', '0.5', '--top-p-reset-ids', '13', '--min-p', '0.01', '--repetition-penalty', '1.2', '--presence-penalty', '0.5',
      '--frequency-penalty', '0.2', '--bad-words', 'the', '--bad-words', 'and', '--stop', 'zzz', '--min-new-tokens', '2', '-s', '9', '--json'];
    const a = run(args), b = run(args);
    assert.equal(a.code, 0, a.err);
    assert.equal(a.out, b.out, 'same seed, same output');
    assert.ok(!JSON.parse(a.out).text.includes('zzz'));
  });

  test('bad request options get one line naming the option', () => {
    failsWith(['generate', ...m, '-p', 'x', '--num-beams', '2', '--num-return-sequences', '3'], /num return sequences \(3\) is above num beams \(2\)/);
    failsWith(['generate', ...m, '-p', 'x', '--num-beams', '2', '-t', '0.5'], /temperature cannot be combined with num beams/);
    failsWith(['generate', ...m, '-p', 'x', '--repetition-penalty', '0'], /--repetition-penalty must be a number >= 1e-6/);
    failsWith(['generate', ...m, '-p', 'x', '--presence-penalty', '-3'], /--presence-penalty must be in \[-2, 2\]/);
    failsWith(['generate', ...m, '-p', 'x', '--early-stopping', 'maybe'], /--early-stopping must be true, false or never/);
    failsWith(['generate', ...m, '-p', 'x', '--length-penalty', '2'], /length penalty applies to beam search/);
    failsWith(['generate', ...m, '-p', 'x', '--top-logprobs', '30'], /top logprobs must be a whole number from 0 to 20/);
    failsWith(['generate', ...m, '-p', 'ok', '-p', '', '--json'], /prompt 1 is empty/);
  });
});

describe('generate --tensor-parallel and --pipeline-parallel (CPU ranks as threads)', () => {
  const m = ['-m', fixture('llama-tiny'), '-d', 'cpu'];

  for (const flags of [['--tensor-parallel', '2'], ['--pipeline-parallel', '2']]) {
    test(`${flags.join(' ')} prints what one whole model prints: a stream, and several prompts as JSON with sampling`, () => {
      const stream = ['generate', ...m, '-p', 'Hello world', '-n', '10', '--ignore-eos'];
      const one = run(stream), two = run([...stream, ...flags]);
      assert.equal(two.code, 0, two.err);
      assert.equal(two.out, one.out);
      const many = ['generate', ...m, '-p', 'The fox', '-p', 'a', '-n', '6', '--json', '--logprobs', '-t', '0.8', '-s', '3'];
      const lines = (out: string) => out.trim().split('\n').map((l) => JSON.parse(l)).sort((a, b) => a.index - b.index);
      const want = lines(run(many).out), got = run([...many, ...flags]);
      assert.equal(got.code, 0, got.err);
      const have = lines(got.out);
      assert.deepEqual(have.map((o) => o.ids), want.map((o) => o.ids));
      have.forEach((o, i) => o.logprobs.forEach((lp: number, j: number) => assert.ok(Math.abs(lp - want[i].logprobs[j]) < 1e-4, `prompt ${i}, token ${j}`)));
    });
  }

  test('what cannot run tensor-parallel is refused in one line', () => {
    failsWith(['generate', '-m', fixture('llama-tiny'), '-p', 'x', '--tensor-parallel', '2'], /tensor and pipeline parallelism run on the CPU backend only for now \(device cpu, got auto\)/);
    failsWith(['generate', ...m, '-p', 'x', '--tensor-parallel', '3'], /num_attention_heads \(4\) is not a multiple of the tensor-parallel size 3/);
    failsWith(['generate', '-m', fixture('gpt2-tiny'), '-d', 'cpu', '-p', 'x', '--tensor-parallel', '2'], /GPT2LMHeadModel does not run tensor-parallel yet/);
    failsWith(['generate', ...m, '-p', 'x', '--tensor-parallel', '0'], /--tensor-parallel must be a whole number >= 1/);
    failsWith(['generate', ...m, '-p', 'x', '--pipeline-parallel', '3'], /a pipeline of 3 stages needs a layer a stage at least, and the model has 2/);
    failsWith(['generate', '-m', fixture('t5-tiny'), '-d', 'cpu', '-p', 'x', '--pipeline-parallel', '2'], /T5ForConditionalGeneration does not run pipeline-parallel yet/);
  });
});

describe('models from the hub', () => {
  test('a cached model runs while the hub accepts connections and never answers; an uncached one stops at --hub-timeout', { timeout: 120_000 }, async () => {
    const hub = new HubServer();
    await hub.start();
    const files = Object.fromEntries(readdirSync(fixture('gpt2-tiny')).filter((f) => !f.endsWith('.json') || !/reference|generation\./.test(f))
      .map((f) => [f, readFileSync(join(fixture('gpt2-tiny'), f))]));
    hub.repos.set('tester/tiny', { sha: fakeSha(), files, lfs: new Set(Object.keys(files).filter((f) => f.endsWith('.safetensors'))) });
    const hubEnv = { ...env, PEREGRINE_OFFLINE: '', PEREGRINE_HUB_URL: hub.endpoint, PEREGRINE_CACHE: join(root, 'hub-cache') };
    try {
      const args = ['generate', '-m', 'tester/tiny', '-p', 'hi', '-n', '2', '--json'];
      const first = await runAsync(args, hubEnv);
      assert.equal(first.code, 0, first.err);
      hub.silent = true;
      const cached = await runAsync(args, hubEnv);
      assert.equal(cached.code, 0, cached.err);
      assert.equal(cached.out, first.out);
      const checked = await runAsync([...args, '--check-updates', '--hub-timeout', '0.3'], hubEnv);
      assert.equal(checked.code, 0, checked.err);
      const uncached = await runAsync(['generate', '-m', 'tester/other', '-p', 'hi'], { ...hubEnv, PEREGRINE_HUB_TIMEOUT: '0.3' });
      assert.equal(uncached.code, 1);
      assert.match(uncached.err, /^peregrine: error: .*not in the cache.*no answer within 0\.3 s.*--hub-timeout/);
    } finally {
      await hub.stop();
    }
  });

  test('a mistyped relative path says that there is no such directory first', () => {
    const r = run(['generate', '-m', 'fixtures/gpt2-tny', '-p', 'x'], undefined, { cwd: join(ROOT, 'test') });
    assert.equal(r.code, 1);
    assert.match(r.err, /^peregrine: error: no such directory fixtures\/gpt2-tny; read as a hub id, .*not in the cache/);
  });
});

describe('chat', () => {
  test('one reply line per user line; the conversation continues from the cache', () => {
    const r = run(['chat', '-m', fixture('gpt2-tiny'), '-n', '4', '--ignore-eos'], 'Hello there\nand then?\n\nbye\n');
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.split('\n').length - 1, 3, JSON.stringify(r.out));
  });

  test('with a chat template, each turn renders the conversation', () => {
    const dir = join(root, 'templated');
    cpSync(fixture('gpt2-tiny'), dir, { recursive: true, dereference: true });
    writeFileSync(join(dir, 'chat_template.jinja'), "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}");
    const r = run(['chat', '-m', dir, '-n', '3', '--ignore-eos', '--system', 'be brief'], 'Hi\nMore\n');
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.split('\n').length - 1, 2);
  });
});

describe('embed, classify, inspect', () => {
  test('embed prints one JSON vector per input, normalized on request', () => {
    const ref = reference<{ inputs: { text: string }[]; mean_normalized: number[][] }>('bert-tiny');
    const texts = ref.inputs.map((x) => x.text);
    const r = run(['embed', '-m', fixture('bert-tiny'), '--pooling', 'mean', '--normalize', ...texts]);
    assert.equal(r.code, 0, r.err);
    const vecs = r.out.trim().split('\n').map((l) => JSON.parse(l) as number[]);
    assert.equal(vecs.length, texts.length);
    vecs.forEach((v, i) => v.forEach((x, j) => assert.ok(Math.abs(x - ref.mean_normalized[i][j]) < 1e-4)));
    // stdin, one text per line
    // one output line per input line; an empty line is the empty text
    const s = run(['embed', '-m', fixture('bert-tiny'), '--pooling', 'cls'], 'first line\n\nsecond line\n');
    assert.equal(s.code, 0, s.err);
    const lines = s.out.trimEnd().split('\n');
    assert.equal(lines.length, 3);
    assert.equal(lines[1] + '\n', run(['embed', '-m', fixture('bert-tiny'), '--pooling', 'cls', '']).out);
    assert.equal(lines[2] + '\n', run(['embed', '-m', fixture('bert-tiny'), '--pooling', 'cls', 'second line']).out);
  });

  test('embed and classify: --truncate keeps the start of a long text; without it, the text is refused', () => {
    const long = 'words and more words '.repeat(40);
    for (const cmd of ['embed', 'classify']) {
      failsWith([cmd, '-m', fixture('bert-tiny'), long], /input 0 has \d+ tokens, beyond the model's 64 positions.*--truncate/);
      const r = run([cmd, '-m', fixture('bert-tiny'), '--truncate', long, 'short']);
      assert.equal(r.code, 0, r.err);
      const lines = r.out.trimEnd().split('\n');
      assert.equal(lines.length, 2);
      assert.equal(lines[0], run([cmd, '-m', fixture('bert-tiny'), long + ' a different end', '--truncate']).out.trimEnd());
    }
  });

  test('classify prints labels and scores', () => {
    const r = run(['classify', '-m', fixture('bert-tiny'), 'hello', 'world']);
    assert.equal(r.code, 0, r.err);
    const rows = r.out.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(rows.length, 2);
    assert.match(rows[0].label, /^LABEL_[0-2]$/);
    assert.ok(Math.abs(rows[0].scores.reduce((a: number, b: number) => a + b, 0) - 1) < 1e-9);
  });

  test('fill-mask prints the top-k tokens and scores of each mask, one JSON line per input', () => {
    const ref = reference<{ inputs: { text: string }[]; fill_mask: { input: number; position: number; ids: number[]; scores: number[] }[] }>('bert-mlm');
    const r = run(['fill-mask', '-m', fixture('bert-mlm'), '--top-k', '3'], ref.inputs.map((x) => x.text).join('\n') + '\n');
    assert.equal(r.code, 0, r.err);
    const rows = r.out.trimEnd().split('\n').map((l) => JSON.parse(l) as { index: number; predictions: { id: number; token: string; score: number }[] }[]);
    assert.equal(rows.length, ref.inputs.length);
    const got = rows.flatMap((masks, input) => masks.map((m) => [input, m.index, m.predictions.map((p) => p.id)]));
    assert.deepEqual(got, ref.fill_mask.map((f) => [f.input, f.position, f.ids.slice(0, 3)]));
    rows.flat().forEach((m, i) => m.predictions.forEach((p, k) => {
      assert.ok(Math.abs(p.score - ref.fill_mask[i].scores[k]) < 1e-4);
      assert.equal(typeof p.token, 'string');
    }));
  });

  test('classify --tokens prints each token\'s label, special tokens left out', () => {
    const ref = reference<{ inputs: { text: string; ids: number[] }[]; token_logits: number[][][] }>('bert-ner');
    const labels = ['O', 'B-PER', 'I-PER', 'B-LOC', 'I-LOC'];
    const r = run(['classify', '--tokens', '-m', fixture('bert-ner'), ref.inputs[0].text, ref.inputs[3].text]);
    assert.equal(r.code, 0, r.err);
    const rows = r.out.trimEnd().split('\n').map((l) => JSON.parse(l) as { index: number; id: number; token: string; label: string; score: number }[]);
    [0, 3].forEach((input, k) => {
      const want = ref.token_logits[input].slice(1, -1).map((row) => labels[row.indexOf(Math.max(...row))]);
      assert.deepEqual(rows[k].map((t) => t.label), want);
      assert.deepEqual(rows[k].map((t) => t.id), ref.inputs[input].ids.slice(1, -1));
      for (const t of rows[k]) assert.ok(t.score > 0 && t.score <= 1 && typeof t.token === 'string');
    });
  });

  test('embed follows a sentence-transformers directory: its pooling and Normalize by default, flags over them', () => {
    const ref = reference<{ inputs: { text: string }[]; mean: number[][]; cls: number[][]; mean_normalized: number[][] }>('st-mini');
    const vec = (args: string[]) => {
      const r = run(['embed', '-m', fixture('st-mini'), ...args, ref.inputs[0].text]);
      assert.equal(r.code, 0, r.err);
      return JSON.parse(r.out) as number[];
    };
    const close = (a: number[], b: number[]) => a.forEach((x, j) => assert.ok(Math.abs(x - b[j]) < 1e-4, `${x} vs ${b[j]}`));
    close(vec([]), ref.mean_normalized[0]);
    close(vec(['--no-normalize']), ref.mean[0]);
    const cls = vec(['--pooling', 'cls']);
    const norm = Math.sqrt(ref.cls[0].reduce((a, x) => a + x * x, 0));
    close(cls, ref.cls[0].map((x) => x / norm));
  });

  test('classify follows problem_type: softmax for single-label, sigmoid for multi-label, the logits for regression', () => {
    const withType = (type: unknown) => {
      const dir = join(root, `problem-${String(type)}`);
      cpSync(fixture('bert-tiny'), dir, { recursive: true, dereference: true });
      const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, problem_type: type }));
      return dir;
    };
    const classify = (dir: string) => {
      const r = run(['classify', '-m', dir, 'hello world']);
      assert.equal(r.code, 0, r.err);
      return JSON.parse(r.out) as { label: string; scores: number[]; logits: number[] };
    };
    const close = (a: number[], b: number[]) => a.forEach((x, i) => assert.ok(Math.abs(x - b[i]) < 1e-12, `${a} vs ${b}`));
    const single = classify(withType('single_label_classification'));
    const exps = single.logits.map((x) => Math.exp(x));
    close(single.scores, exps.map((e) => e / exps.reduce((a, b) => a + b, 0)));
    assert.deepEqual(classify(fixture('bert-tiny')), single);
    const multi = classify(withType('multi_label_classification'));
    assert.deepEqual(multi.logits, single.logits);
    close(multi.scores, multi.logits.map((x) => 1 / (1 + Math.exp(-x))));
    const regression = classify(withType('regression'));
    assert.deepEqual(regression.scores, regression.logits);
    assert.equal(regression.label, single.label, 'the label of the highest score');
    failsWith(['classify', '-m', withType('ranking'), 'x'], /"problem_type" must be single_label_classification, multi_label_classification, regression or absent, got "ranking"/);
  });

  test('inspect prints architecture, parameters, dtypes and the memory plan', () => {
    const r = run(['inspect', '-m', fixture('gpt2-tiny'), '--max-batch', '2', '--max-seq-len', '64']);
    assert.equal(r.code, 0, r.err);
    for (const s of ['GPT2LMHeadModel', '3 layers, hidden 8', 'F16', 'kv-cache', 'activations', 'maxBatch 2, maxSeqLen 64', 'kvBlocks 9, blockSize 16, kvTokens 128']) assert.ok(r.out.includes(s), `${s} in\n${r.out}`);
    const j = JSON.parse(run(['inspect', '-m', fixture('bert-tiny'), '--json']).out);
    assert.equal(j.info.architecture, 'BertForSequenceClassification');
    assert.deepEqual(j.dtypes.map((d: { dtype: string }) => d.dtype), ['BF16']);
  });

  test('inspect reports what a load would refuse: a missing tensor, an unsupported dtype, a broken tokenizer, --max-seq-len beyond the model', () => {
    const src = SafetensorsFile.open(join(fixture('bert-tiny'), 'model.safetensors'));
    const tensors = [...src.tensors.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: src.readBytes(t.name) }));
    src.close();
    const tokenizer = JSON.parse(readFileSync(join(fixture('bert-tiny'), 'tokenizer.json'), 'utf8'));
    const variant = (name: string, weights: typeof tensors, tok?: unknown) => {
      const dir = join(root, `inspect-${name}`);
      cpSync(fixture('bert-tiny'), dir, { recursive: true, dereference: true });
      writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(weights));
      if (tok !== undefined) writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tok));
      return dir;
    };
    const cases: [string, RegExp][] = [
      [variant('missing', tensors.filter((t) => t.name !== 'classifier.bias')), /no tensor classifier\.bias/],
      [variant('dtype', tensors.map((t) => (t.name === 'bert.pooler.dense.bias' ? { ...t, dtype: 'I16' } : t))), /bert\.pooler\.dense\.bias has dtype I16/],
      [variant('tok-model', tensors, { ...tokenizer, model: { type: 'Nope' } }), /tokenizer\.json could not be read as a tokenizer/],
      [variant('tok-unk', tensors, { ...tokenizer, model: { ...tokenizer.model, unk_token: '[NOPE]' } }), /tokenizer\.json does not work with this model: .*map text to undefined, which is not a token id/],
      [variant('tok-empty', tensors, { ...tokenizer, model: { ...tokenizer.model, vocab: {} } }), /tokenizer\.json does not work with this model: .*unknown tokens only/],
      [fixture('bert-wide'), /tokenizer\.json does not work with this model: .*outside the model's vocabulary \(0 \.\. 511/],
    ];
    for (const [dir, pattern] of cases) {
      failsWith(['inspect', '-m', dir], pattern);
      failsWith(['inspect', '-m', dir, '--json'], pattern);
    }
    failsWith(['inspect', '-m', fixture('bert-tiny'), '--max-seq-len', '1000'], /max sequence length 1000 is beyond the model's 64 positions/);
    failsWith(['inspect', '-m', fixture('gpt2-tiny'), '--max-seq-len', '65'], /max sequence length 65 is beyond the model's 64 positions/);
  });

  test('--version prints the package version', () => {
    const version = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;
    for (const flag of ['--version', '-V']) {
      const r = run([flag]);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, `${version}\n`);
    }
  });

  test('--help on every command', () => {
    for (const cmd of [[], ['generate'], ['chat'], ['embed'], ['classify'], ['fill-mask'], ['inspect']]) {
      const r = run([...cmd, '--help']);
      assert.equal(r.code, 0);
      assert.match(r.out, /Usage: peregrine/);
      if (cmd.length) assert.match(r.out, /--device/);
    }
  });

  test('bad model inputs', () => {
    failsWith(['embed', '-m', fixture('bert-tiny'), '--pooling', 'sum', 'x'], /Allowed choices are cls, mean, max/);
    failsWith(['embed', '-m', fixture('gpt2-tiny'), 'x'], /causal LM/);
    failsWith(['classify', '-m', fixture('bert-wide'), 'x'], /BertModel has no sequence classification head; use a \.\.\.ForSequenceClassification checkpoint/);
    failsWith(['classify', '--tokens', '-m', fixture('bert-tiny'), 'x'], /BertForSequenceClassification has no token classification head/);
    failsWith(['fill-mask', '-m', fixture('bert-tiny'), '[MASK]'], /has no masked lm head; use a \.\.\.ForMaskedLM checkpoint/);
    failsWith(['fill-mask', '-m', fixture('bert-mlm'), 'no mask'], /input 0 has no mask token; put the mask token \[MASK\] where a token should be predicted/);
    failsWith(['fill-mask', '-m', fixture('bert-mlm'), '--top-k', '0', '[MASK]'], /--top-k must be a whole number >= 1/);
    failsWith(['inspect', '-m', join(root, 'missing')], /model directory not found/);
    failsWith(['inspect', '-m', 'some-org/not-cached'], /not in the cache.*offline/);
    const broken = join(root, 'broken');
    cpSync(fixture('gpt2-wide'), broken, { recursive: true, dereference: true });
    truncateSync(join(broken, 'model.safetensors'), 100000);
    failsWith(['generate', '-m', broken, '-p', 'x'], /model\.safetensors.*truncated/);
  });
});
