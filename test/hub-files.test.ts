// Hub downloads fetch what the local loaders read: pytorch_model.bin (or its shards) where there are no
// safetensors, sentence-transformers module files, and no tokenizer for an encoder that has none.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadEmbedder, loadGenerator } from '../src/engine/load.js';
import { resolveModelDir, type HubOptions } from '../src/loaders/hub.js';
import { PeregrineError } from '../src/errors.js';
import { assertClose } from './helpers/close.js';
import { fixture, reference, type FamilyRef } from './helpers/fixtures.js';
import { HubServer, fakeSha, json, repoFromDir, type FakeRepo } from './helpers/hub-server.js';

const hub = new HubServer();
const BIN = fixture('torch-bin');
const NO_TOKENIZER = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];
const junk = { 'optimizer.pt': randomBytes(512), 'training_args.bin': randomBytes(256), 'rng_state.pth': randomBytes(128) };
const stIndex = (weightMap: Record<string, string>) => json({ metadata: {}, weight_map: weightMap });

const repos: Record<string, FakeRepo> = {
  'tester/bert-bin': repoFromDir(join(BIN, 'bert-wide'), junk),
  'tester/llama-bin-sharded': repoFromDir(join(BIN, 'llama3-tiny-sharded'), junk),
  'tester/both': repoFromDir(fixture('st-mini'), { 'pytorch_model.bin': readFileSync(join(BIN, 'bert-wide', 'pytorch_model.bin')) }),
  'tester/st': repoFromDir(fixture('st-mini')),
  'tester/no-tokenizer': repoFromDir(fixture('bert-mlm'), {}, NO_TOKENIZER),
  'tester/gpt2-no-tokenizer': repoFromDir(fixture('gpt2-tiny'), {}, NO_TOKENIZER),
};

const tempDirs: string[] = [];
function freshCache(): string {
  const dir = mkdtempSync(join(tmpdir(), 'peregrine-hub-files-'));
  tempDirs.push(dir);
  return dir;
}

function opts(cacheDir: string, extra: HubOptions = {}) {
  return { device: 'cpu' as const, cacheDir, endpoint: hub.endpoint, progress: false, offline: false, token: '', ...extra };
}

/** Where repo `id` is cached under `cache`. */
const snapshotOf = (cache: string, id: string) => join(cache, `models--${id.replace('/', '--')}`, 'snapshots', hub.repos.get(id)!.sha);

/** The files of a snapshot (its marker's list), sorted. */
function snapshotFiles(dir: string): string[] {
  const marker = JSON.parse(readFileSync(join(dir, '.peregrine-complete'), 'utf8')) as { version: number; files: { name: string }[] };
  assert.equal(marker.version, 2);
  return marker.files.map((f) => f.name).sort();
}

/** The file names the hub was asked for since request `from` (resolve and CDN urls), of repo `id`. */
function requested(id: string, from: number): string[] {
  return hub.fileRequests().slice(from).map((r) => decodeURIComponent(r.url))
    .filter((u) => u.startsWith(`/${id}/resolve/`)).map((u) => u.split('/').slice(5).join('/'));
}

async function refused(p: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof PeregrineError, String(e));
    assert.equal(e.code, code, e.message);
    assert.ok(!e.message.includes('\n'), e.message);
    assert.match(e.message, pattern);
    return true;
  });
}

before(async () => {
  await hub.start();
  for (const [id, repo] of Object.entries(repos)) hub.repos.set(id, repo);
});

