// A parallel group over several processes (--nodes, --node-rank, --master-addr, --master-port): node 0 loads the
// generator in this process and drives the others, which run the peregrine CLI with --node-rank k as another host would
// and join it over TCP on localhost. The rows between ranks cross the connections (between two followers, through the
// leader), and the sums are made in the same order as between threads, so the tokens and log-probs are the in-process
// group's bit for bit. A process that ends ends the job on every other one at once, with the rank named; settings
// that differ between nodes, and a leader that never comes, are refused by name.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import { createNetHandle } from '../src/backends/cpu/net-group.js';
import { agreement, startBridge } from '../src/engine/net/nodes.js';
import { readMessages, writeMessage, type Agreement, type Message } from '../src/engine/net/wire.js';
import { loadGenerator, type GenerationResult, type LoadOptions } from '../src/index.js';
import { copyFixture } from './helpers/fixture-copy.js';
import { CLI, fixture } from './helpers/fixtures.js';
import { alone, together, tokensOf, workload } from './helpers/generation.js';
import { widenVocab } from './helpers/vocab.js';

const PROMPTS = [[1, 15, 27, 3, 99, 4], [7], [2, 200, 31, 31, 31, 8, 60, 5, 11]];

/** A port nothing listens on now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

interface Node {
  child: ChildProcess;
  /** the process's exit code and its stderr, once it ends */
  done: Promise<{ code: number | null; stderr: string }>;
}

