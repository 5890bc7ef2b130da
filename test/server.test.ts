// The OpenAI-compatible server on the CPU fixtures, through the official `openai` client: completions, chat and
// embeddings as the library computes them, streaming and not, n choices, stop strings, log-probs, errors with
// their status codes, concurrency (each stream gets the tokens it gets alone), and a disconnect freeing its
// blocks. The drain on SIGTERM is in server-cli.test.ts.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { parseTemplate, renderChat } from '../src/engine/chat.js';
import { createServer, loadEmbedder, loadGenerator, type PeregrineServer, type Served, type TextGenerator } from '../src/index.js';
import type { Embedder } from '../src/engine/embedder.js';
import { fixture } from './helpers/fixtures.js';

type ApiErr = InstanceType<typeof OpenAI.APIError>;
type ApiBody = { error: { message: string; type: string; code: string | null } };

const LLAMA = 'llama-tiny', GPT2 = 'gpt2-tiny', BERT = 'bert-tiny';
let llama: TextGenerator, gpt2: TextGenerator, bert: Embedder;
let server: PeregrineServer, base: string, client: OpenAI;

const served = (): Served[] => [
  { id: LLAMA, created: 1, kind: 'causal-lm', generator: llama },
  { id: GPT2, created: 1, kind: 'causal-lm', generator: gpt2 },
  { id: BERT, created: 1, kind: 'encoder', embedder: bert },
];

async function start(s: Served[], options = {}): Promise<{ server: PeregrineServer; base: string; client: OpenAI }> {
  const server = createServer(s, options);
  const base = await server.listen(0, '127.0.0.1');
  return { server, base, client: new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 }) };
}