after(async () => {
  await hub.stop();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

describe('hub downloads of what the local loaders read', () => {
  test('a pytorch_model.bin repo: the .bin and the configs, no other pickled file; embeddings equal the local directory\'s', async () => {
    const cache = freshCache();
    const emb = await loadEmbedder('tester/bert-bin', opts(cache));
    const dir = snapshotOf(cache, 'tester/bert-bin');
    assert.deepEqual(snapshotFiles(dir), ['config.json', 'pytorch_model.bin', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']);
    assert.deepEqual(readdirSync(dir).filter((f) => /\.(pt|pth)$|training_args/.test(f)), []);
    const local = await loadEmbedder(join(BIN, 'bert-wide'), { device: 'cpu' });
    const ids = reference<{ inputs: { ids: number[] }[] }>('torch-bin/bert-wide').inputs.map((x) => x.ids);
    emb.embedIds(ids).forEach((v, i) => assertClose(v, local.embedIds(ids)[i], 0, `embedding ${i}`));
    emb.dispose();
    local.dispose();
  });

  test('a sharded .bin repo: the index and every shard it names; greedy tokens equal the local directory\'s', async () => {
    const cache = freshCache();
    const from = hub.fileRequests().length;
    const gen = await loadGenerator('tester/llama-bin-sharded', opts(cache));
    const dir = snapshotOf(cache, 'tester/llama-bin-sharded');
    assert.deepEqual(snapshotFiles(dir), ['config.json', 'generation_config.json', 'pytorch_model-00001-of-00002.bin', 'pytorch_model-00002-of-00002.bin',
      'pytorch_model.bin.index.json', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']);
    assert.equal(requested('tester/llama-bin-sharded', from)[0], 'pytorch_model.bin.index.json', 'the index is fetched first');
    const local = await loadGenerator(join(BIN, 'llama3-tiny-sharded'), { device: 'cpu' });
    const ids = local.tokenizer.encode('The quick brown fox');
    const [a] = await gen.generateIds([ids], { maxNewTokens: 6, stopAtEos: false });
    const [b] = await local.generateIds([ids], { maxNewTokens: 6, stopAtEos: false });
    assert.deepEqual(a.ids, b.ids);
    gen.dispose();
    local.dispose();
  });

  test('a repo with safetensors and pytorch_model.bin: only the safetensors are fetched', async () => {
    const from = hub.fileRequests().length;
    const dir = await resolveModelDir('tester/both', opts(freshCache()));
    assert.ok(existsSync(join(dir, 'model.safetensors')));
    const urls = hub.fileRequests().slice(from).map((r) => r.url);
    assert.deepEqual(urls.filter((u) => u.includes('.bin')), [], 'the hub was asked for a .bin');
  });

  test('a sentence-transformers repo: modules.json, the Pooling module\'s config and sentence_bert_config.json; the defaults of the local directory', async () => {
    const cache = freshCache();
    const emb = await loadEmbedder('tester/st', opts(cache));
    assert.deepEqual(snapshotFiles(snapshotOf(cache, 'tester/st')), ['1_Pooling/config.json', 'config.json', 'model.safetensors', 'modules.json', 'sentence_bert_config.json',
      'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']);
    const local = await loadEmbedder(fixture('st-mini'), { device: 'cpu' });
    assert.deepEqual(emb.defaults, local.defaults);
    const ref = reference<FamilyRef>('st-mini');
    const texts = ref.inputs.map((x) => x.text);
    emb.embed(texts).forEach((v, i) => assertClose(v, ref.mean_normalized![i], 1e-4, `default embedding ${i}`));
    emb.embed(texts).forEach((v, i) => assertClose(v, local.embed(texts)[i], 0, `as the local directory ${i}`));
    emb.dispose();
    local.dispose();
  });

  test('a Pooling module at the path modules.json names (not 1_Pooling)', async () => {
    const st = repos['tester/st'];
    const modules = JSON.parse(st.files['modules.json'].toString()) as { path: string }[];
    modules[1].path = 'pool/mean';
    const { '1_Pooling/config.json': pooling, ...rest } = st.files;
    hub.repos.set('tester/st-moved', { ...st, sha: fakeSha(), files: { ...rest, 'modules.json': json(modules), 'pool/mean/config.json': pooling } });
    const cache = freshCache();
    const emb = await loadEmbedder('tester/st-moved', opts(cache));
    assert.ok(existsSync(join(snapshotOf(cache, 'tester/st-moved'), 'pool', 'mean', 'config.json')));
    assert.equal(emb.defaults.pooling, 'mean');
    emb.dispose();
  });

  test('an encoder repo without tokenizer files loads for token ids; a causal LM without them is refused before its weights are fetched', async () => {
    const emb = await loadEmbedder('tester/no-tokenizer', opts(freshCache()));
    const local = await loadEmbedder(fixture('bert-mlm'), { device: 'cpu' });
    const ids = [[2, 7, 9, 3], [2, 5, 3]];
    emb.embedIds(ids).forEach((v, i) => assertClose(v, local.embedIds(ids)[i], 0, `embedding ${i}`));
    assert.throws(() => emb.embed(['a']), /has no tokenizer\.json, so it takes token ids only/);
    emb.dispose();
    local.dispose();

    const from = hub.fileRequests().length;
    await refused(loadGenerator('tester/gpt2-no-tokenizer', opts(freshCache())), 'file-missing', /^tokenizer\.json not found: .*causal LM needs tokenizer\.json and tokenizer_config\.json/);
    assert.deepEqual(requested('tester/gpt2-no-tokenizer', from), ['model.safetensors.index.json', 'config.json']);
  });

  test('hostile shard names and module paths are refused in one line before anything they name, or the weights, is fetched', async () => {
    const st = repos['tester/st'];
    const st2 = (modules: unknown) => ({ ...st, sha: st.sha, files: { ...st.files, 'modules.json': json(modules) } });
    const withModule = (path: unknown) => st2([{ path: '', type: 'sentence_transformers.models.Transformer' }, { path, type: 'sentence_transformers.models.Pooling' }]);
    const { 'model.safetensors': _, ...noWeights } = st.files;
    const sharded = (weightMap: Record<string, string>, extra: Record<string, Buffer> = {}) =>
      ({ ...st, files: { ...noWeights, 'model.safetensors.index.json': stIndex(weightMap), ...extra } });
    const cases: [FakeRepo, string, RegExp][] = [
      [sharded({ a: '../../evil.safetensors' }), 'download', /invalid shard name \("\.\.\/\.\.\/evil\.safetensors"/],
      [sharded({ a: '/etc/passwd' }), 'download', /invalid shard name \("\/etc\/passwd"/],
      [sharded({ a: 'sub/x.safetensors' }, { 'sub/x.safetensors': randomBytes(8) }), 'download', /invalid shard name/],
      [sharded({ a: 'optimizer.pt' }, { 'optimizer.pt': randomBytes(8) }), 'download', /invalid shard name \("optimizer\.pt"; shards are \.safetensors files/],
      [{ ...st, files: { ...noWeights, 'pytorch_model.bin.index.json': stIndex({ a: '../pytorch_model.bin' }) } }, 'download', /pytorch_model\.bin\.index\.json has an invalid shard name \("\.\.\/pytorch_model\.bin"; shards are \.bin files/],
      [sharded({ a: 'model-00009.safetensors' }), 'download', /names shard model-00009\.safetensors, which the repo does not have/],
      [withModule('../outside'), 'bad-config', /module 1 must have a "type" and a relative "path" inside the directory/],
      [withModule('/etc'), 'bad-config', /module 1 must have .*not absolute/],
      [withModule('C:\\pool'), 'bad-config', /module 1 must have/],
      [withModule('a/../../b'), 'bad-config', /module 1 must have/],
      [withModule('2_Missing'), 'download', /Pooling module whose settings 2_Missing\/config\.json the repo does not have/],
      [st2([{ path: '2_Dense', type: 'sentence_transformers.models.Dense' }]), 'unsupported-config', /Dense, which Peregrine does not run/],
    ];
    for (const [i, [repo, code, pattern]] of cases.entries()) {
      const id = `tester/hostile-${i}`;
      hub.repos.set(id, { ...repo, sha: fakeSha() });
      const from = hub.fileRequests().length;
      await refused(loadEmbedder(id, opts(freshCache())), code, pattern);
      const got = requested(id, from);
      assert.ok(got.every((f) => f === 'modules.json' || f.endsWith('.index.json')), `case ${i} fetched ${got.join(', ')}`);
    }
  });

  test('offline: the downloaded .bin, sharded and sentence-transformers snapshots load from the cache without a request', async () => {
    const cache = freshCache();
    const dirs = [];
    for (const id of ['tester/bert-bin', 'tester/llama-bin-sharded', 'tester/st']) dirs.push(await resolveModelDir(id, opts(cache)));
    const count = hub.log.length;
    for (const [i, id] of ['tester/bert-bin', 'tester/llama-bin-sharded', 'tester/st'].entries()) {
      assert.equal(await resolveModelDir(id, opts(cache, { offline: true })), dirs[i]);
    }
    const emb = await loadEmbedder('tester/st', opts(cache, { offline: true }));
    assert.equal(emb.defaults.pooling, 'mean');
    emb.dispose();
    assert.equal(hub.log.length, count, 'offline calls made requests');
  });

  test('a snapshot an older Peregrine completed (no modules.json, marker without version): used offline, completed online', async () => {
    const cache = freshCache();
    const dir = await resolveModelDir('tester/st', opts(cache));
    const st = ['modules.json', '1_Pooling/config.json', 'sentence_bert_config.json'];
    for (const f of st) rmSync(join(dir, f));
    const files = snapshotFiles(dir).filter((f) => !st.includes(f)).map((name) => ({ name, size: readFileSync(join(dir, name)).length }));
    writeFileSync(join(dir, '.peregrine-complete'), JSON.stringify({ files }));
    assert.equal(await resolveModelDir('tester/st', opts(cache, { offline: true })), dir);
    const from = hub.fileRequests().length;
    assert.equal(await resolveModelDir('tester/st', opts(cache)), dir);
    assert.deepEqual(requested('tester/st', from).sort(), [...st].sort(), 'only the missing files are fetched');
    assert.ok(snapshotFiles(dir).includes('modules.json'));
  });
});
