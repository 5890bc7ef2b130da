// pytorch_model.bin (torch.save's zip archives, fixtures by tools/reference/make_torch_bin_fixtures.py): tensors and
// model outputs identical to the safetensors copies, views of shared storages, and every hostile or broken archive
// refused with one line that names the problem; nothing in a checkpoint ever runs.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { inspectModel, loadEmbedder, loadGenerator, PeregrineError } from '../src/index.js';
import { toFloat32, type StorageDType } from '../src/loaders/dtypes.js';
import { openWeights } from '../src/loaders/model-dir.js';
import { SafetensorsFile } from '../src/loaders/safetensors.js';
import { TorchBinFile } from '../src/loaders/torch-bin.js';
import { fixture } from './helpers/fixtures.js';
import { allLogits } from './helpers/logits.js';
import { writeZip, zipEntries, type ZipInput, type ZipLayout } from './helpers/zip-write.js';

const BIN = fixture('torch-bin');
const VIEWS = join(BIN, 'views.bin');
const dir = mkdtempSync(join(tmpdir(), 'peregrine-bin-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

function file(bytes: Uint8Array): string {
  const p = join(dir, `f${n++}.bin`);
  writeFileSync(p, bytes);
  return p;
}

function refused(path: string, pattern: RegExp, code = 'bad-pytorch'): void {
  assert.throws(() => TorchBinFile.open(path).close(), (err: unknown) => {
    assert.ok(err instanceof PeregrineError, `expected a PeregrineError, got ${err}`);
    assert.equal(err.code, code);
    assert.match(err.message, pattern);
    assert.ok(!/[\r\n]/.test(err.message), 'one line');
    return true;
  });
}

/** views.bin's entries, data.pkl changed by `edit`, written with `layout`. */
function rezipped(layout: ZipLayout = {}, edit: (e: ZipInput[]) => ZipInput[] = (e) => e): string {
  return file(writeZip(edit(zipEntries(VIEWS)), layout));
}

function floats(bytes: Uint8Array, dtype: string): number[] {
  if (dtype === 'I64') return Array.from(new BigInt64Array(bytes.buffer, bytes.byteOffset, bytes.length / 8), Number);
  if (dtype === 'BOOL') return Array.from(bytes);
  return Array.from(toFloat32(bytes, dtype as StorageDType));
}

function assertSameTensors(got: { tensors: Map<string, { dtype: string; shape: number[] }>; readBytes(n: string): Uint8Array }, want: SafetensorsFile): void {
  for (const [name, w] of want.tensors) {
    const g = got.tensors.get(name);
    assert.ok(g, `${name} is missing`);
    assert.equal(g.dtype, w.dtype, name);
    assert.deepEqual(g.shape, w.shape, name);
    assert.ok(Buffer.from(got.readBytes(name)).equals(Buffer.from(want.readBytes(name))), `${name}: bytes differ`);
  }
}

describe('views of storages', () => {
  const ref = JSON.parse(readFileSync(join(BIN, 'views.json'), 'utf8')) as Record<string, { dtype: string; shape: number[]; values: number[] }>;

  for (const [layout, how] of [[null, 'as torch.save wrote it'], [{}, 'rezipped plainly'], [{ zip64: true, descriptor: true, align: 64 }, 'in ZIP64 form'],
    [{ comment: 'PK\u0005\u0006 a comment holding the end signature' }, 'behind an archive comment']] as const) {
    test(`every tensor as torch holds it (transposed, offset, strided, tied, 0-d, empty, a Parameter; F32, F16, BF16, I64, BOOL), ${how}`, () => {
      const f = TorchBinFile.open(layout ? rezipped(layout) : VIEWS);
      try {
        assert.deepEqual([...f.tensors.keys()], Object.keys(ref));
        for (const [name, r] of Object.entries(ref)) {
          const t = f.info(name);
          assert.equal(t.dtype, r.dtype, name);
          assert.deepEqual(t.shape, r.shape, name);
          const bytes = f.readBytes(name);
          assert.equal(t.end - t.begin, bytes.length, `${name}: the byte count the info claims`);
          assert.deepEqual(floats(bytes, r.dtype), r.values, name);
        }
      } finally {
        f.close();
      }
    });
  }
});

describe('models: the pytorch_model.bin copy is the safetensors copy', () => {
  test('bert-wide: the same tensors (and the int64 position_ids buffer beside them), identical hidden states', async () => {
    const bin = TorchBinFile.open(join(BIN, 'bert-wide', 'pytorch_model.bin'));
    const st = SafetensorsFile.open(fixture('bert-wide/model.safetensors'));
    assertSameTensors(bin, st);
    assert.deepEqual([...bin.tensors.keys()].filter((k) => !st.tensors.has(k)), ['embeddings.position_ids']);
    assert.equal(bin.info('embeddings.position_ids').dtype, 'I64');
    bin.close();
    st.close();
    const a = await loadEmbedder(join(BIN, 'bert-wide'), { device: 'cpu' });
    const b = await loadEmbedder(fixture('bert-wide'), { device: 'cpu' });
    // bert-wide's vocabulary is 512 ids, fewer than its tokenizer's: ids, as its reference.json has them
    const seqs = [Int32Array.from([101, 7, 102]), Int32Array.from([101, 300, 301, 511, 102])];
    for (const pooling of ['cls', 'mean'] as const) {
      const [x, y] = [a, b].map((m) => m.model.encode(seqs, { pooling }));
      assert.deepEqual(Array.from(x.hidden), Array.from(y.hidden));
      assert.deepEqual(Array.from(x.pooled!), Array.from(y.pooled!));
    }
  });

  test('llama3-tiny in two shards through pytorch_model.bin.index.json: the same tensors, identical logits and greedy tokens', async () => {
    const store = openWeights(join(BIN, 'llama3-tiny-sharded'));
    const st = SafetensorsFile.open(fixture('llama3-tiny/model.safetensors'));
    assert.deepEqual(store.names().sort(), [...st.tensors.keys()].sort());
    for (const name of st.tensors.keys()) {
      assert.deepEqual(store.info(name).shape, st.info(name).shape);
      assert.ok(Buffer.from(store.readBytes(name)).equals(Buffer.from(st.readBytes(name))), name);
    }
    store.close();
    st.close();
    const a = await loadGenerator(join(BIN, 'llama3-tiny-sharded'), { device: 'cpu' });
    const b = await loadGenerator(fixture('llama3-tiny'), { device: 'cpu' });
    const ids = a.tokenizer.encode('The quick brown fox');
    assert.deepEqual(Array.from(await allLogits(a, ids)), Array.from(await allLogits(b, ids)));
    const [ga] = await a.generateIds([ids], { maxNewTokens: 8, stopAtEos: false });
    const [gb] = await b.generateIds([ids], { maxNewTokens: 8, stopAtEos: false });
    assert.deepEqual(ga.ids, gb.ids);
  });

  test('inspect reads the stored dtypes of pytorch_model.bin shards as of the safetensors copy', async () => {
    const a = await inspectModel(join(BIN, 'llama3-tiny-sharded'), { device: 'cpu' });
    const b = await inspectModel(fixture('llama3-tiny'), { device: 'cpu' });
    assert.deepEqual(a.dtypes, b.dtypes);
    assert.deepEqual(a.info, b.info);
    const store = openWeights(join(BIN, 'bert-wide'));
    assert.deepEqual(store.dtypeSummary().get('I64'), { params: 128, bytes: 1024 });
    store.close();
  });

  test('safetensors are preferred when a directory holds both', () => {
    const d = join(dir, 'both');
    mkdirSync(d);
    symlinkSync(fixture('bert-wide/model.safetensors'), join(d, 'model.safetensors'));
    symlinkSync(VIEWS, join(d, 'pytorch_model.bin'));
    const store = openWeights(d);
    assert.ok(!store.has('base') && store.has('embeddings.word_embeddings.weight'));
    store.close();
  });

  test('a directory with no weights names every file it looked for', () => {
    const d = join(dir, 'none');
    mkdirSync(d);
    assert.throws(() => openWeights(d), /no model\.safetensors, model\.safetensors\.index\.json, pytorch_model\.bin, pytorch_model\.bin\.index\.json in/);
  });

  test('an index that places a tensor in a shard without it', () => {
    const d = join(dir, 'badindex');
    mkdirSync(d);
    for (const f of readdirSync(join(BIN, 'llama3-tiny-sharded'))) if (f.endsWith('.bin')) symlinkSync(join(BIN, 'llama3-tiny-sharded', f), join(d, f));
    const index = JSON.parse(readFileSync(join(BIN, 'llama3-tiny-sharded', 'pytorch_model.bin.index.json'), 'utf8'));
    index.weight_map['model.norm.weight'] = index.weight_map['model.norm.weight'].replace('00002-of', '00001-of') === index.weight_map['model.norm.weight']
      ? index.weight_map['model.norm.weight'].replace('00001-of', '00002-of') : index.weight_map['model.norm.weight'].replace('00002-of', '00001-of');
    writeFileSync(join(d, 'pytorch_model.bin.index.json'), JSON.stringify(index));
    assert.throws(() => openWeights(d), /places tensor model\.norm\.weight in .* but that shard has no such tensor/);
  });
});

describe('hostile and broken archives are refused, and nothing runs', () => {
  const H = (name: string) => join(BIN, 'hostile', name);
  const pwned = ['/tmp/peregrine-pwned-os-system', '/tmp/peregrine-pwned-exec'];
  for (const p of pwned) rmSync(p, { force: true });
  after(() => { for (const p of pwned) assert.ok(!existsSync(p), `${p} was created: a checkpoint ran code`); });

  test('a GLOBAL of os.system', () => refused(H('os-system.bin'), /imports posix\.system \(GLOBAL at byte \d+\), not one of the tensor and storage types/));
  test('a GLOBAL of exec', () => refused(H('exec.bin'), /imports __builtin__\.exec/));
  test('a REDUCE of an allowed name that builds nothing (a storage type)', () => refused(H('reduce-storage.bin'), /calls torch\.FloatStorage \(REDUCE at byte \d+\), which builds no tensor/));
  test('a storage offset out of range', () => refused(H('offset-out-of-range.bin'), /tensor "w" \(offset 250, shape \[2\], strides \[1\]\) reaches element 251 of storage 0, which has 6/));
  test('a storage larger than its entry', () => refused(H('storage-too-small.bin'), /storage 0 holds 200 x FloatStorage = 800 bytes but its entry has 24/));
  test('a key set twice', () => refused(H('duplicate-key.bin'), /the key "a" is set twice/));
  test('a deflated entry', () => refused(H('compressed.bin'), /entry ".*data\.pkl" is compressed \(deflate\)/));
  test('the legacy format', () => refused(H('legacy.bin'), /legacy torch\.save format/));
  test('a training checkpoint', () => refused(H('training-checkpoint.bin'), /maps "model" to a dict, not a tensor \(a training checkpoint/));

  const pkl = (e: ZipInput[]) => e.find((x) => x.name.endsWith('/data.pkl'))!;
  const withPickle = (bytes: Uint8Array) => rezipped({}, (e) => { pkl(e).data = bytes; return e; });
  test('opcodes torch.save does not write, by name', () => {
    refused(withPickle(Buffer.from('\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00}.', 'latin1')), /opcode FRAME at byte 2 is not one torch\.save writes/);
    refused(withPickle(Buffer.from('\x80\x02(cos\nsystem\nX\x02\x00\x00\x00lsi.', 'latin1')), /imports os\.system/);
    refused(withPickle(Buffer.from('\x80\x02X\x02\x00\x00\x00osX\x06\x00\x00\x00system\x93.', 'latin1')), /opcode STACK_GLOBAL/);
    refused(withPickle(Buffer.from('\x80\x02}\xff.', 'latin1')), /byte 3 holds 0xff, which is no pickle opcode/);
    refused(withPickle(Buffer.from('\x80\x02}h\x07.', 'latin1')), /reads memo 7, which nothing stored/);
    refused(withPickle(Buffer.from('\x80\x02}', 'latin1')), /runs past the end of data\.pkl/);
    refused(withPickle(Buffer.from('\x80\x02]]a.', 'latin1')), /holds a list, not a state dict/);
  });
  test('a data.pkl that does not match its checksum', () => {
    refused(rezipped({}, (e) => { pkl(e).crc = 1; return e; }), /data\.pkl does not match its checksum/);
  });
  test('a storage that does not match its checksum is refused when read', () => {
    const f = TorchBinFile.open(rezipped({}, (e) => { e.find((x) => x.name.endsWith('/data/0'))!.crc = 1; return e; }));
    assert.throws(() => f.readBytes('base'), /storage .*data\/0 \(tensor base\) does not match its checksum/);
    f.close();
  });
  test('zip structure: truncated, duplicate entries, missing storage, overlapping entries, no data.pkl, not a zip', () => {
    const good = readFileSync(VIEWS);
    for (const cut of [10, 100, good.length - 30, good.length - 1]) refused(file(good.subarray(0, cut)), /too short for a zip archive|end-of-central-directory|truncated|runs past/);
    refused(rezipped({}, (e) => [...e, e[1]]), /two entries named/);
    refused(rezipped({}, (e) => e.filter((x) => !x.name.endsWith('/data/0'))), /storage 0 \(tensor "base"\) has no entry views\/data\/0/);
    refused(rezipped({}, (e) => e.filter((x) => !x.name.endsWith('data.pkl'))), /no <archive>\/data\.pkl entry/);
    refused(rezipped({}, (e) => { e[2].size = 5; return e; }), /stored but its sizes differ/);
    refused(file(Buffer.from('hello, world, this is not a zip')), /does not start as a zip archive/);
    const bytes = Buffer.from(writeZip(zipEntries(VIEWS)));
    // the second entry's local header offset pointed into the first entry
    const cd = bytes.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    const second = bytes.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]), cd + 4);
    bytes.writeUInt32LE(0, second + 42);
    refused(file(bytes), /local header names another file|overlap/);
    refused(rezipped({}, (e) => e.map((x) => (x.name === 'views/byteorder' ? { ...x, data: Buffer.from('big') } : x))), /byteorder entry says "big"/);
  });
  test('a file that is not a file', () => {
    refused(dir, /is a directory/, 'file-unreadable');
    refused(join(dir, 'absent.bin'), /not found/, 'file-missing');
  });
});