/** The value of a gauge or counter in /metrics (summed over labels matching `labels`). */
async function metric(name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) {
      if (labels && !line.includes(labels)) continue;
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

before(async () => {
  [llama, gpt2, bert] = await Promise.all([loadGenerator(fixture(LLAMA)), loadGenerator(fixture(GPT2)), loadEmbedder(fixture(BERT))]);
  ({ server, base, client } = await start(served()));
});
after(async () => {
  await server.app.close();
  for (const m of [llama, gpt2, bert]) m.dispose();
});

describe('completions', () => {
  test('greedy text equals the library\'s, with usage', async () => {
    const r = await client.completions.create({ model: GPT2, prompt: 'The cat sat', max_tokens: 12, temperature: 0 });
    const want = await gpt2.generate('The cat sat', { maxNewTokens: 12, temperature: 0 });
    assert.equal(r.object, 'text_completion');
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].text, want.text);
    assert.equal(r.choices[0].finish_reason, want.finishReason === 'length' ? 'length' : 'stop');
    const promptTokens = gpt2.tokenizer.encode('The cat sat').length;
    assert.deepEqual(r.usage, { prompt_tokens: promptTokens, completion_tokens: want.ids.length, total_tokens: promptTokens + want.ids.length });
  });

  test('streamed chunks join to the same text; include_usage adds a last chunk with usage', async () => {
    const body = { model: GPT2, prompt: ['one two', 'three'], max_tokens: 10, temperature: 0, n: 2 };
    const whole = await client.completions.create(body);
    const stream = await client.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
    const texts = ['', '', '', ''];
    const finish: (string | null)[] = [null, null, null, null];
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        texts[c.index] += c.text;
        if (c.finish_reason) finish[c.index] = c.finish_reason;
      }
    }
    assert.equal(whole.choices.length, 4);
    assert.deepEqual(texts, whole.choices.map((c) => c.text));
    assert.deepEqual(finish, whole.choices.map((c) => c.finish_reason));
    assert.deepEqual(usage, whole.usage);
  });

  test('n choices with a seed: choice j is the single choice of seed + j, and they differ', async () => {
    const body = { model: LLAMA, prompt: 'hello there', max_tokens: 8, temperature: 1, seed: 41 };
    const three = await client.completions.create({ ...body, n: 3 });
    const texts = three.choices.map((c) => c.text);
    assert.ok(new Set(texts).size > 1, `three samples all gave ${JSON.stringify(texts[0])}`);
    for (let j = 0; j < 3; j++) {
      const one = await client.completions.create({ ...body, seed: 41 + j });
      assert.equal(one.choices[0].text, texts[j]);
    }
  });

  test('a stop string ends the text before it, with finish_reason stop', async () => {
    const full = (await client.completions.create({ model: GPT2, prompt: 'a b c', max_tokens: 20, temperature: 0 })).choices[0].text;
    const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 3);
    const r = await client.completions.create({ model: GPT2, prompt: 'a b c', max_tokens: 20, temperature: 0, stop });
    assert.equal(r.choices[0].text, full.slice(0, full.indexOf(stop)));
    assert.equal(r.choices[0].finish_reason, 'stop');
  });

  test('log-probs: one per token, the library\'s values, k alternatives with the chosen token\'s among them under greedy', async () => {
    const r = await client.completions.create({ model: GPT2, prompt: 'x y', max_tokens: 6, temperature: 0, logprobs: 3 });
    const want = await gpt2.generate('x y', { maxNewTokens: 6, temperature: 0, logprobs: true, topLogprobs: 3 });
    const lp = r.choices[0].logprobs!;
    assert.equal(lp.tokens!.length, want.ids.length);
    assert.deepEqual(lp.token_logprobs, want.logprobs);
    assert.equal(lp.tokens!.join(''), r.choices[0].text);
    for (const [i, top] of lp.top_logprobs!.entries()) {
      assert.equal(Object.keys(top).length, 3);
      assert.equal(top[lp.tokens![i]], lp.token_logprobs![i]);
    }
    assert.deepEqual(lp.text_offset, lp.tokens!.map((_, i) => lp.tokens!.slice(0, i).join('').length));
  });

  test('token-id prompts, and echo', async () => {
    const ids = gpt2.tokenizer.encode('The cat sat');
    const byIds = await client.completions.create({ model: GPT2, prompt: ids, max_tokens: 5, temperature: 0 });
    const byText = await client.completions.create({ model: GPT2, prompt: 'The cat sat', max_tokens: 5, temperature: 0, echo: true });
    assert.equal(byText.choices[0].text, 'The cat sat' + byIds.choices[0].text);
  });

  test('beam search through num_beams: the n best beams are the choices', async () => {
    const r = await client.completions.create({ model: GPT2, prompt: 'one', max_tokens: 6, n: 2, num_beams: 3 } as OpenAI.CompletionCreateParamsNonStreaming);
    const want = await gpt2.generate('one', { maxNewTokens: 6, numBeams: 3, numReturnSequences: 2 });
    assert.deepEqual(r.choices.map((c) => c.text), want.sequences!.map((s) => s.text));
  });
});