/** `peregrine generate` as node `rank` of `nodes`, its leader on `port`, with `flags` (the model's and the group's). */
function node(dir: string, rank: number, nodes: number, port: number, flags: string[]): Node {
  const child = spawn(process.execPath, [CLI, 'generate', '-m', dir, '--device', 'cpu', '-p', 'ignored by a node that is not the leader', ...flags,
    '--nodes', String(nodes), '--node-rank', String(rank), '--master-port', String(port), '--join-timeout', '30'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  return { child, done: new Promise((resolve) => child.on('close', (code) => resolve({ code, stderr }))) };
}

async function generations(dir: string, options: LoadOptions): Promise<GenerationResult[]> {
  const gen = await loadGenerator(dir, { device: 'cpu', ...options });
  try {
    const out: GenerationResult[] = [];
    for (const p of PROMPTS) out.push((await gen.generateIds([p], { maxNewTokens: 8, stopAtEos: false, logprobs: true }))[0]);
    out.push(...await gen.generateIds(PROMPTS, { maxNewTokens: 8, stopAtEos: false, logprobs: true }));
    return out;
  } finally {
    gen.dispose();
  }
}

/** The generations of a group of `nodes` processes, this one the leader, the others CLI processes; they end with 0. */
async function overNodes(dir: string, nodes: number, tensor: number, stages: number): Promise<GenerationResult[]> {
  const port = await freePort(), flags = ['--tensor-parallel', String(tensor), '--pipeline-parallel', String(stages)];
  const others = Array.from({ length: nodes - 1 }, (_, i) => node(dir, i + 1, nodes, port, flags));
  const got = await generations(dir, { tensorParallel: tensor, pipelineParallel: stages, nodes: { count: nodes, rank: 0, masterPort: port, joinTimeout: 30 } });
  for (const [i, o] of others.entries()) {
    const { code, stderr } = await o.done;
    assert.equal(code, 0, `node ${i + 1} ends cleanly once the leader disposes its model: ${stderr}`);
  }
  return got;
}

/** Node `n` as a script: joins the leader's bridge on `port` with `a`; next() is the next message it gets, or 'closed'. */
async function scripted(port: number, n: number, a: Agreement): Promise<{ socket: Socket; next(): Promise<Message | 'closed'> }> {
  for (let tries = 0; ; tries++) {
    const socket = connect(port, '127.0.0.1');
    const ok = await new Promise<boolean>((resolve) => {
      socket.once('connect', () => resolve(true));
      socket.once('error', () => resolve(false));
    });
    if (!ok) {
      // the bridge thread is not listening yet
      if (tries === 100) throw new Error(`no leader on port ${port}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
      continue;
    }
    const got: Message[] = [];
    let closed = false, wake = () => {};
    readMessages(socket, (m) => (got.push(m), wake()), () => {});
    socket.on('close', () => ((closed = true), wake()));
    writeMessage(socket, { t: 'hello', node: n, agreement: a });
    const next = async () => {
      while (!got.length && !closed) await new Promise<void>((resolve) => (wake = resolve));
      return got.shift() ?? 'closed';
    };
    return { socket, next };
  }
}

describe('a parallel group over several processes (--nodes)', () => {
  test('gpt2-tiny, 2 pipeline stages on 2 nodes: one whole model\'s tokens and log-probs, bit for bit', async () => {
    const dir = fixture('gpt2-tiny');
    assert.deepEqual(await overNodes(dir, 2, 1, 2), await generations(dir, {}));
  });

  test('gpt2-tiny, 3 stages on 3 nodes: the rows between nodes 1 and 2 pass through the leader', async () => {
    const dir = fixture('gpt2-tiny');
    assert.deepEqual(await overNodes(dir, 3, 1, 3), await generations(dir, {}));
  });

  test('the leader\'s bridge passes on rows between two followers after its bye, until they close their connections', async () => {
    // the last stage sends its logits to rank 0 before rank 1: the leader can dispose its model, and its bridge say
    // bye, while the rows for rank 1 are still on their way through it
    const dir = fixture('gpt2-tiny'), port = await freePort();
    const options: LoadOptions = { device: 'cpu', pipelineParallel: 3, nodes: { count: 3, rank: 0, masterPort: port } };
    const bridge = startBridge(dir, createNetHandle(3, 1, 0, 1), options, 1, 3);
    const exited = new Promise<number>((resolve) => bridge.on('exit', resolve));
    try {
      const a = agreement(dir, options, 1, 3), one = await scripted(port, 1, a), two = await scripted(port, 2, a);
      assert.deepEqual([await one.next(), await two.next()], [{ t: 'welcome' }, { t: 'welcome' }]);
      bridge.postMessage({ bye: true });
      assert.deepEqual([await one.next(), await two.next()], [{ t: 'bye' }, { t: 'bye' }]);
      const rows: Message = { t: 'rows', from: 2, to: 1, data: new Float32Array([1, 2, 3]) };
      writeMessage(two.socket, rows);
      assert.deepEqual(await one.next(), rows);
      // once both have closed, the bridge ends (not after its wait for followers that never close)
      const closedAt = Date.now();
      one.socket.end();
      two.socket.end();
      assert.equal(await exited, 0);
      assert.ok(Date.now() - closedAt < 5000, `the bridge ended ${Date.now() - closedAt} ms after the followers closed`);
    } finally {
      void bridge.terminate();
    }
  });

  test('peregrine generate as the leader: it disposes its model once it has printed, so its nodes end with 0', async () => {
    const dir = fixture('gpt2-tiny'), port = await freePort();
    const other = node(dir, 1, 2, port, ['--pipeline-parallel', '2']);
    const leader = node(dir, 0, 2, port, ['--pipeline-parallel', '2', '-n', '4']);
    const [a, b] = await Promise.all([leader.done, other.done]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
  });

  test('llama-tiny, 2 stages of 2 tensor-parallel ranks on 2 nodes of 2 ranks: the threads-only group\'s tokens and log-probs, bit for bit', async () => {
    const dir = widenVocab(fixture('llama-tiny'), 1);
    assert.deepEqual(await overNodes(dir, 2, 2, 2), await generations(dir, { tensorParallel: 2, pipelineParallel: 2 }));
  });

  test('42 mixed requests, preempted and swapped, through 2 nodes: the whole model\'s tokens', async () => {
    const dir = fixture('llama-tiny'), work = workload(42), port = await freePort();
    const whole = await loadGenerator(dir, { device: 'cpu' });
    const want = await alone(whole, work);
    whole.dispose();
    // a pool of 11 blocks of 16 tokens for 8 sequences of up to 64
    const runtime = ['--max-batch', '8', '--prefill-chunk', '32', '--kv-blocks', '12'];
    const other = node(dir, 1, 2, port, ['--pipeline-parallel', '2', ...runtime]);
    const gen = await loadGenerator(dir, { device: 'cpu', pipelineParallel: 2, maxBatch: 8, prefillChunk: 32, kvBlocks: 12, nodes: { count: 2, rank: 0, masterPort: port } });
    assert.deepEqual(tokensOf(await together(gen, work, 3, 4)), tokensOf(want));
    const stats = gen.scheduler.stats();
    assert.ok(stats.preemptions > 0 && stats.swapOuts > 0, `preempted caches were swapped out and back on both nodes (${stats.preemptions} preemptions, ${stats.swapOuts} swaps)`);
    gen.dispose();
    assert.equal((await other.done).code, 0);
  });

  test('a node killed mid-generation ends the leader\'s requests within seconds, naming its rank', async () => {
    const dir = fixture('gpt2-tiny'), port = await freePort();
    const other = node(dir, 1, 2, port, ['--pipeline-parallel', '2']);
    const gen = await loadGenerator(dir, { device: 'cpu', pipelineParallel: 2, nodes: { count: 2, rank: 0, masterPort: port } });
    let tokens = 0, killedAt = 0;
    const run = (async () => {
      for await (const _ of gen.streamIds([[1, 2, 3]], { maxNewTokens: 60, stopAtEos: false })) {
        if (++tokens === 3) {
          killedAt = Date.now();
          other.child.kill('SIGKILL');
        }
      }
    })();
    // said by the leader's own rank, blocked in a collective ("stopped (why), so rank 0's job ends too"), or by the
    // call that launches the next step ("stopped: why"), whichever meets the stop first
    await assert.rejects(run, /rank 1 of the parallel group stopped(: | \()node 1 \(ranks 1 to 1\) closed its connection/);
    const waited = Date.now() - killedAt;
    assert.ok(killedAt > 0 && waited < 5000, `the leader noticed in ${waited} ms`);
    gen.dispose();
  });

  test('a rank of another node whose load fails ends the leader\'s load with its reason, naming the rank', async () => {
    // two copies of llama-tiny with one config.json; the second lacks a tensor of layer 1, which only stage 1 loads
    const copy = (drop: string) => copyFixture(fixture('llama-tiny'), 'peregrine-nodes-', (store) => ({
      tensors: store.names().filter((n) => n !== drop).map((name) => ({ name, dtype: store.info(name).dtype, shape: store.info(name).shape, data: store.readBytes(name) })),
      config: {},
    }));
    const whole = copy(''), broken = copy('model.layers.1.mlp.down_proj.weight'), port = await freePort();
    const other = node(broken, 1, 2, port, ['--pipeline-parallel', '2']);
    await assert.rejects(loadGenerator(whole, { device: 'cpu', pipelineParallel: 2, nodes: { count: 2, rank: 0, masterPort: port } }),
      /rank 1 of the parallel group stopped: .*model\.layers\.1\.mlp\.down_proj\.weight/);
    const { code, stderr } = await other.done;
    assert.equal(code, 1);
    assert.match(stderr, /model\.layers\.1\.mlp\.down_proj\.weight/);
  });

  test('the leader killed ends the other node within seconds, with the leader named', async () => {
    const dir = fixture('gpt2-tiny'), port = await freePort(), flags = ['--pipeline-parallel', '2'];
    const leader = spawn(process.execPath, [CLI, 'chat', '-m', dir, '--device', 'cpu', '-n', '4', ...flags, '--nodes', '2', '--master-port', String(port)],
      { stdio: ['pipe', 'pipe', 'ignore'] });
    const other = node(dir, 1, 2, port, flags);
    // killed once it has answered a turn through both nodes, with its stdin still open for the next
    leader.stdin!.write('hello\n');
    await new Promise<void>((resolve) => leader.stdout!.once('data', () => resolve()));
    const killedAt = Date.now();
    leader.kill('SIGKILL');
    const { code, stderr } = await other.done;
    assert.equal(code, 1);
    assert.match(stderr, /^peregrine: error: rank 0 of the parallel group stopped: the leader \(node 0\) closed its connection/m);
    assert.ok(Date.now() - killedAt < 5000);
  });

  test('a node whose settings differ is refused by name, on both sides', async () => {
    const dir = fixture('gpt2-tiny'), port = await freePort();
    const other = node(dir, 1, 2, port, ['--pipeline-parallel', '2', '--max-batch', '4']);
    await assert.rejects(loadGenerator(dir, { device: 'cpu', pipelineParallel: 2, nodes: { count: 2, rank: 0, masterPort: port } }),
      /node 1's settings differ: load options \{"device":"cpu","maxBatch":4\} where the leader has \{"device":"cpu"\}/);
    const { code, stderr } = await other.done;
    assert.equal(code, 1);
    assert.match(stderr, /refused node 1: node 1's settings differ/);
    // another model (at whatever path): its config.json differs
    const port2 = await freePort(), stranger = node(fixture('llama-tiny'), 1, 2, port2, ['--pipeline-parallel', '2']);
    await assert.rejects(loadGenerator(dir, { device: 'cpu', pipelineParallel: 2, nodes: { count: 2, rank: 0, masterPort: port2 } }),
      /node 1's settings differ: model config\.json [0-9a-f]{16} where the leader has config\.json [0-9a-f]{16}/);
    assert.equal((await stranger.done).code, 1);
  });

  test('a node with no leader to join gives up after --join-timeout, saying where it looked', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [CLI, 'generate', '-m', fixture('gpt2-tiny'), '--device', 'cpu', '--pipeline-parallel', '2', '--nodes', '2', '--node-rank', '1',
      '--master-port', String(port), '--join-timeout', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d));
    const code = await new Promise((resolve) => child.on('close', resolve));
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`node 1 could not reach the leader at 127\\.0\\.0\\.1:${port} within 1 s`));
  });

  test('node options are checked by name before anything starts', async () => {
    const dir = fixture('gpt2-tiny');
    await assert.rejects(loadGenerator(dir, { device: 'cpu', pipelineParallel: 3, nodes: { count: 2, rank: 0 } }), /3 ranks \(tensor parallel 1 x pipeline parallel 3\) do not split evenly over 2 nodes/);
    await assert.rejects(loadGenerator(dir, { device: 'cpu', pipelineParallel: 2, nodes: { count: 2, rank: 2 } }), /node rank must be one of 0 to 1 \(--nodes 2\), got 2/);
    await assert.rejects(loadGenerator(dir, { device: 'cpu', pipelineParallel: 2, nodes: { count: 2, rank: 1 } }), /node rank 1 runs the leader's calls: start it with runNode/);
    await assert.rejects(loadGenerator(dir, { device: 'cpu', pipelineParallel: 2, nodes: { count: 2, rank: 0, masterPort: 70000 } }), /master port must be a whole number from 1 to 65535, got 70000/);
    await assert.rejects(loadGenerator(dir, { device: 'cuda', pipelineParallel: 2, nodes: { count: 2, rank: 0 } }), /run on the CPU backend only for now/);
  });
});
