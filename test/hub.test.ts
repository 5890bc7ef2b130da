import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isHubId, resolveModelDir, type HubOptions } from '../src/loaders/hub.js';
import { PeregrineError, type ErrorCode } from '../src/errors.js';
import { HubServer, baseFiles, fakeSha, json } from './helpers/hub-server.js';

const hub = new HubServer();
const plain = { sha: fakeSha(), files: { ...baseFiles(), 'generation_config.json': json({ do_sample: false }), 'model.safetensors': randomBytes(64 * 1024) }, lfs: new Set(['model.safetensors']) };
const shard1 = randomBytes(20 * 1024);
const shard2 = randomBytes(12 * 1024);
const sharded = {
  sha: fakeSha(),
  files: {
    ...baseFiles(),
    'model.safetensors.index.json': json({ metadata: { total_size: 32768 }, weight_map: { 'a.weight': 'model-00001-of-00002.safetensors', 'b.weight': 'model-00002-of-00002.safetensors', 'c.weight': 'model-00001-of-00002.safetensors' } }),
    'model-00001-of-00002.safetensors': shard1,
    'model-00002-of-00002.safetensors': shard2,
  },
  lfs: new Set(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']),
};
const noWeights = { sha: fakeSha(), files: { ...baseFiles(), 'flax_model.msgpack': randomBytes(1024), 'tf_model.h5': randomBytes(1024) }, lfs: new Set(['flax_model.msgpack', 'tf_model.h5']) };

const tempDirs: string[] = [];
function freshCache(): string {
  const dir = mkdtempSync(join(tmpdir(), 'peregrine-hub-test-'));
  tempDirs.push(dir);
  return dir;
}

function opts(cacheDir: string, extra: HubOptions = {}): HubOptions {
  return { cacheDir, endpoint: hub.endpoint, progress: false, offline: false, token: '', ...extra };
}

async function rejectsWith(p: Promise<unknown>, code: ErrorCode, pattern?: RegExp): Promise<PeregrineError> {
  let caught: unknown;
  await p.then(() => assert.fail(`expected a PeregrineError '${code}', but the call succeeded`), (err: unknown) => { caught = err; });
  assert.ok(caught instanceof PeregrineError, `expected a PeregrineError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  assert.ok(!caught.message.includes('\n'), `message is not one line: ${caught.message}`);
  if (pattern) assert.match(caught.message, pattern);
  return caught;
}

before(async () => {
  await hub.start();
  hub.repos.set('tester/plain', plain);
  hub.repos.set('tester/sharded', sharded);
  hub.repos.set('tester/noweights', noWeights);
  hub.repos.set('solo', { ...plain, sha: fakeSha() });
});

after(async () => {
  await hub.stop();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

describe('hub downloads', () => {
  test('fresh download: identical bytes, cache layout, no file requests the second time', async () => {
    const cache = freshCache();
    const before = hub.fileRequests().length;
    const dir = await resolveModelDir('tester/plain', opts(cache));
    assert.equal(dir, join(cache, 'models--tester--plain', 'snapshots', plain.sha));
    for (const name of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'model.safetensors']) {
      assert.ok(readFileSync(join(dir, name)).equals(plain.files[name as keyof typeof plain.files]), `${name} differs`);
    }
    assert.ok(!existsSync(join(dir, 'README.md')), 'README.md should not be downloaded');
    assert.ok(existsSync(join(dir, '.peregrine-complete')));
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.incomplete')), []);
    assert.equal(readFileSync(join(cache, 'models--tester--plain', 'refs', 'main'), 'utf8'), plain.sha);
    assert.equal(hub.fileRequests().length - before, 5 + 1, 'five files, model.safetensors via one redirect');

    const count = hub.fileRequests().length;
    assert.equal(await resolveModelDir('tester/plain', opts(cache)), dir);
    assert.equal(hub.fileRequests().length, count, 'second call must not request files');
  });

  test('one-part id uses models--{name}', async () => {
    const cache = freshCache();
    const dir = await resolveModelDir('solo', opts(cache));
    assert.equal(dir, join(cache, 'models--solo', 'snapshots', hub.repos.get('solo')!.sha));
    assert.ok(existsSync(join(dir, 'model.safetensors')));
  });

  test('sharded repo: index and both shards', async () => {
    const cache = freshCache();
    const dir = await resolveModelDir('tester/sharded', opts(cache));
    assert.ok(readFileSync(join(dir, 'model.safetensors.index.json')).equals(sharded.files['model.safetensors.index.json']));
    assert.ok(readFileSync(join(dir, 'model-00001-of-00002.safetensors')).equals(shard1));
    assert.ok(readFileSync(join(dir, 'model-00002-of-00002.safetensors')).equals(shard2));
    const marker = JSON.parse(readFileSync(join(dir, '.peregrine-complete'), 'utf8')) as { files: { name: string; size: number }[] };
    assert.deepEqual(marker.files.map((f) => f.name).sort(), ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'tokenizer.json', 'tokenizer_config.json']);
  });

  test('resume: a broken connection keeps the partial file and the next call continues with Range', async () => {
    const cache = freshCache();
    const snapshot = join(cache, 'models--tester--plain', 'snapshots', plain.sha);
    hub.breakOnce.add('model.safetensors');
    await rejectsWith(resolveModelDir('tester/plain', opts(cache)), 'download', /resume/);
    const partial = join(snapshot, 'model.safetensors.incomplete');
    const have = statSync(partial).size;
    assert.ok(have > 0 && have < plain.files['model.safetensors'].length, `partial size ${have}`);
    assert.ok(!existsSync(join(snapshot, '.peregrine-complete')));

    const from = hub.log.length;
    const dir = await resolveModelDir('tester/plain', opts(cache));
    const ranges = hub.log.slice(from).filter((r) => r.range !== undefined);
    assert.ok(ranges.length > 0, 'second call sent no Range header');
    assert.ok(ranges.every((r) => r.range === `bytes=${have}-`), JSON.stringify(ranges));
    assert.ok(readFileSync(join(dir, 'model.safetensors')).equals(plain.files['model.safetensors']));
    assert.ok(!existsSync(partial));
  });

  test('wrong bytes (sha256 mismatch) -> download error and no file left in place', async () => {
    const cache = freshCache();
    const snapshot = join(cache, 'models--tester--plain', 'snapshots', plain.sha);
    hub.corrupt.add('model.safetensors');
    try {
      await rejectsWith(resolveModelDir('tester/plain', opts(cache)), 'download', /model\.safetensors.*sha256 mismatch.*run the command again/);
    } finally {
      hub.corrupt.delete('model.safetensors');
    }
    assert.ok(!existsSync(join(snapshot, 'model.safetensors')));
    assert.ok(!existsSync(join(snapshot, 'model.safetensors.incomplete')));
    assert.ok(!existsSync(join(snapshot, '.peregrine-complete')));
  });

  test('wrong bytes in a non-LFS file (git blob id mismatch) -> download error', async () => {
    const cache = freshCache();
    hub.corrupt.add('tokenizer.json');
    try {
      await rejectsWith(resolveModelDir('tester/plain', opts(cache)), 'download', /tokenizer\.json.*blob id mismatch/);
    } finally {
      hub.corrupt.delete('tokenizer.json');
    }
    assert.ok(!existsSync(join(cache, 'models--tester--plain', 'snapshots', plain.sha, 'tokenizer.json')));
  });

  test('offline: cached model resolves without requests; empty cache -> cache error; unreachable hub -> cache used', async () => {
    const cache = freshCache();
    const dir = await resolveModelDir('tester/plain', opts(cache));
    const count = hub.log.length;
    assert.equal(await resolveModelDir('tester/plain', opts(cache, { offline: true })), dir);
    assert.equal(hub.log.length, count, 'offline call made requests');

    await rejectsWith(resolveModelDir('tester/plain', opts(freshCache(), { offline: true })), 'cache', /tester\/plain.*not in the cache/);
    assert.equal(hub.log.length, count, 'offline call made requests');

    const gone = new HubServer();
    const deadEndpoint = await gone.start();
    await gone.stop();
    assert.equal(await resolveModelDir('tester/plain', opts(cache, { endpoint: deadEndpoint, checkUpdates: true })), dir);
    await rejectsWith(resolveModelDir('tester/plain', opts(freshCache(), { endpoint: deadEndpoint })), 'cache', /unreachable/);
  });

  test('unknown repo (404) -> one-line download error naming the id, after saying that no such directory exists', async () => {
    await rejectsWith(resolveModelDir('tester/does-not-exist', opts(freshCache())), 'download', /^no such directory tester\/does-not-exist;.*tester\/does-not-exist.*HTTP 404/);
    await rejectsWith(resolveModelDir('tester/does-not-exist', opts(freshCache(), { offline: true })), 'cache', /^no such directory tester\/does-not-exist;.*not in the cache/);
  });

  test('a cached model makes no request; checkUpdates asks the hub for the revision\'s latest commit', async () => {
    const cache = freshCache();
    const first = { sha: fakeSha(), files: { ...plain.files }, lfs: plain.lfs };
    hub.repos.set('tester/moving', first);
    const old = await resolveModelDir('tester/moving', opts(cache));
    const second = { ...first, sha: fakeSha(), files: { ...first.files, 'config.json': json({ model_type: 'gpt2', n_layer: 3 }) } };
    hub.repos.set('tester/moving', second);
    const count = hub.log.length;
    assert.equal(await resolveModelDir('tester/moving', opts(cache)), old);
    assert.equal(hub.log.length, count, 'a cached model made requests');
    const fresh = await resolveModelDir('tester/moving', opts(cache, { checkUpdates: true }));
    assert.equal(fresh, join(cache, 'models--tester--moving', 'snapshots', second.sha));
    assert.ok(readFileSync(join(fresh, 'config.json')).equals(second.files['config.json']));
    assert.equal(readFileSync(join(cache, 'models--tester--moving', 'refs', 'main'), 'utf8'), second.sha);
    assert.equal(await resolveModelDir('tester/moving', opts(cache)), fresh, 'the cache follows the updated ref');
  });

  test('a hub that accepts connections and never answers: the cache is used, and the timeout ends the wait', { timeout: 60_000 }, async () => {
    const cache = freshCache();
    const dir = await resolveModelDir('tester/plain', opts(cache));
    hub.silent = true;
    try {
      assert.equal(await resolveModelDir('tester/plain', opts(cache)), dir);
      assert.equal(await resolveModelDir('tester/plain', opts(cache, { checkUpdates: true, hubTimeout: 0.2 })), dir);
      await rejectsWith(resolveModelDir('tester/plain', opts(freshCache(), { hubTimeout: 0.2 })), 'cache', /no answer within 0\.2 s.*--hub-timeout/);
    } finally {
      hub.silent = false;
    }
  });

  test('a download that stops sending fails after the read timeout, keeps the partial file, and resumes', { timeout: 60_000 }, async () => {
    const cache = freshCache();
    const partial = join(cache, 'models--tester--plain', 'snapshots', plain.sha, 'model.safetensors.incomplete');
    hub.stallOnce.add('model.safetensors');
    await rejectsWith(resolveModelDir('tester/plain', opts(cache, { hubTimeout: 0.2 })), 'download', /no data for 0\.2 s while downloading model\.safetensors.*resume.*--hub-timeout/);
    assert.ok(statSync(partial).size > 0);
    const dir = await resolveModelDir('tester/plain', opts(cache));
    assert.ok(readFileSync(join(dir, 'model.safetensors')).equals(plain.files['model.safetensors']));
  });

  test('PEREGRINE_HUB_TIMEOUT sets the timeout; a value that is no number of seconds is refused, naming the variable', async () => {
    const saved = process.env.PEREGRINE_HUB_TIMEOUT;
    hub.silent = true;
    try {
      process.env.PEREGRINE_HUB_TIMEOUT = '0.2';
      await rejectsWith(resolveModelDir('tester/plain', opts(freshCache())), 'cache', /no answer within 0\.2 s/);
      process.env.PEREGRINE_HUB_TIMEOUT = 'soon';
      await rejectsWith(resolveModelDir('tester/plain', opts(freshCache())), 'bad-argument', /PEREGRINE_HUB_TIMEOUT="soon" must be a number of seconds > 0/);
    } finally {
      hub.silent = false;
      if (saved === undefined) delete process.env.PEREGRINE_HUB_TIMEOUT;
      else process.env.PEREGRINE_HUB_TIMEOUT = saved;
    }
  });

  test('a revision as owner/name@revision or as an option', async () => {
    const cache = freshCache();
    const from = hub.log.length;
    const dir = await resolveModelDir('tester/plain@v1.0', opts(cache));
    assert.equal(dir, join(cache, 'models--tester--plain', 'snapshots', plain.sha));
    assert.equal(readFileSync(join(cache, 'models--tester--plain', 'refs', 'v1.0'), 'utf8'), plain.sha);
    assert.ok(hub.log.slice(from).some((r) => r.url === '/api/models/tester/plain/revision/v1.0'));
    assert.equal(await resolveModelDir('tester/plain', opts(cache, { revision: 'v1.0', offline: true })), dir);
    assert.equal(await resolveModelDir(`tester/plain@${plain.sha}`, opts(cache, { offline: true })), dir);
    await rejectsWith(resolveModelDir('tester/plain@v1.0', opts(cache, { revision: 'v2' })), 'bad-argument', /revision v1\.0.*--revision v2/);
    await rejectsWith(resolveModelDir('tester/plain@', opts(cache)), 'bad-argument', /revision/);
  });

  test('repo with no weights Peregrine reads (Flax, TensorFlow) -> one-line error naming what it reads, nothing fetched', async () => {
    const from = hub.fileRequests().length;
    await rejectsWith(resolveModelDir('tester/noweights', opts(freshCache())), 'download', /tester\/noweights.*has no weights Peregrine reads \(model\.safetensors, .*pytorch_model\.bin\.index\.json\), only flax_model\.msgpack, tf_model\.h5;/);
    assert.equal(hub.fileRequests().length, from);
  });

  test('cache path is a regular file -> cache error', async () => {
    const file = join(freshCache(), 'not-a-dir');
    writeFileSync(file, 'x');
    await rejectsWith(resolveModelDir('tester/plain', opts(file)), 'cache', /not-a-dir.*PEREGRINE_CACHE/);
    await rejectsWith(resolveModelDir('tester/plain', opts(join(file, 'sub'))), 'cache', /PEREGRINE_CACHE/);
  });
});

describe('local paths and ids', () => {
  test('a local directory is returned as is; a missing path is file-missing', async () => {
    const dir = freshCache();
    mkdirSync(join(dir, 'model'));
    assert.equal(await resolveModelDir(join(dir, 'model'), opts(freshCache())), join(dir, 'model'));
    await rejectsWith(resolveModelDir('./nope', opts(freshCache())), 'file-missing', /\.\/nope/);
    await rejectsWith(resolveModelDir('a/b/c', opts(freshCache())), 'file-missing');
    writeFileSync(join(dir, 'file'), 'x');
    await rejectsWith(resolveModelDir(join(dir, 'file'), opts(freshCache())), 'file-missing');
    await rejectsWith(resolveModelDir('bad name!', opts(freshCache())), 'bad-argument');
  });

  test('isHubId', () => {
    for (const ok of ['gpt2', 'openai-community/gpt2', 'bert-base-uncased', 'a_b.c/d-e']) assert.ok(isHubId(ok), ok);
    for (const bad of ['a/b/c', '../x', '', '/x', 'x/', '.x', 'x-', 'a..b', 'a b', 'a/.b']) assert.ok(!isHubId(bad), bad);
  });
});