describe('chat completions', () => {
  const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'What is a cat?' }];
  const prompt = () => llama.tokenizer.encode(renderChat(parseTemplate(llama.tokenizer.chatTemplate())!, llama.tokenizer, messages as never, true), false);

  test('the reply to the rendered template equals the library\'s, streaming and not', async () => {
    const r = await client.chat.completions.create({ model: LLAMA, messages, max_tokens: 10, temperature: 0 });
    const [want] = await llama.generateIds([prompt()], { maxNewTokens: 10, temperature: 0 });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(r.choices[0].message.content, llama.tokenizer.decode(want.ids));
    assert.equal(r.usage!.prompt_tokens, prompt().length);
    const stream = await client.chat.completions.create({ model: LLAMA, messages, max_tokens: 10, temperature: 0, stream: true });
    let text = '', role: string | undefined, finish: string | null = null, chunks = 0;
    for await (const chunk of stream) {
      assert.equal(chunk.object, 'chat.completion.chunk');
      if (chunks++ === 0) role = chunk.choices[0].delta.role;
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(role, 'assistant');
    assert.equal(text, r.choices[0].message.content);
    assert.equal(finish, r.choices[0].finish_reason);
  });

  test('developer messages and text parts render as system messages and strings', async () => {
    const a = await client.chat.completions.create({ model: LLAMA, max_tokens: 6, temperature: 0, messages: [{ role: 'developer', content: [{ type: 'text', text: 'be ' }, { type: 'text', text: 'brief' }] }, { role: 'user', content: 'What is a cat?' }] });
    const b = await client.chat.completions.create({ model: LLAMA, messages, max_tokens: 6, temperature: 0 });
    assert.equal(a.choices[0].message.content, b.choices[0].message.content);
    assert.equal(a.usage!.prompt_tokens, b.usage!.prompt_tokens);
  });

  test('log-probs in chat\'s shape; max_completion_tokens; without max tokens the reply may fill the context', async () => {
    const r = await client.chat.completions.create({ model: LLAMA, messages, max_completion_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 2 });
    const content = r.choices[0].logprobs!.content!;
    assert.equal(content.length, r.usage!.completion_tokens);
    assert.equal(content.length, 5);
    for (const t of content) {
      assert.equal(t.top_logprobs.length, 2);
      assert.deepEqual(t.bytes, Array.from(Buffer.from(t.token, 'utf8')));
      assert.ok(t.logprob <= 0);
    }
    const long = await client.chat.completions.create({ model: LLAMA, messages, temperature: 0, ignore_eos: true } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    assert.equal(long.usage!.total_tokens, 256);
    assert.equal(long.choices[0].finish_reason, 'length');
  });

  test('a GGUF file\'s chat template (tokenizer.chat_template) serves the same conversation as its source directory', async () => {
    const gguf = await loadGenerator(join(fixture('gguf'), 'llama-tiny.gguf'));
    const other = await start([{ id: 'gguf', created: 1, kind: 'causal-lm', generator: gguf }]);
    try {
      const a = await other.client.chat.completions.create({ model: 'gguf', messages, max_tokens: 8, temperature: 0 });
      const b = await client.chat.completions.create({ model: LLAMA, messages, max_tokens: 8, temperature: 0 });
      assert.equal(a.usage!.prompt_tokens, b.usage!.prompt_tokens);
      assert.equal(a.choices[0].message.content, b.choices[0].message.content);
    } finally {
      await other.server.app.close();
      gguf.dispose();
    }
  });

  test('a model without a chat template, tools and json output are refused by name', async () => {
    await assert.rejects(client.chat.completions.create({ model: GPT2, messages }), (e: ApiErr) => e.status === 400 && /no chat template/.test(e.message));
    await assert.rejects(client.chat.completions.create({ model: LLAMA, messages, tools: [{ type: 'function', function: { name: 'f' } }] }), (e: ApiErr) => e.status === 400 && /tools/.test(e.message));
    await assert.rejects(client.chat.completions.create({ model: LLAMA, messages, response_format: { type: 'json_object' } }), (e: ApiErr) => e.status === 400 && /response_format/.test(e.message));
  });
});

