// `peregrine serve` as users start it: the official client against the CLI's server, and SIGTERM draining
// (the running stream finishes, new requests are refused, the process exits 0).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { test } from 'node:test';
import OpenAI from 'openai';
import { CLI, fixture } from './helpers/fixtures.js';

/** Starts the server on a free port; resolves with its address once it listens. */
function serve(args: string[]): Promise<{ child: ChildProcess; base: string; stderr: () => string; exit: Promise<number | null> }> {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '-d', 'cpu', ...args], { env: { ...process.env, PEREGRINE_OFFLINE: '1' } });
  let err = '';
  const exit = new Promise<number | null>((resolve) => child.on('close', resolve));
  return new Promise((resolve, reject) => {
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      const m = /serving .* at (http:\/\/\S+)/.exec(err);
      if (m) resolve({ child, base: m[1], stderr: () => err, exit });
    });
    void exit.then((code) => reject(new Error(`serve exited with ${code} before listening: ${err}`)));
  });
}

test('peregrine serve answers the official client, and drains on SIGTERM', async () => {
  const { child, base, stderr, exit } = await serve(['-m', fixture('llama-tiny'), '-m', fixture('bert-tiny'), '--served-model-name', 'llama']);
  const model = 'llama';
  const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
  const chat = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
  assert.ok(chat.usage!.completion_tokens >= 1 && chat.usage!.completion_tokens <= 4);
  assert.equal(typeof chat.choices[0].message.content, 'string');
  const emb = await client.embeddings.create({ model: fixture('bert-tiny'), input: 'hello' });
  assert.equal(emb.data[0].embedding.length, 8);

  const stream = await client.completions.create({ model, prompt: 'a long story', max_tokens: 200, ignore_eos: true, temperature: 0, stream: true } as OpenAI.CompletionCreateParamsStreaming);
  let text = '', finish: string | null = null, tokens = 0, signalled = false;
  for await (const chunk of stream) {
    if (!signalled) {
      signalled = true;
      child.kill('SIGTERM');
      // the listener closes: a new request is refused while the stream goes on
      await new Promise((f) => setTimeout(f, 50));
      await assert.rejects(fetch(`${base}/health`).then((r) => {
        if (r.status !== 200) throw new Error(`status ${r.status}`);
      }));
    }
    tokens++;
    text += chunk.choices[0].text;
    finish = chunk.choices[0].finish_reason ?? finish;
  }
  assert.equal(tokens, 200);
  assert.equal(finish, 'length');
  assert.equal(await exit, 0);
  assert.match(stderr(), /SIGTERM: finishing 1 running sequences/);
});

test('peregrine serve refuses two models under one name, and more names than models', async () => {
  for (const args of [['-m', fixture('llama-tiny'), '-m', fixture('gpt2-tiny'), '--served-model-name', 'a', '--served-model-name', 'a'], ['-m', fixture('llama-tiny'), '--served-model-name', 'a', '--served-model-name', 'b']]) {
    const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '-d', 'cpu', ...args], { env: { ...process.env, PEREGRINE_OFFLINE: '1' } });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    assert.equal(await new Promise((resolve) => child.on('close', resolve)), 1);
    assert.match(err, /^peregrine: error: .*(two models would be served as a|2 --served-model-name for 1 -m)/);
  }
});

test('peregrine serve refuses a model it cannot load with one line, and exits 1', async () => {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '-d', 'cpu', '-m', fixture('nothing-here')], { env: { ...process.env, PEREGRINE_OFFLINE: '1' } });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const code = await new Promise((resolve) => child.on('close', resolve));
  assert.equal(code, 1);
  assert.match(err, /^peregrine: error: .*nothing-here/);
  assert.equal(err.trim().split('\n').length, 1);
});

test('peregrine serve --tensor-parallel 2: concurrent requests get what one whole model serves, and SIGTERM still exits 0', async () => {
  const servers = await Promise.all([[], ['--tensor-parallel', '2']].map((extra) => serve(['-m', fixture('llama-tiny'), '--served-model-name', 'llama', ...extra])));
  const prompts = ['Once upon a time', 'a', 'The quick brown fox jumps over the lazy dog', '1 2 3'];
  const [whole, split] = await Promise.all(servers.map(({ base }) => {
    const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
    return Promise.all(prompts.map((prompt, i) => client.completions.create({ model: 'llama', prompt, max_tokens: 12, temperature: i === 3 ? 0.8 : 0, seed: 5, logprobs: 2 })));
  }));
  // the greedy ones: the same tokens (a seeded draw may land elsewhere where two computations round differently)
  for (let i = 0; i < 3; i++) assert.equal(split[i].choices[0].text, whole[i].choices[0].text, `prompt ${i}`);
  assert.ok(split[3].usage!.completion_tokens >= 1);
  for (const s of servers) s.child.kill('SIGTERM');
  assert.deepEqual(await Promise.all(servers.map((s) => s.exit)), [0, 0]);
});