describe('embeddings', () => {
  test('unit vectors equal to the library\'s (base64, as the client asks by default, and float)', async () => {
    const input = ['a short one', 'and a rather longer sentence here'];
    const want = bert.embed(input, { normalize: true });
    const b64 = await client.embeddings.create({ model: BERT, input });
    const floats = await client.embeddings.create({ model: BERT, input, encoding_format: 'float' });
    for (const r of [b64, floats]) {
      assert.equal(r.data.length, 2);
      r.data.forEach((d, i) => assert.deepEqual(Float32Array.from(d.embedding), want[i]));
    }
    const tokens = input.reduce((a, t) => a + bert.tokenizer.encode(t).length, 0);
    assert.deepEqual(b64.usage, { prompt_tokens: tokens, total_tokens: tokens });
    const ids = await client.embeddings.create({ model: BERT, input: input.map((t) => bert.tokenizer.encode(t)), encoding_format: 'float' });
    assert.deepEqual(ids.data.map((d) => d.embedding), floats.data.map((d) => d.embedding));
  });

  test('a sentence-transformers directory embeds as the library does with the directory\'s defaults', async () => {
    const st = await loadEmbedder(fixture('st-mini'));
    const other = await start([{ id: 'st', created: 1, kind: 'encoder', embedder: st }]);
    try {
      const input = ['one sentence', 'and another one'];
      const r = await other.client.embeddings.create({ model: 'st', input, encoding_format: 'float' });
      const want = st.embed(input);
      r.data.forEach((d, i) => assert.deepEqual(Float32Array.from(d.embedding), want[i]));
    } finally {
      await other.server.app.close();
      st.dispose();
    }
  });

  test('dimensions other than the model\'s and a generator are refused', async () => {
    await assert.rejects(client.embeddings.create({ model: BERT, input: 'x', dimensions: 4 }), (e: ApiErr) => e.status === 400 && e.param === 'dimensions');
    await assert.rejects(client.embeddings.create({ model: GPT2, input: 'x' }), (e: ApiErr) => e.status === 400 && /text generator/.test(e.message));
  });
});

describe('errors', () => {
  const status = (s: number, pattern: RegExp) => (e: ApiErr) => {
    assert.equal(e.status, s, e.message);
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes('\n'));
    return true;
  };

  test('bad bodies: unknown fields, wrong types and values name the field (400)', async () => {
    await assert.rejects(client.completions.create({ model: GPT2, prompt: 'x', bogus: 1 } as never), status(400, /unknown field "bogus"/));
    await assert.rejects(client.completions.create({ model: GPT2, prompt: 5 } as never), status(400, /prompt must be/));
    await assert.rejects(client.completions.create({ model: GPT2, prompt: 'x', temperature: -1 }), status(400, /temperature must be >= 0/));
    await assert.rejects(client.chat.completions.create({ model: LLAMA, messages: [{ role: 'robot', content: 'x' }] } as never), status(400, /messages\[0\]\.role must be one of/));
    await assert.rejects(client.completions.create({ model: GPT2, prompt: 'x', logit_bias: { 5: 3 } }), status(400, /logit_bias 3/));
    await assert.rejects(client.completions.create({ model: GPT2, prompt: 'x', suffix: 'y' }), status(400, /suffix/));
    await assert.rejects(client.completions.create({ model: GPT2, prompt: [[1, 2], [99999]] }), status(400, /vocabulary|token/));
  });

  test('context and max_tokens limits (400)', async () => {
    await assert.rejects(client.completions.create({ model: GPT2, prompt: 'x', max_tokens: 1000 }), status(400, /beyond the model's 64/));
    const long = Array.from({ length: 300 }, () => 'cat').join(' ');
    await assert.rejects(client.chat.completions.create({ model: LLAMA, messages: [{ role: 'user', content: long }] }), status(400, /no room to answer/));
  });

  test('an unknown model or route (404); a body too large (413)', async () => {
    await assert.rejects(client.completions.create({ model: 'nope', prompt: 'x' }), status(404, /not served here/));
    const r = await fetch(`${base}/v1/nothing`);
    assert.equal(r.status, 404);
    assert.equal(((await r.json()) as ApiBody).error.code, 'unknown_url');
    const big = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: GPT2, prompt: 'x'.repeat(5 * 2 ** 20) }) });
    assert.equal(big.status, 413);
    assert.equal(((await big.json()) as ApiBody).error.type, 'invalid_request_error');
  });

  test('logit_bias -100 bans a token', async () => {
    const first = await client.completions.create({ model: GPT2, prompt: 'a b', max_tokens: 1, temperature: 0, logprobs: 0 });
    const id = gpt2.tokenizer.encode(first.choices[0].logprobs!.tokens![0])[0];
    const banned = await client.completions.create({ model: GPT2, prompt: 'a b', max_tokens: 1, temperature: 0, logit_bias: { [id]: -100 } });
    assert.notEqual(banned.choices[0].text, first.choices[0].text);
  });

  test('an API key is required on every endpoint but /health (401); a full queue answers 429', async () => {
    const keyed = await start(served(), { apiKey: 'sesame', maxQueue: 2 });
    try {
      await assert.rejects(keyed.client.completions.create({ model: GPT2, prompt: 'x' }), status(401, /API key is not valid/));
      assert.equal((await fetch(`${keyed.base}/v1/models`)).status, 401);
      assert.equal((await fetch(`${keyed.base}/metrics`)).status, 401);
      assert.equal((await fetch(`${keyed.base}/health`)).status, 200);
      const ok = new OpenAI({ baseURL: `${keyed.base}/v1`, apiKey: 'sesame', maxRetries: 0 });
      assert.equal((await ok.models.list()).data.length, 3);
      await assert.rejects(ok.completions.create({ model: GPT2, prompt: 'x', n: 3 }), status(429, /busy/));
      const r = await ok.completions.create({ model: GPT2, prompt: 'x', n: 2, max_tokens: 2 });
      assert.equal(r.choices.length, 2);
    } finally {
      await keyed.server.app.close();
    }
  });

  test('a failing request leaves the others untouched', async () => {
    const body = { model: LLAMA, prompt: 'steady', max_tokens: 12, temperature: 0 };
    const alone = await client.completions.create(body);
    const [good, bad] = await Promise.allSettled([client.completions.create(body), client.completions.create({ ...body, prompt: [[1], [100000]] })]);
    assert.equal(good.status, 'fulfilled');
    assert.equal((good as PromiseFulfilledResult<OpenAI.Completion>).value.choices[0].text, alone.choices[0].text);
    assert.equal(bad.status, 'rejected');
  });
});

describe('concurrency and cancellation', () => {
  test('100 concurrent streams each get exactly the tokens they get alone', async () => {
    const words = ['river', 'stone', 'night', 'open', 'glass', 'seven', 'blue', 'quiet'];
    const bodies = Array.from({ length: 100 }, (_, i) => ({
      model: i % 3 === 0 ? GPT2 : LLAMA,
      prompt: Array.from({ length: 1 + (i % 7) }, (_, k) => words[(i + k) % words.length]).join(' '),
      max_tokens: 4 + (i % 13), temperature: i % 4 === 0 ? 0 : 0.9, seed: 1000 + i, logprobs: 0,
    }));
    const streamed = async (b: (typeof bodies)[number]) => {
      const stream = await client.completions.create({ ...b, stream: true });
      const tokens: string[] = [];
      let text = '', finish: string | null = null;
      for await (const chunk of stream) {
        text += chunk.choices[0].text;
        tokens.push(...chunk.choices[0].logprobs!.tokens!);
        finish = chunk.choices[0].finish_reason ?? finish;
      }
      return { text, tokens, finish };
    };
    const together = await Promise.all(bodies.map(streamed));
    for (const [i, b] of bodies.entries()) {
      const alone = await streamed(b);
      assert.deepEqual(together[i], alone, `request ${i}`);
    }
  });

  test('a client that disconnects mid-stream cancels its sequence and frees its blocks (metrics show it)', async () => {
    const blocks = `model="${LLAMA}"`;
    const baseline = await metric('peregrine_kv_blocks_used', blocks);
    const generatedBefore = await metric('peregrine_generation_tokens_total', blocks);
    const abort = new AbortController();
    const r = await fetch(`${base}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, signal: abort.signal,
      body: JSON.stringify({ model: LLAMA, prompt: 'a long story', max_tokens: 240, ignore_eos: true, temperature: 0, stream: true }),
    });
    const reader = r.body!.getReader();
    await reader.read();
    assert.ok(await metric('peregrine_kv_blocks_used', blocks) > baseline, 'the stream holds KV blocks while it runs');
    abort.abort();
    for (let i = 0; i < 200 && (await metric('peregrine_running_sequences', blocks)) > 0; i++) await new Promise((f) => setTimeout(f, 10));
    assert.equal(await metric('peregrine_kv_blocks_used', blocks), baseline);
    assert.equal(await metric('peregrine_running_sequences', blocks), 0);
    const generated = (await metric('peregrine_generation_tokens_total', blocks)) - generatedBefore;
    assert.ok(generated < 240, `the sequence was cancelled (it generated ${generated} of 240 tokens)`);
    assert.equal(server.state.admission.inFlight, 0);
  });

  test('a stream interval of 4 sends the same text and log-probs in a quarter of the chunks', async () => {
    const other = await start(served(), { streamInterval: 4 });
    try {
      const body = { model: LLAMA, prompt: 'an interval', max_tokens: 10, temperature: 0, logprobs: 1, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming;
      const whole = await client.completions.create(body);
      const stream = await other.client.completions.create({ ...body, stream: true });
      let text = '', chunks = 0, finish: string | null = null;
      const tokens: string[] = [], logprobs: number[] = [];
      for await (const chunk of stream) {
        chunks++;
        text += chunk.choices[0].text;
        tokens.push(...chunk.choices[0].logprobs!.tokens!);
        logprobs.push(...chunk.choices[0].logprobs!.token_logprobs!);
        finish = chunk.choices[0].finish_reason ?? finish;
      }
      assert.equal(chunks, 3);
      assert.equal(text, whole.choices[0].text);
      assert.deepEqual(tokens, whole.choices[0].logprobs!.tokens);
      assert.deepEqual(logprobs, whole.choices[0].logprobs!.token_logprobs);
      assert.equal(finish, 'length');
    } finally {
      await other.server.app.close();
    }
  });

  test('/health, /v1/models and /metrics', async () => {
    assert.deepEqual(await (await fetch(`${base}/health`)).json(), { status: 'ok' });
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), [LLAMA, GPT2, BERT]);
    assert.equal((await client.models.retrieve(BERT)).id, BERT);
    const text = await (await fetch(`${base}/metrics`)).text();
    for (const name of ['peregrine_queue_depth', 'peregrine_running_sequences', 'peregrine_waiting_sequences', 'peregrine_kv_blocks_used', 'peregrine_prompt_tokens_total',
      'peregrine_generation_tokens_total', 'peregrine_time_to_first_token_seconds_bucket', 'peregrine_inter_token_latency_seconds_bucket', 'peregrine_requests_total']) {
      assert.ok(text.includes(name), name);
    }
    assert.ok(await metric('peregrine_requests_total', 'endpoint="/v1/completions",status="200"') > 0);
    assert.ok(await metric('peregrine_requests_total', 'status="400"') > 0);
  });
});

describe('an encoder-decoder model', () => {
  test('completions translate the prompt as the library does: greedy, streamed, and the best beams as choices', async () => {
    const t5 = await loadGenerator(fixture('t5-tiny'));
    const other = await start([{ id: 't5', created: 1, kind: 'causal-lm', generator: t5 }]);
    try {
      const prompt = 'translate English to German: the house is small';
      const greedy = await t5.generate(prompt, { maxNewTokens: 8, temperature: 0 });
      const r = await other.client.completions.create({ model: 't5', prompt, max_tokens: 8, temperature: 0 });
      assert.equal(r.choices[0].text, greedy.text);
      assert.equal(r.usage!.completion_tokens, greedy.ids.length);
      let streamed = '';
      for await (const chunk of await other.client.completions.create({ model: 't5', prompt, max_tokens: 8, temperature: 0, stream: true })) {
        streamed += chunk.choices[0].text;
      }
      assert.equal(streamed, greedy.text);
      const beams = await t5.generate(prompt, { maxNewTokens: 8, numBeams: 3, numReturnSequences: 2 });
      const b = await other.client.completions.create({ model: 't5', prompt, max_tokens: 8, n: 2, num_beams: 3 } as never);
      assert.deepEqual(b.choices.map((c) => c.text), beams.sequences!.map((s) => s.text));
    } finally {
      await other.server.app.close();
      t5.dispose();
    }
  });
});
